"""Files of any length through the codec in fixed-size chunks, memory flat.

The encoder and decoder have a finite receptive field (no recurrent layer), so a chunk
processed with ``context`` frames of real signal on each side yields, for its central
frames, exactly what a whole-file pass yields: no seams by construction, not by
cross-fading. Audio is read block by block and resampled by a streaming soxr resampler;
decoded audio is written block by block to a temporary file renamed at the end.

Codes files (``aimusic.codes/1``): ``codes`` int16 [levels, frames], with the codec's
content hash in ``depends`` so ``decode`` refuses codes from another codec.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from aimusic.artifacts import load_artifact, save_artifact
from aimusic.audio import open_sound
from aimusic.codec.model import Codec
from aimusic.codec.modules import (
    Conv,
    ConvTranspose,
    PhaseTrack,
    ResidualUnit,
    SpectralEncoder,
)
from aimusic.errors import ArtifactError, AudioError
from aimusic.fileio import atomic_path

CODES_KIND, CODES_VERSION = "codes", 1


def _receptive(layers, rate: float) -> float:
    """Receptive field of a sequence of layers, in units of the input of the sequence.

    ``rate`` is the sample spacing at the input (in the unit we count in); strides grow it,
    transposed convs shrink it.
    """
    rf, spacing = 0.0, rate
    for m in layers:
        if isinstance(m, ResidualUnit):
            rf += _receptive(m.block, spacing)
        elif isinstance(m, Conv):
            conv = m.conv
            rf += (conv.kernel_size[0] - 1) * conv.dilation[0] * spacing
            spacing *= conv.stride[0]
        elif isinstance(m, ConvTranspose):
            spacing /= m.conv.stride[0]
            rf += (m.conv.kernel_size[0] - 1) * spacing
    return rf


def context_frames(codec: Codec) -> int:
    """Frames of context on each side that make chunked output equal a whole-file pass."""
    hop = codec.cfg.hop
    if isinstance(codec.encoder, SpectralEncoder):  # at the frame rate, after an STFT
        enc = _receptive(codec.encoder.net, 1.0) + codec.encoder.window_frames
    else:
        enc = _receptive(codec.encoder.net, codec.cfg.patch) / hop  # in frames
    dec = _receptive(codec.decoder.net, 1.0)  # in frames (input is at frame rate)
    dec += getattr(codec.decoder, "window_frames", 0)  # an inverse STFT's window
    return int(math.ceil(max(enc, dec))) + 2


def read_blocks(path: str | os.PathLike, sr: int, block_seconds: float = 10.0) -> Iterator[np.ndarray]:
    """Mono float32 blocks of ``path`` at ``sr``, decoded and resampled as a stream."""
    import soxr

    p = Path(path)
    f = open_sound(p)
    with f:
        if f.frames == 0:
            raise AudioError(p, "contains no audio (zero length)")
        native = int(f.samplerate)
        rs = soxr.ResampleStream(native, sr, 1, dtype="float32") if native != sr else None
        block = max(1, int(block_seconds * native))
        got = 0
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except RuntimeError as e:
                raise AudioError(p, f"corrupt or truncated audio ({e})") from None
            last = data.shape[0] < block
            got += data.shape[0]
            mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
            if not np.isfinite(mono).all():
                raise AudioError(p, "contains non-finite samples (NaN or Inf)")
            if rs is not None:
                mono = rs.resample_chunk(mono, last=last)
            if mono.size:
                yield np.ascontiguousarray(mono, dtype=np.float32)
            if last:
                break
        if got == 0:
            raise AudioError(p, "corrupt or truncated: no samples could be decoded")


@torch.no_grad()
def encode_stream(
    codec: Codec, blocks: Iterator[np.ndarray], n_levels: int, chunk_frames: int = 750,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, int]:
    """Codes [n_levels, frames] of a block stream, and its length in samples."""
    hop, C = codec.cfg.hop, context_frames(codec)
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # absolute sample index of buf[0]
    next_frame, total, out = 0, 0, []
    exhausted = False
    it = iter(blocks)
    while True:
        # gather enough samples for the chunk plus its right context
        need_end = (next_frame + chunk_frames + C) * hop
        while not exhausted and buf_start + buf.size < need_end:
            try:
                b = next(it)
            except StopIteration:
                exhausted = True
                break
            buf = np.concatenate([buf, b])
            total += b.size
        if exhausted and next_frame * hop >= total:
            break
        start = max(0, next_frame - C) * hop  # absolute sample where this window starts
        end = min(need_end, buf_start + buf.size)
        window = torch.from_numpy(buf[start - buf_start : end - buf_start])[None, None].to(device)
        codes = codec.encode(window, n_levels)[0]  # [K, F]
        first = next_frame - start // hop
        n_frames = min(chunk_frames, math.ceil(total / hop) - next_frame) if exhausted \
            else chunk_frames
        out.append(codes[:, first : first + n_frames].cpu())
        next_frame += n_frames
        drop = max(0, (next_frame - C) * hop - buf_start)  # keep left context only
        buf, buf_start = buf[drop:], buf_start + drop
    if total == 0:
        raise AudioError("<stream>", "no samples")
    return torch.cat(out, dim=1), total


@torch.no_grad()
def decode_stream(
    codec: Codec, codes: torch.Tensor, chunk_frames: int = 750, device: torch.device | str = "cpu"
) -> Iterator[np.ndarray]:
    """Audio blocks for codes [K, F], each ``chunk_frames * hop`` samples (the last shorter)."""
    hop, C = codec.cfg.hop, context_frames(codec)
    F = codes.shape[1]
    track = PhaseTrack()  # an IF head's phase, carried from each chunk to the next
    for f0 in range(0, F, chunk_frames):
        f1 = min(F, f0 + chunk_frames)
        a, b = max(0, f0 - C), min(F, f1 + C)
        track.next_frame = f1 if f1 < F else None
        y = codec.decode(codes[None, :, a:b].long().to(device), a, track)[0, 0]
        yield y[(f0 - a) * hop : (f1 - a) * hop].float().cpu().numpy()


def decode_all(codec: Codec, codes: torch.Tensor, device: torch.device | str = "cpu") -> np.ndarray:
    """Codes [K, F] -> their audio in one array (``decode_stream``'s blocks joined)."""
    blocks = list(decode_stream(codec, codes, device=device))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def roundtrip(codec: Codec, x: np.ndarray, n_levels: int | None = None,
              device: torch.device | str = "cpu") -> np.ndarray:
    """``x`` (mono float32 at the codec's rate) encoded with ``n_levels`` (default: all) and
    decoded again, chunk by chunk, to its length."""
    codes, _ = encode_stream(codec, iter([x]), n_levels or codec.cfg.levels, device=device)
    return decode_all(codec, codes, device)[: x.size]


def encode_file(
    codec: Codec, path: str | os.PathLike, out: str | os.PathLike, bandwidth: float | None = None,
    device: torch.device | str = "cpu",
) -> Path:
    """Encode an audio file into a codes file; returns the codes path."""
    n_levels = codec.cfg.levels_for(bandwidth)
    codes, n_samples = encode_stream(codec, read_blocks(path, codec.cfg.sample_rate), n_levels,
                                     device=device)
    cfg = codec.cfg
    return save_artifact(
        out, {"codes": codes.to(torch.int16 if cfg.codebook_size <= 32768 else torch.int32)},
        CODES_KIND, CODES_VERSION,
        config={"sample_rate": cfg.sample_rate, "hop": cfg.hop, "frame_rate": cfg.frame_rate,
                "levels": n_levels, "codebook_size": cfg.codebook_size,
                "bandwidth_kbps": round(n_levels * cfg.bits_per_level * cfg.frame_rate / 1000, 3),
                "num_samples": n_samples, "source": str(path)},
        depends={"codec": codec_hash(codec)},
    )


def codec_hash(codec: Codec) -> str:
    """The hash that names a loaded codec's tokens: its file's, or, for a decoder trained on
    alone, the codec whose encoder and codebooks it kept (``extra.tokens_of``)."""
    h = getattr(codec, "tokens_hash", None) or getattr(codec, "source_hash", None)
    if h is None:
        raise ArtifactError("<codec>", "an unsaved codec has no hash; save and load it first")
    return h


def load_codes(path: str | os.PathLike, codec: Codec | None = None) -> tuple[torch.Tensor, dict]:
    """codes [K, F] and the file's config; refuses codes made by a codec other than ``codec``."""
    art = load_artifact(path, CODES_KIND, CODES_VERSION)
    if codec is not None:
        made_by = art.depends.get("codec")
        if made_by != codec_hash(codec):
            raise ArtifactError(
                Path(path), f"these codes were made by codec {made_by}, not by "
                f"{getattr(codec, 'source_path', '?')} ({codec_hash(codec)}); decode them with "
                "the codec that made them")
    return art.tensors["codes"].long(), art.config


def decode_file(
    codec: Codec, path: str | os.PathLike, out: str | os.PathLike,
    device: torch.device | str = "cpu",
) -> Path:
    """Decode a codes file to a 16-bit wav, streamed, written atomically."""
    import soundfile as sf

    codes, cfg = load_codes(path, codec)
    n = int(cfg["num_samples"])
    written = 0
    with atomic_path(out) as tmp:
        with sf.SoundFile(str(tmp), "w", samplerate=codec.cfg.sample_rate, channels=1,
                          subtype="PCM_16", format="WAV") as f:
            for block in decode_stream(codec, codes, device=device):
                block = np.clip(block[: max(0, n - written)], -1.0, 1.0)
                f.write(block)
                written += block.size
    return Path(out)
