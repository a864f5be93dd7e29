"""``aimusic eval codec``: mel distance, SI-SDR, bitrate, speed and code usage, with Opus
at the same bitrates as the classical anchor (opusenc/opusdec from Debian's opus-tools)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aimusic.audio import load_audio, save_audio
from aimusic.codec.model import Codec
from aimusic.codec.stream import decode_stream, encode_stream
from aimusic.dsp import mel_distance, normalized_entropy, si_sdr
from aimusic.errors import AimusicError


def opus_roundtrip(audio: np.ndarray, sr: int, kbps: float, workdir: Path) -> np.ndarray:
    """Encode with opusenc at ``kbps`` (hard CBR), decode with opusdec back to ``sr``."""
    if not (shutil.which("opusenc") and shutil.which("opusdec")):
        raise AimusicError("--vs-opus needs opusenc and opusdec: sudo apt-get install opus-tools")
    src, enc, dec = workdir / "in.wav", workdir / "x.opus", workdir / "out.wav"
    save_audio(src, audio, sr)
    subprocess.run(["opusenc", "--quiet", "--hard-cbr", "--bitrate", f"{kbps:g}", str(src),
                    str(enc)], check=True, capture_output=True)
    subprocess.run(["opusdec", "--quiet", "--rate", "48000", str(enc), str(dec)], check=True,
                   capture_output=True)
    y = load_audio(dec, sr)
    # opusdec drops the encoder's pre-skip, so the output is aligned; match the length
    return np.pad(y, (0, max(0, audio.size - y.size)))[: audio.size]


def bitrate_ladder(mels: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Does each step up in bitrate lower the mel distance by more than the clip-to-clip
    noise? Per pair of neighbouring bitrates (in the order given), over the same clips: the
    mean per-clip drop, its standard error, and on how many clips it dropped."""
    names = list(mels)
    out = []
    for lo, hi in zip(names, names[1:]):
        d = np.asarray(mels[lo]) - np.asarray(mels[hi])  # > 0: the higher bitrate is closer
        se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
        out.append({"from": lo, "to": hi, "mean_drop": round(float(d.mean()), 4),
                    "std_error": round(se, 4), "clips_better": int((d > 0).sum()),
                    "clips": int(d.size),
                    "beyond_noise": bool(d.size > 1 and d.mean() > 2 * se)})
    return out


def evaluate_codec(
    codec: Codec,
    clips: list[tuple[Path, np.ndarray]],
    bandwidths: list[float],
    opus_kbps: list[float] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Per bandwidth: mean mel distance and SI-SDR, encode/decode speed (x real time),
    per-level code usage; the bitrate ladder (``bitrate_ladder``). Opus at each of
    ``opus_kbps`` on the same clips."""
    sr, K = codec.cfg.sample_rate, codec.cfg.codebook_size
    seconds = sum(c.size for _, c in clips) / sr
    results: dict[str, Any] = {"clips": len(clips), "seconds": round(seconds, 2),
                               "codec": {}, "opus": {}}
    per_clip: dict[str, list[float]] = {}
    for bw in bandwidths:
        n_levels = codec.cfg.levels_for(bw)
        mels, sdrs, codes_all, t_enc, t_dec = [], [], [], 0.0, 0.0
        for _, clip in clips:
            t0 = time.perf_counter()
            codes, _ = encode_stream(codec, iter([clip]), n_levels, device=device)
            t1 = time.perf_counter()
            y = np.concatenate(list(decode_stream(codec, codes, device=device)))[: clip.size]
            t2 = time.perf_counter()
            t_enc, t_dec = t_enc + t1 - t0, t_dec + t2 - t1
            mels.append(mel_distance(clip, y, sr))
            sdrs.append(si_sdr(clip, y))
            codes_all.append(codes)
        cat = torch.cat(codes_all, dim=1)
        per_clip[f"{bw:g}"] = mels
        results["codec"][f"{bw:g}"] = {
            "kbps": bw,
            "mel_distance": round(float(np.mean(mels)), 4),
            "si_sdr": round(float(np.mean(sdrs)), 2),
            "encode_x_realtime": round(seconds / t_enc, 1),
            "decode_x_realtime": round(seconds / t_dec, 1),
            "code_usage": [round(normalized_entropy(cat[k], K), 3) for k in range(n_levels)],
        }
    results["ladder"] = bitrate_ladder({bw: per_clip[bw] for bw in per_clip})
    for kbps in opus_kbps or []:
        mels, sdrs = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for _, clip in clips:
                y = opus_roundtrip(clip, sr, kbps, Path(tmp))
                mels.append(mel_distance(clip, y, sr))
                sdrs.append(si_sdr(clip, y))
        results["opus"][f"{kbps:g}"] = {"kbps": kbps,
                                        "mel_distance": round(float(np.mean(mels)), 4),
                                        "si_sdr": round(float(np.mean(sdrs)), 2)}
    return results
