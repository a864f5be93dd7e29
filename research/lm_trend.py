"""The continuation figures against the CPU time spent on the coarse LM, for the piano and
music sets: is another CPU hour worth it, or does the target need a GPU?

    python research/lm_trend.py --out docs/lm-trend.png [--json research/results/lm-trend.json]

Left: overall coherence of the flat chain's continuations (stars: the coarse LM rendering
the truth's own semantic tokens) (5 s prompts, 10 s continued,
plain sampling, test splits) at each kept budget, with the looped prompt, the truth through
the codec and issue 31's piano target for scale. Right: the coarse LMs' validation cross
entropy against their CPU-hours, read from the training logs kept beside the weights
(``init_seconds`` of a run started from earlier weights carries the earlier runs' time).
Each point names the results file it was read from; add a point by adding a line to POINTS.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
R = "research/results/"

# (set, clips, coarse-LM CPU-minutes as budgeted by --minutes, results file): eval continuation's metrics.json
POINTS = [
    ("piano", 12, 20, R + "piano-2026-12-07-s3/continuation-20min-12clips.json"),
    ("piano", 12, 35, R + "piano-2026-12-07-s3/continuation-35min-12clips.json"),
    ("piano", 12, 95, R + "piano-2026-12-07-s3/continuation-95min-12clips.json"),
    ("piano", 29, 95, R + "piano-2026-12-07-s3/continuation-95min-29clips.json"),
    ("piano", 29, 120, R + "piano-2026-12-07-s3/continuation-final-29clips.json"),
    ("music recorded", 12, 60, R + "music-bundle-2026-12-07-s4/continuation-recorded.json"),
    ("music rendered", 12, 60, R + "music-bundle-2026-12-07-s4/continuation-rendered.json"),
    ("music recorded", 23, 60, R + "continuation-2026-12-08/music-bundle-recorded-23.json"),
]
# the same chains' coarse LMs rendering the truth's own semantic tokens
# (research/oracle_semantic_probe.py): what a perfect semantic LM would give
ORACLE = [
    ("piano", 29, 120, R + "continuation-2026-12-08/oracle-semantic-piano-29.json"),
    ("music recorded", 12, 60, R + "continuation-2026-12-08/oracle-semantic-music-recorded-12.json"),
]
# (set, training logs in order: each later one started from the one before)
LOGS = [
    ("piano coarse", ["research/checkpoints/piano/lm-coarse.log.jsonl"]),
    ("music coarse", ["research/checkpoints/music-lms/lm-coarse.log.jsonl"]),
]


def curve(paths: list[str]) -> tuple[list[float], list[float]]:
    """(CPU-hours, validation cross entropy) over a chain of runs' logs."""
    hours, ce = [], []
    for p in paths:
        base = 0.0
        for line in (ROOT / p).read_text().splitlines():
            d = json.loads(line)
            if d.get("event") == "start" and d.get("init_seconds"):
                base = float(d["init_seconds"])
            if "val_ce" in d and "train_seconds" in d and not d.get("final"):
                hours.append((base + d["train_seconds"]) / 3600)
                ce.append(d["val_ce"])
    return hours, ce


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs/lm-trend.png")
    ap.add_argument("--json", type=Path, help="also write the points read")
    a = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for name, clips, minutes, path in POINTS:
        d = json.loads((ROOT / path).read_text())
        c = d["coherence"]
        rows.append({"set": name, "clips": clips, "coarse_minutes": minutes, "file": path,
                     "flat": c["flat"]["overall"],
                     "acoustic": c.get("acoustic", {}).get("overall"),
                     "loop": c.get("loop", {}).get("overall"),
                     "codec": c["codec"]["overall"],
                     "key": d.get("notes", {}).get("flat", {}).get("key"),
                     "key_truth": d.get("notes", {}).get("truth", {}).get("key")})
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"piano": "C0", "music recorded": "C1", "music rendered": "C2"}
    for name in colors:
        for clips, mark in ((12, "o"), (29, "s"), (23, "^"), (16, "v")):
            pts = [r for r in rows if r["set"] == name and r["clips"] == clips]
            if not pts:
                continue
            ax.plot([r["coarse_minutes"] / 60 for r in pts], [r["flat"] for r in pts],
                    mark + "-", color=colors[name], label=f"{name}, {clips} clips")
            loops = [r for r in pts if r["loop"] is not None]
            ax.plot([r["coarse_minutes"] / 60 for r in loops], [r["loop"] for r in loops],
                    mark, color=colors[name], alpha=0.35, mfc="none")
    for name, clips, minutes, path in ORACLE:
        o = json.loads((ROOT / path).read_text())["coherence"]["oracle"]["overall"]
        ax.plot([minutes / 60], [o], "*", ms=12, color=colors[name], mec="k",
                label=f"{name}, {clips} clips: truth's semantic tokens")
        rows.append({"set": name, "clips": clips, "coarse_minutes": minutes, "file": path,
                     "oracle": o})
    ax.axhline(0.7, color="C0", ls="--", lw=1)
    ax.text(0.02, 0.71, "piano target 0.7", color="C0", fontsize=8)
    ax.set_xlabel("coarse LM CPU-hours (one core)")
    ax.set_ylabel("continuation coherence, overall")
    ax.set_title("continuations (hollow: the prompt looped)", fontsize=10)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    for name, paths in LOGS:
        h, ce = curve(paths)
        bx.plot(h, ce, label=name)
    bx.set_xlabel("CPU-hours (one core)")
    bx.set_ylabel("validation cross entropy (nats)")
    bx.set_title("coarse LMs", fontsize=10)
    bx.legend(fontsize=8)
    fig.tight_layout()
    tmp = a.out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(a.out)
    print(f"wrote {a.out}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")
    def f(v: float | None) -> str:
        return "  -  " if v is None else f"{v:.3f}"
    for r in rows:
        if "oracle" in r:
            print(f"{r['set']:<15}{r['clips']:>4} clips {r['coarse_minutes']:>5} min  "
                  f"oracle semantic {r['oracle']:.3f}")
            continue
        print(f"{r['set']:<15}{r['clips']:>4} clips {r['coarse_minutes']:>5} min  flat "
              f"{f(r['flat'])}  loop {f(r['loop'])}  codec {f(r['codec'])}  key {f(r['key'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
