"""Is one continuation row better than another on the same clips, beyond the clip noise?

`aimusic eval continuation` reports each row's coherence as a ratio of means over clips,
so a difference of 0.004 on 12 clips says nothing by itself. This resamples the clips
(paired: the same resample for both rows, each with the truth and floor of its own run)
and reports the difference of overall coherence with a bootstrap interval.

    python research/continuation_compare.py NEW/metrics.json:flat OLD/metrics.json:flat \
        [--draws 5000] [--out compare.json]

Both runs must have continued the same clips (same files, same start, same seed): the
clips are matched by file name and start (the folder may differ: the same files
rendered again elsewhere), and the script stops if they differ.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aimusic.gen.coherence import coherence  # noqa: E402


def load(spec: str) -> tuple[str, str, dict]:
    path, _, row = spec.rpartition(":")
    if not path:
        raise SystemExit(f"{spec}: give FILE:ROW, e.g. out/metrics.json:flat")
    return path, row, json.loads(Path(path).read_text())


def coherence_of(run: dict, row: str, idx: np.ndarray) -> dict[str, float]:
    """``row``'s coherence over the clips ``idx`` (repeats allowed), each clip with its run's
    own truth and floor."""
    clips = [run["clips"][i]["agreement"] for i in idx]
    return coherence([c[row] for c in clips], [c["truth"] for c in clips],
                     [c["floor"] for c in clips])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="FILE:ROW, the candidate")
    ap.add_argument("b", help="FILE:ROW, what it is compared with")
    ap.add_argument("--draws", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    pa, ra, A = load(a.a)
    pb, rb, B = load(a.b)
    key = [(Path(c["source"]).name, c.get("start")) for c in A["clips"]]
    if key != [(Path(c["source"]).name, c.get("start")) for c in B["clips"]]:
        raise SystemExit(f"{pa} and {pb} did not continue the same clips")
    for run, row, path in ((A, ra, pa), (B, rb, pb)):
        if any(row not in c["agreement"] for c in run["clips"]):
            raise SystemExit(f"{path}: no row {row!r} on every clip")
    n = len(key)
    full = np.arange(n)
    ca, cb = coherence_of(A, ra, full), coherence_of(B, rb, full)
    rng = np.random.default_rng(a.seed)
    draws = [rng.integers(0, n, n) for _ in range(a.draws)]  # the coherence's and the notes'
    diffs: dict[str, list[float]] = {m: [] for m in ca}
    for idx in draws:
        xa, xb = coherence_of(A, ra, idx), coherence_of(B, rb, idx)
        for m in diffs:
            d = xa[m] - xb[m]
            if not math.isnan(d):
                diffs[m].append(d)
    out = {"a": a.a, "b": a.b, "clips": n, "draws": a.draws, "measures": {}}
    print(f"{n} clips, {a.draws} paired bootstrap draws; difference a - b")
    print(f"{'measure':<11}{'a':>8}{'b':>8}{'a-b':>8}   90% interval   share a>b")
    for m in ca:
        d = np.array(diffs[m])
        lo, hi = (np.quantile(d, [0.05, 0.95]) if d.size else (math.nan, math.nan))
        share = float((d > 0).mean()) if d.size else math.nan
        out["measures"][m] = {"a": ca[m], "b": cb[m], "diff": ca[m] - cb[m],
                              "interval90": [float(lo), float(hi)], "share_a_better": share}
        print(f"{m:<11}{ca[m]:8.3f}{cb[m]:8.3f}{ca[m] - cb[m]:8.3f}   "
              f"[{lo:6.3f}, {hi:6.3f}]   {share:.2f}")
    # the note judge's figures, where both runs have them: mean over clips, same resamples
    if all(ra in c.get("notes", {}) for c in A["clips"]) and \
            all(rb in c.get("notes", {}) for c in B["clips"]):
        print(f"{'notes':<13}{'a':>8}{'b':>8}{'a-b':>8}   90% interval")
        out["notes"] = {}
        for k in A["clips"][0]["notes"][ra]:
            d = np.array([x["notes"][ra][k] - y["notes"][rb][k]
                          for x, y in zip(A["clips"], B["clips"])], dtype=float)
            xa = float(np.mean([x["notes"][ra][k] for x in A["clips"]]))
            xb = float(np.mean([y["notes"][rb][k] for y in B["clips"]]))
            lo, hi = np.quantile([d[i].mean() for i in draws], [0.05, 0.95])
            out["notes"][k] = {"a": xa, "b": xb, "diff": float(d.mean()),
                               "interval90": [float(lo), float(hi)]}
            print(f"{k:<13}{xa:8.3f}{xb:8.3f}{d.mean():8.3f}   [{lo:6.3f}, {hi:6.3f}]")
    if a.out:
        a.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
