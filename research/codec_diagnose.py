"""Where does an inverse-STFT codec lose a continuation's coherence: in the quantizer, in
its magnitudes, or in its phases?

For each held-out clip's true continuation, rows scored like `aimusic eval codec
--coherence` (1 = the truth's agreement with the prompt, 0 = other clips'):

- ``round trip``: encode, all levels, decode (what the codec gives);
- ``latent``: the encoder's latent decoded without the quantizer (what the codes lose);
- ``codec magnitudes, true phases``: the head's magnitudes with the truth's own phases;
- ``true magnitudes, codec phases``: the truth's magnitudes with the head's phases.

    python research/codec_diagnose.py CODEC data/corpus/rendered/test [--clips 12]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from aimusic.audio import list_audio_files
from aimusic.codec.model import load_codec
from aimusic.codec.modules import SpectralDecoder
from aimusic.gen.evaluate import roundtrip_coherence


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("codec", type=Path)
    ap.add_argument("dirs", type=Path, nargs="+")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    codec = load_codec(a.codec)
    head = codec.decoder
    if not isinstance(head, SpectralDecoder):
        raise SystemExit("only codecs with the istft head have magnitudes and phases to swap")
    sr = codec.cfg.sample_rate

    @torch.no_grad()
    def parts(x: np.ndarray, quantize: bool = True) -> tuple[torch.Tensor, ...]:
        t = torch.from_numpy(x)[None, None]
        z = codec.encoder(codec.pad(t))
        if quantize:
            z = codec.quantizer.decode(codec.quantizer.encode(z, codec.cfg.levels))
        log_mag, phase = head.spectrum(z)
        return log_mag, phase, head.analyze(t, phase.shape[-1])

    def out(y: torch.Tensor, n: int) -> np.ndarray:
        return y[0, 0, :n].numpy()

    trips = {
        "round trip": lambda x: out(head.synthesize(*parts(x)[:2]), x.size),
        "latent": lambda x: out(head.synthesize(*parts(x, False)[:2]), x.size),
        "codec magnitudes, true phases": lambda x: (lambda m, p, s: out(
            head.synthesize(m, torch.angle(s)), x.size))(*parts(x)),
        "true magnitudes, codec phases": lambda x: (lambda m, p, s: out(
            head.synthesize(s.abs().clamp_min(1e-7).log(), p), x.size))(*parts(x)),
    }
    results = {}
    for d in a.dirs:
        res = roundtrip_coherence(list_audio_files(d), sr, trips, clips=a.clips)
        results[str(d)] = res["coherence"]
        print(d, res["clips"], "clips")
        for name, c in res["coherence"].items():
            print(f"  {name:32s} " + " ".join(f"{k} {v:6.3f}" for k, v in c.items()))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
