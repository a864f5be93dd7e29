"""Audio I/O: load any libsndfile format as mono float32 at a chosen rate, save atomically.

soundfile (libsndfile) reads wav, flac, ogg/vorbis, opus and mp3; soxr resamples. Every
failure a user's file can cause is an :class:`~aimusic.errors.AudioError` naming the file
and the reason, never a bare libsndfile traceback.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from aimusic.errors import AudioError
from aimusic.fileio import atomic_path

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def _wav_truncation(path: Path) -> str | None:
    """For RIFF/WAVE files, compare the data chunk's declared size with the bytes present.

    libsndfile silently shortens a truncated wav to what is there; a file cut in a copy
    or a crashed write should be reported, not trained on as if whole.
    """
    import struct

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, csize = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                if csize != 0xFFFFFFFF and pos + 8 + csize > size:
                    return f"truncated: data chunk declares {csize} bytes, {size - pos - 8} present"
                return None
            pos += 8 + csize + (csize & 1)
    return None


def open_sound(path: Path):  # -> soundfile.SoundFile
    import soundfile as sf

    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        detail = str(e).split(":")[-1].strip() or "unknown format"
        raise AudioError(path, f"not a readable audio file ({detail})") from None
    if f.format == "WAV" and (problem := _wav_truncation(path)):
        f.close()
        raise AudioError(path, problem)
    return f


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, length and channels without decoding the samples."""
    p = Path(path)
    with open_sound(p) as f:
        return AudioInfo(p, int(f.samplerate), int(f.frames), int(f.channels))


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono or [T, C] float signal with soxr (high quality)."""
    if sr_in == sr_out:
        return audio
    import soxr

    return soxr.resample(audio, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def rate_shift(audio: np.ndarray, factor: float) -> np.ndarray:
    """``audio`` resampled by ``factor`` and played at its own rate: pitch and formants
    scaled by ``factor``, duration by 1 / ``factor`` (a higher or lower voice from a
    shorter or longer vocal tract: speed and vocal-tract-length perturbation)."""
    import soxr

    if not factor > 0:
        raise ValueError(f"rate factor {factor} must be positive")
    return soxr.resample(audio, 1000.0 * factor, 1000.0, quality="HQ").astype(np.float32,
                                                                            copy=False)


def load_audio(
    path: str | os.PathLike,
    sr: int | None = None,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Read ``path`` as mono float32 in [-1, 1], resampled to ``sr`` (native rate if None).

    ``offset`` and ``duration`` (seconds) select a segment; only that segment is decoded.
    Returns a 1-D array ``[T]``.
    """
    import soundfile as sf

    p = Path(path)
    with open_sound(p) as f:
        native = int(f.samplerate)
        total = int(f.frames)
        if total <= 0:
            raise AudioError(p, "contains no audio (zero length)")
        start = max(0, int(round(offset * native)))
        if start >= total:
            raise AudioError(p, f"offset {offset:.2f}s is past the end ({total / native:.2f}s)")
        want = total - start if duration is None else min(total - start, int(round(duration * native)))
        try:
            if start:
                f.seek(start)
            data = f.read(want, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(p, f"corrupt or truncated audio ({e})") from None
    if data.shape[0] == 0:
        raise AudioError(p, "corrupt or truncated: no samples could be decoded")
    if data.shape[0] < want * 0.99 - 1:
        raise AudioError(
            p, f"truncated: header promises {want} frames from {start}, only {data.shape[0]} decode"
        )
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise AudioError(p, "contains non-finite samples (NaN or Inf)")
    if sr is not None and sr != native:
        mono = resample(mono, native, sr)
    return np.ascontiguousarray(mono, dtype=np.float32)


def sf_format(path: Path, subtype: str = "PCM_16") -> tuple[str, str]:
    """libsndfile's format and subtype for ``path``'s extension: the codec's own subtype
    for compressed formats (Vorbis, Opus, MP3), ``subtype`` otherwise."""
    fmt = path.suffix.lstrip(".").upper() or "WAV"
    fmt = {"OGA": "OGG", "AIF": "AIFF"}.get(fmt, fmt)
    if fmt in ("OGG", "MP3", "OPUS"):
        subtype = {"OGG": "VORBIS", "MP3": "MPEG_LAYER_III", "OPUS": "OPUS"}[fmt]
        fmt = "OGG" if fmt == "OPUS" else fmt
    return fmt, subtype


def save_audio(
    path: str | os.PathLike, audio: np.ndarray, sr: int, subtype: str = "PCM_16"
) -> Path:
    """Write ``audio`` ([T] or [T, C]) atomically; the format follows the extension.

    ``subtype`` is a libsndfile subtype: ``PCM_16`` (default) or ``FLOAT`` for wav.
    Samples are clipped to [-1, 1] for integer subtypes.
    """
    import soundfile as sf

    p = Path(path)
    x = np.asarray(audio, dtype=np.float32)
    if not np.isfinite(x).all():
        raise AudioError(p, "refusing to write non-finite samples (NaN or Inf)")
    if subtype.startswith("PCM"):
        x = np.clip(x, -1.0, 1.0)
    fmt, subtype = sf_format(p, subtype)
    with atomic_path(p) as tmp:
        sf.write(str(tmp), x, sr, subtype=subtype, format=fmt)
    return p


WAV_MAX_BYTES = 0xFFFFFFFF - 36  # a RIFF file counts its bytes in 32 bits


def _wav_header(sr: int, data_bytes: int) -> bytes:
    """A 16-bit mono PCM WAV header for ``data_bytes`` of samples (0xFFFFFFFF: unknown)."""
    riff = 0xFFFFFFFF if data_bytes == 0xFFFFFFFF else data_bytes + 36
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, sr, 2 * sr, 2, 16)
            + b"data" + struct.pack("<I", data_bytes))


