"""The note judge: what notes a clip plays, read by a transcriber independent of our models.

The transcriber is Spotify's basic-pitch (its ICASSP 2022 model, whose ONNX weights ship in
its wheel; it runs offline on ``onnxruntime``). Install it without its dependencies (its
Linux requirement pulls tensorflow): ``pip install --no-deps basic-pitch`` beside
``onnxruntime pretty_midi mir_eval resampy scikit-learn`` (``make install`` does).

From two transcriptions, a prompt's and what follows it, :func:`judge` reports:

- ``key``: the correlation of their duration-weighted pitch-class histograms (1: the same
  notes in the same proportions; 0 when either plays no note).
- ``onsets_per_s``: notes begun per second of the continuation.
- ``sounding``: the share of the continuation's frames where some note's posterior
  reaches the transcriber's frame threshold.
- ``confidence``: the mean posterior of the continuation's notes, weighted by duration
  (a held drone or noise gives weak, uncertain notes).

Key alone proves little: a drone holding the prompt's mean spectrum agrees in key with it
better than the real continuation does. Read the four together, and beside the spectral
measures of :mod:`aimusic.gen.coherence`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from aimusic.errors import AimusicError

SAMPLE_RATE = 22050  # what the transcriber reads
FRAME_RATE = SAMPLE_RATE / 256  # its posteriors per second (86.1)
LOWEST_MIDI = 21  # its 88 pitches: A0 .. C8
FRAME_THRESHOLD = 0.3  # its defaults: a frame sounds at 0.3, a note starts at 0.5
ONSET_THRESHOLD = 0.5


@dataclass
class Transcription:
    """Notes as rows of (start s, end s, MIDI pitch, confidence) and the frame posteriors
    [frames, 88] they came from."""

    notes: np.ndarray
    frames: np.ndarray
    seconds: float


@functools.lru_cache(maxsize=1)
def _model() -> Any:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # basic-pitch warns on import about backends it will not use
    try:
        from basic_pitch import FilenameSuffix, build_icassp_2022_model_path
        from basic_pitch.inference import Model
    except ImportError as e:
        raise AimusicError(f"the note judge needs basic-pitch ({e}); install it: pip install "
                           "--no-deps basic-pitch onnxruntime pretty_midi mir_eval resampy "
                           "scikit-learn") from None
    finally:
        root.setLevel(level)
    return Model(build_icassp_2022_model_path(FilenameSuffix.onnx))


def available() -> bool:
    """Whether the transcriber can be loaded here."""
    try:
        _model()
    except AimusicError:
        return False
    return True


def transcribe(audio: np.ndarray, sr: int) -> Transcription:
    """The notes of mono ``audio`` at ``sr``, with basic-pitch's default thresholds."""
    import soundfile as sf
    import soxr

    model = _model()  # first: it silences basic-pitch's import-time warnings
    from basic_pitch.inference import predict

    x = np.asarray(audio, np.float32)
    if sr != SAMPLE_RATE:
        x = soxr.resample(x, sr, SAMPLE_RATE).astype(np.float32)
    fd, name = tempfile.mkstemp(suffix=".wav", prefix="aimusic-notes-")
    os.close(fd)
    try:
        sf.write(name, x, SAMPLE_RATE, subtype="FLOAT")
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
                np.errstate(invalid="ignore", divide="ignore"):  # "Predicting..."; silence
            out, _, events = predict(name, model, onset_threshold=ONSET_THRESHOLD,
                                     frame_threshold=FRAME_THRESHOLD)
    finally:
        os.unlink(name)
    notes = np.array([(s, e, p, a) for s, e, p, a, _ in events], np.float64).reshape(-1, 4)
    seconds = x.size / SAMPLE_RATE
    frames = np.asarray(out["note"], np.float32)[: max(1, int(round(seconds * FRAME_RATE)))]
    return Transcription(notes[np.argsort(notes[:, 0], kind="stable")], frames, seconds)


def pitch_classes(t: Transcription) -> np.ndarray:
    """[12] the seconds each pitch class sounds (C first), summed over notes."""
    h = np.zeros(12)
    np.add.at(h, t.notes[:, 2].astype(int) % 12, t.notes[:, 1] - t.notes[:, 0])
    return h


def key_agreement(a: Transcription, b: Transcription) -> float:
    """Correlation of the two pitch-class histograms (0 where either is empty or flat)."""
    ha, hb = pitch_classes(a), pitch_classes(b)
    if ha.std() == 0 or hb.std() == 0:
        return 0.0
    return float(np.corrcoef(ha, hb)[0, 1])


def note_figures(t: Transcription) -> dict[str, float]:
    """``onsets_per_s``, ``sounding`` and ``confidence`` of one transcription."""
    durations = t.notes[:, 1] - t.notes[:, 0]
    sounding = float((t.frames.max(axis=1) >= FRAME_THRESHOLD).mean()) if t.frames.size else 0.0
    confidence = float((t.notes[:, 3] * durations).sum() / durations.sum()) if durations.sum() > 0 else 0.0
    return {"onsets_per_s": len(t.notes) / max(t.seconds, 1e-9), "sounding": sounding,
            "confidence": confidence, "notes": len(t.notes)}


def judge(prompt: Transcription, continuation: Transcription) -> dict[str, float]:
    """The note figures of ``continuation`` and its key agreement with ``prompt``."""
    return {"key": key_agreement(prompt, continuation), **note_figures(continuation)}
