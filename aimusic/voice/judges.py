"""Independent judges of speech: whose voice it is, and what it says.

None of them is trained by aimusic; their weights ship inside their pip packages (the
optional extra ``pip install 'aimusic[eval]'``):

* :func:`speaker_embedding`: resemblyzer's ``VoiceEncoder`` (a GE2E speaker encoder, 256-d,
  L2-normalised; runs on the CPU). Cosine similarity of two embeddings is their dot product.
* :func:`transcribe`: pocketsphinx 5 with the US English acoustic model, dictionary and
  language model inside its wheel (a general-purpose recogniser; its word error rate on
  clean speech is well above a modern one's, so compare WERs with each other, never alone).
* :func:`wer`: jiwer's word error rate after :func:`normalize_text`.

Every judge takes mono float audio at any rate and resamples to the 16 kHz it wants.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

import numpy as np

from aimusic.audio import resample
from aimusic.errors import AimusicError

JUDGE_SR = 16000
INSTALL_HINT = "pip install 'aimusic[eval]'"


class JudgeMissing(AimusicError):
    """A judge's package is not installed."""


def _need(module: str, package: str) -> Any:
    import importlib
    import warnings

    try:
        with warnings.catch_warnings():  # webrtcvad (under resemblyzer) imports pkg_resources
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except ImportError as e:
        raise JudgeMissing(f"the voice judges need {package} ({e}); install them: "
                           f"{INSTALL_HINT}") from None


def check_judges() -> None:
    """Raise :class:`JudgeMissing` (naming the extra to install) unless every judge imports."""
    _need("resemblyzer", "resemblyzer")
    _need("pocketsphinx", "pocketsphinx>=5")
    _need("jiwer", "jiwer")


def _to16k(audio: np.ndarray, sr: int) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    return resample(x, sr, JUDGE_SR) if sr != JUDGE_SR else x


# ------------------------------------------------------------------- speaker embedding

@functools.lru_cache(maxsize=1)
def voice_encoder() -> Any:
    """resemblyzer's pretrained VoiceEncoder on the CPU, loaded once."""
    rz = _need("resemblyzer", "resemblyzer")
    return rz.VoiceEncoder(device="cpu", verbose=False)


def speaker_embedding(audio: np.ndarray, sr: int) -> np.ndarray:
    """The unit-norm 256-d speaker embedding of mono ``audio`` at ``sr`` (float32).

    resemblyzer's ``preprocess_wav`` normalises the level and drops long silences (webrtcvad)
    first; audio with no speech left falls back to the untrimmed signal.
    """
    rz = _need("resemblyzer", "resemblyzer")
    x = _to16k(audio, sr)
    wav = rz.preprocess_wav(x)  # already at 16 kHz: no source_sr, no second resampling
    if len(wav) < JUDGE_SR // 4:  # VAD removed (nearly) everything
        wav = x
    e = np.asarray(voice_encoder().embed_utterance(wav), dtype=np.float32)
    n = float(np.linalg.norm(e))
    return e / n if n > 0 else e


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(np.dot(a, b) / (na * nb)) if na > 0 and nb > 0 else 0.0


# ------------------------------------------------------------------- speech recognition

@functools.lru_cache(maxsize=1)
def _decoder() -> Any:
    ps = _need("pocketsphinx", "pocketsphinx>=5")
    return ps.Decoder(samprate=JUDGE_SR, loglevel="FATAL")


def transcribe(audio: np.ndarray, sr: int) -> str:
    """What pocketsphinx (default US English model) hears in mono ``audio``; lower case."""
    x = _to16k(audio, sr)
    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    d = _decoder()
    d.start_utt()
    d.process_raw(pcm, full_utt=True)
    d.end_utt()
    hyp = d.hyp()
    return hyp.hypstr.strip().lower() if hyp is not None else ""


# ------------------------------------------------------------------- word error rate

def normalize_text(text: str) -> str:
    """The normalisation both sides of :func:`wer` get: Unicode NFKC, lower case, ASCII
    apostrophes kept inside words (``don't``), every other punctuation mark a space, runs
    of spaces one; digits are kept as they are (the corpus texts spell numbers out)."""
    t = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    t = re.sub(r"(?<![a-z0-9])'|'(?![a-z0-9])", " ", t)
    t = re.sub(r"[^\w\s']", " ", t).replace("_", " ")
    return " ".join(t.split())


def wer_counts(ref: str, hyp: str) -> tuple[int, int]:
    """(word errors, reference words) of ``hyp`` against ``ref``, both normalised."""
    jiwer = _need("jiwer", "jiwer")
    r, h = normalize_text(ref), normalize_text(hyp)
    n = len(r.split())
    if n == 0:
        return len(h.split()), 0
    if not h:
        return n, n
    o = jiwer.process_words(r, h)
    return int(o.substitutions + o.deletions + o.insertions), n


def wer(ref: str, hyp: str) -> float:
    """Word error rate of ``hyp`` against ``ref`` after :func:`normalize_text` (0 is exact;
    it can exceed 1 with insertions). An empty reference gives 0 for an empty hypothesis
    and 1 otherwise."""
    e, n = wer_counts(ref, hyp)
    return e / n if n else float(e > 0)