class AudioStreamWriter:
    """Mono audio written block by block, for outputs too long to hold in memory.

    A ``.wav`` path is written in place as 16-bit PCM and its header is brought up to date
    after every block, so the file plays at every moment and an interrupted run leaves a
    valid file of what was made. ``"-"`` writes the same to standard output, its header
    saying "length unknown" (as ``sox`` and ``ffmpeg`` write to a pipe). Other formats
    go through libsndfile to a temporary file renamed at the end, as ``save_audio`` does.
    Use as a context manager; ``write`` takes float32 blocks in [-1, 1].
    """

    def __init__(self, path: str | os.PathLike, sr: int) -> None:
        self.path, self.sr, self.samples = str(path), sr, 0
        self._stack = contextlib.ExitStack()
        self._raw: BinaryIO | None = None
        self._sf: Any = None

    @property
    def is_wav(self) -> bool:
        return self.path == "-" or Path(self.path).suffix.lower() == ".wav"

    def __enter__(self) -> AudioStreamWriter:
        if self.path == "-":
            self._raw = sys.stdout.buffer
            self._raw.write(_wav_header(self.sr, 0xFFFFFFFF))
        elif self.is_wav:
            try:
                self._raw = self._stack.enter_context(open(self.path, "wb"))
            except OSError as e:
                raise AudioError(self.path, f"cannot write: {e.strerror or e}") from e
            self._raw.write(_wav_header(self.sr, 0))
        else:
            import soundfile as sf

            p = Path(self.path)
            tmp = self._stack.enter_context(atomic_path(p))
            fmt, subtype = sf_format(p)
            self._sf = self._stack.enter_context(sf.SoundFile(str(tmp), "w", self.sr, 1, subtype,
                                                              format=fmt))
        return self

    def write(self, block: np.ndarray) -> None:
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        if not np.isfinite(x).all():
            raise AudioError(self.path, "refusing to write non-finite samples (NaN or Inf)")
        x = np.clip(x, -1.0, 1.0)
        if self._sf is not None:
            self._sf.write(x)
        else:
            assert self._raw is not None, "use AudioStreamWriter as a context manager"
            if 2 * (self.samples + x.size) > WAV_MAX_BYTES:
                raise AudioError(self.path, "a WAV file holds at most 4 GiB; write .flac instead")
            self._raw.write(np.round(x * 32767.0).astype("<i2").tobytes())
            if self.path != "-":  # the header counts what is there now
                end = self._raw.tell()
                self._raw.seek(0)
                self._raw.write(_wav_header(self.sr, 2 * (self.samples + x.size)))
                self._raw.seek(end)
            self._raw.flush()
        self.samples += x.size

    def __exit__(self, *exc: object) -> None:
        self._stack.__exit__(*exc)  # type: ignore[arg-type]


def list_audio_files(root: str | os.PathLike) -> list[Path]:
    """Audio files under ``root`` (recursively), sorted; a file path gives itself.

    Hidden files and directories (names starting with '.') are skipped.
    """
    r = Path(root)
    if not r.exists():
        raise AudioError(r, "no such file or directory")
    if r.is_file():
        return [r]
    out = []
    for dirpath, dirnames, filenames in os.walk(r):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS):
                out.append(Path(dirpath) / name)
    return sorted(out)


def rms_db(audio: np.ndarray) -> float:
    """Root-mean-square level in dBFS (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return 20 * math.log10(rms) if rms > 0 else float("-inf")
