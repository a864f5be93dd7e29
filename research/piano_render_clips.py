"""Render again just the piano corpus files an earlier evaluation used, from its metrics.json,
so a probe can run on the same clips on a machine without the 20-hour corpus.

    python research/piano_render_clips.py \
        research/results/piano-2026-12-07-s3/continuation-final-29clips.json --out data/piano-clips

Each source ``.../piano/<split>/<piece>__<k>.wav`` is rendered as `make piano-corpus` (default
size, seed 0) renders it (same piano, tempo, transposition, room and humanizing: everything
is a function of the seed and the piece's name) and written to ``OUT/piano/<split>/``. The
files not asked for (the piece's other renditions) are removed again, so OUT/piano/test
holds the evaluation's files alone and `eval continuation --clips N` on it takes them all.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT))
import make_piano_corpus as M  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("metrics", type=Path)
    ap.add_argument("--out", type=Path, default=Path("data/piano-clips"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    sources = [Path(c["source"]) for c in json.loads(a.metrics.read_text())["clips"]]
    wanted: dict[str, set[str]] = {}
    for s in sources:
        piece, _, k = s.stem.rpartition("__")
        wanted.setdefault(piece, set()).add(f"piano/{s.parent.name}/{s.name}")
    preset = M.SIZES["default"]
    pianos = M.installed_pianos()
    tag = ",".join(f"{Path(s).name}:{p}" for s, p in pianos)
    pieces = {p.name: p for p in M.list_candidates() if p.group in M.GROUPS and p.name in wanted}
    missing = set(wanted) - set(pieces)
    if missing:
        raise SystemExit(f"pieces not in music21's corpus here: {', '.join(sorted(missing))}")
    for name, p in sorted(pieces.items()):
        paths = sorted(wanted[name])
        task = M.piece_task(p, Path(paths[0]).parent.name, a.seed, pianos, a.out,
                            preset.max_seconds, preset.renditions, tag)
        r = M.render_piece(task)
        if "error" in r:
            print(f"{name}: {r['error']}", file=sys.stderr)
            continue
        for v in task["variants"]:
            if v["path"] not in wanted[name]:
                (a.out / v["path"]).unlink(missing_ok=True)
        print(f"{name}: {', '.join(paths)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
