"""How sampling settings change continuations of one chain: each setting is a row of
`aimusic eval continuation` (coherence, the note judge), plus the loudness of each row's
continuation against the truth's, early (the first 2 s) and late (the last 2 s): a chain
that fades to silence shows it there before anywhere else.

    python research/continuation_sampling_probe.py data/piano/piano/test --models piano/nofine \
        --out piano/sampling --clips 12 \
        --row default= --row coarse1.0=1.0,1.0 --row coarse1.0-nok=1.0,1.0:0,0

A row is NAME=TEMPERATURES[:TOP_KS], one value per stage of the flat chain (semantic, coarse
and fine when the chain has one); an empty value keeps the defaults.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from aimusic.audio import list_audio_files, load_audio
from aimusic.gen import load_chain, sampling_for
from aimusic.gen.evaluate import evaluate_continuation


def parse_row(text: str, stages: tuple[str, ...]) -> tuple[str, dict]:
    name, _, spec = text.partition("=")
    temps, _, ks = spec.partition(":")
    t = [float(v) for v in temps.split(",")] if temps else None
    k = [int(v) for v in ks.split(",")] if ks else None
    return name, sampling_for(stages, t, k)


def loudness_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-9))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("audio", type=Path)
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--row", action="append", required=True)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    chain = load_chain(a.models, "flat")
    rows = dict(parse_row(r, chain.stages) for r in a.row)
    m = evaluate_continuation(list_audio_files(a.audio), a.out, {n: chain for n in rows},
                              chain.sample_rate, seconds=a.seconds, clips=a.clips,
                              sampling=rows, notes=True, progress=True)
    sr, p = chain.sample_rate, 5 * chain.sample_rate
    levels: dict[str, dict[str, list[float]]] = {}
    for clip in m["clips"]:
        for row, f in clip["files"].items():
            x = load_audio(a.out / f["audio"], sr)[p:]
            lv = levels.setdefault(row, {"first_2s": [], "last_2s": []})
            lv["first_2s"].append(loudness_db(x[:2 * sr]))
            lv["last_2s"].append(loudness_db(x[-2 * sr:]))
    summary = {"rows": {n: {k: str(v) for k, v in s.items()} for n, s in rows.items()},
               "coherence": m["coherence"], "notes": m.get("notes"),
               "loudness_db": {row: {k: round(float(np.median(v)), 1) for k, v in lv.items()}
                               for row, lv in levels.items()}}
    (a.out / "sampling.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: summary[k] for k in ("coherence", "notes", "loudness_db")}, indent=1))


if __name__ == "__main__":
    main()
