"""How much of a continuation's coherence does the codec alone keep? The truth of each
clip through a codec (encode, decode), scored like `aimusic eval continuation` against
the truth and floor agreements of an earlier run's metrics.json.

    python research/codec_coherence.py runs/eval-models/metrics.json \\
        models/codec.safetensors models/codec-base.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import torch

from aimusic.codec.model import load_codec
from aimusic.codec.stream import roundtrip
from aimusic.gen import coherence as C
from aimusic.gen.evaluate import load_clips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("metrics", type=Path, help="metrics.json of an eval continuation run")
    ap.add_argument("codecs", type=Path, nargs="+")
    a = ap.parse_args()
    m = json.loads(a.metrics.read_text())
    s = m["settings"]
    files = [Path(c["source"]) for c in m["clips"]]
    clips, skipped = load_clips(files, s["sample_rate"], s["prompt_seconds"], s["seconds"], s["offset"])
    assert not skipped and [c.name for c in clips] == [c["name"] for c in m["clips"]]
    truth = [c["agreement"]["truth"] for c in m["clips"]]
    floor = [c["agreement"]["floor"] for c in m["clips"]]
    for path in a.codecs:
        chain = SimpleNamespace(codec=load_codec(path), device=torch.device("cpu"))
        rows = [C.agreement(C.features(c.prompt, s["sample_rate"]),
                            C.features(roundtrip(chain.codec, c.truth), s["sample_rate"]))
                for c in clips]
        coh = C.coherence(rows, truth, floor)
        print(json.dumps({"codec": str(path), "clips": len(clips),
                          "coherence": {k: round(v, 3) for k, v in coh.items()}}))


if __name__ == "__main__":
    main()
