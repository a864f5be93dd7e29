"""What must a codec keep for a continuation to keep its coherence? Oracle round trips.

Each held-out clip's true continuation is rebuilt from its own STFT with one thing spoilt
(the phase, the magnitudes' detail), then scored like `aimusic eval continuation`'s codec
row: its agreement with the prompt between the truth's (1) and other clips' (0). No model
is trained; this says what an inverse-STFT decoder must get right.

    python research/codec_oracle_probe.py data/corpus/recorded/test data/corpus/rendered/test
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from aimusic.audio import list_audio_files
from aimusic.codec.evaluate import opus_roundtrip
from aimusic.gen import coherence as C
from aimusic.gen.evaluate import FLOOR_CLIPS, load_clips

SR = 24000


def stft(x: np.ndarray, n_fft: int, hop: int) -> torch.Tensor:
    return torch.stft(torch.from_numpy(x), n_fft, hop, n_fft, torch.hann_window(n_fft),
                      return_complex=True)


def istft(spec: torch.Tensor, n_fft: int, hop: int, n: int) -> np.ndarray:
    return torch.istft(spec, n_fft, hop, n_fft, torch.hann_window(n_fft), length=n).numpy()


def variants(x: np.ndarray, rng: np.random.Generator, tmp: Path) -> dict[str, np.ndarray]:
    out = {}
    n = x.size
    for n_fft in (1280, 2560):
        hop = 320
        s = stft(x, n_fft, hop)
        mag, bins, frames = s.abs(), s.shape[0], s.shape[1]
        tag = f"{n_fft}"
        out[f"{tag} true phase"] = istft(s, n_fft, hop, n)
        rand = torch.from_numpy(rng.uniform(-math.pi, math.pi, (bins, frames))).float()
        out[f"{tag} random phase"] = istft(torch.polar(mag, rand), n_fft, hop, n)
        # each bin's centre frequency advancing steadily from a random start
        k = torch.arange(bins)[:, None].float()
        t = torch.arange(frames)[None, :].float()
        adv = 2 * math.pi * k * t * hop / n_fft + rand[:, :1]
        out[f"{tag} bin-centre phase"] = istft(torch.polar(mag, adv), n_fft, hop, n)
        # a phase vocoder: each bin's phase accumulated from its true frame-to-frame advance
        # (instantaneous frequency), from zero: the absolute phases are lost, the
        # frequencies kept
        d = torch.angle(s[:, 1:] * s[:, :-1].conj())
        acc = torch.cat([torch.zeros(bins, 1), torch.cumsum(d, 1)], 1)
        out[f"{tag} accumulated true IF"] = istft(torch.polar(mag, acc), n_fft, hop, n)
        # ... started as a steady partial's bins start: phase - pi k (the frame's centre is
        # n_fft / 2 samples after the sample its phases refer to), so the bins of one
        # partial add up in the frame's centre
        centred = acc - math.pi * torch.arange(bins)[:, None].float()
        out[f"{tag} accumulated true IF, centred"] = istft(torch.polar(mag, centred), n_fft, hop, n)
        # magnitudes blurred over 3 bins (what a smooth decoder might do), true phase
        blur = torch.nn.functional.avg_pool1d(mag.T[:, None], 3, 1, 1, count_include_pad=False)[:, 0].T
        out[f"{tag} mag blurred 3 bins, true phase"] = istft(torch.polar(blur, s.angle()), n_fft, hop, n)
        # noise floor: every bin at least 40 dB below the clip's loudest, random phase there
        floor = mag.max() * 10 ** (-40 / 20)
        noisy = torch.where(mag < floor, torch.polar(torch.full_like(mag, float(floor)), rand), s)
        out[f"{tag} floor -40 dB"] = istft(noisy, n_fft, hop, n)
    for kbps in (6, 12):
        out[f"opus {kbps}"] = opus_roundtrip(x, SR, kbps, tmp)
    return out


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", type=Path, nargs="+")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    results = {}
    for d in a.dirs:
        clips, _ = load_clips(list_audio_files(d), SR, 5.0, 10.0, limit=a.clips)
        ft = [C.features(c.truth, SR) for c in clips]
        truth, floor, rows = [], [], {}
        rng = np.random.default_rng(0)
        with tempfile.TemporaryDirectory() as tmp:
            for i, c in enumerate(clips):
                fp = C.features(c.prompt, SR)
                truth.append(C.agreement(fp, ft[i]))
                others = [ft[(i + j) % len(clips)] for j in range(1, FLOOR_CLIPS + 1)]
                fl = [C.agreement(fp, o) for o in others]
                floor.append({m: float(np.mean([f[m] for f in fl])) for m in C.MEASURES})
                for name, y in variants(c.truth, rng, Path(tmp)).items():
                    rows.setdefault(name, []).append(C.agreement(fp, C.features(y, SR)))
        res = {name: {k: round(v, 3) for k, v in C.coherence(r, truth, floor).items()}
               for name, r in rows.items()}
        results[str(d)] = {"clips": len(clips), "coherence": res}
        print(d, len(clips), "clips")
        for name, r in res.items():
            print(f"  {name:40s} " + " ".join(f"{k} {v:6.3f}" for k, v in r.items()))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
