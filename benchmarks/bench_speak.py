"""`speak` speed with the bundled voice models, with and without prompt EQ, in one process.

Target (issue 8): a ten-word sentence rendered in no more than its own duration on 2 CPU
cores with the small models. Two ten-word sentences (in no sentence of the speech corpus)
are spoken in the bundled example voice over ``--seeds`` seeds, ``--prompt-eq`` on and off
interleaved, so the machine's load falls on both alike; each run is `voice.tts.speak_text`
after one warm-up sentence (imports, model loading and first-call allocations excluded:
BENCHMARKS.md gives the whole command's start-up apart).

    .venv/bin/python benchmarks/bench_speak.py [--seeds 3] [--models DIR] [--json F]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from aimusic.audio import load_audio
from aimusic.fileio import write_json
from aimusic.gen import load_chain
from aimusic.lm.model import load_lm
from aimusic.runtime import configure_threads
from aimusic.voice.tts import EXAMPLE_VOICE, READING_FILE, speak_text

SENTENCES = ("A small boat drifted slowly toward the quiet northern harbour.",
             "Every morning the baker sings while the fresh bread cools.")
ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "aimusic" / "bundled" / "voice"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=BUNDLED)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    configure_threads()
    chain = load_chain(a.models, "flat")
    lm = load_lm(a.models / READING_FILE, "reading")
    voice = load_audio(EXAMPLE_VOICE, chain.sample_rate)
    speak_text(chain, lm, "Warm up.", voice, seed=0)
    runs = []
    for seed in range(1, a.seeds + 1):
        for text in SENTENCES:
            for eq in (False, True):
                t0 = time.perf_counter()
                r = speak_text(chain, lm, text, voice, seed=seed, eq=eq)
                wall = time.perf_counter() - t0
                runs.append({"prompt_eq": eq, "seed": seed, "text": text, "wall_s": round(wall, 3),
                             "decode_s": round(r["decode"], 3), "speech_s": round(r["seconds"], 3),
                             "wall_over_duration": round(wall / r["seconds"], 3)})
                print(f"eq {'on ' if eq else 'off'} seed {seed}: {r['seconds']:.2f} s of speech "
                      f"in {wall:.2f} s (decode {r['decode']:.2f} s)", flush=True)

    def summary(eq: bool) -> dict[str, float]:
        rs = [r for r in runs if r["prompt_eq"] == eq]
        return {"median_wall_over_duration": float(np.median([r["wall_over_duration"] for r in rs])),
                "max_wall_over_duration": max(r["wall_over_duration"] for r in rs),
                "median_decode_s": float(np.median([r["decode_s"] for r in rs]))}

    on, off = summary(True), summary(False)
    # the same seed and text make the same tokens either way: pair them
    extra = [b["wall_s"] - r["wall_s"] for r, b in zip(runs[::2], runs[1::2])]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads",
        "date": dt.date.today().isoformat(),
        "models": str(a.models.resolve().relative_to(ROOT) if a.models.resolve().is_relative_to(ROOT)
                      else a.models),
        "command": "python benchmarks/bench_speak.py" + (f" --seeds {a.seeds}" if a.seeds != 3 else ""),
        "prompt_eq_off": off, "prompt_eq_on": on,
        "prompt_eq_extra_s_median": round(float(np.median(extra)), 3),
        "runs": runs,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    if a.json:
        write_json(a.json, result)


if __name__ == "__main__":
    main()
