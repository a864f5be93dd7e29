"""Codec training speed: steps per second of the real training loop (`train_codec`) on this
machine, float32 against bfloat16 autocast, with and without the discriminator.

Each configuration trains ``--steps`` steps of its preset's batch on synthetic music in a
temporary folder, spectrum losses on from the first step, in a fresh subprocess with
``AIMUSIC_THREADS`` set; configurations are interleaved over ``--repeats`` rounds and the
median is reported (the machine may be shared). What is timed includes one validation and
one checkpoint, as a real run's intervals do.

    .venv/bin/python benchmarks/bench_codec_train.py [--preset music] [--threads 1 2] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_codec import machine, write_wav  # noqa: E402

CHILD = """
import json, sys, dataclasses, torch
from aimusic.codec.model import PRESETS
from aimusic.codec.train import TRAIN_PRESETS, train_codec
preset, data, out, steps, bf16, adv = sys.argv[1:7]
cfg = dataclasses.replace(TRAIN_PRESETS[preset](), steps=int(steps), val_every=10**9, val_clips=1,
                          val_seconds=1.0, spec_start=0, bf16=bf16 == "1",
                          adv_start=0 if adv == "1" else 10**9)
m = train_codec(data, out, PRESETS[preset](), cfg, torch.device("cpu"), show_progress=False)
print(json.dumps({"steps_per_s": m["steps_per_s"]}))
"""


def run(preset: str, data: Path, tmp: Path, steps: int, threads: int, bf16: bool,
        adv: bool) -> float:
    env = {**os.environ, "AIMUSIC_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    p = subprocess.run([sys.executable, "-c", CHILD, preset, str(data), str(tmp / "c.safetensors"),
                        str(steps), str(int(bf16)), str(int(adv))],
                       capture_output=True, text=True, env=env)
    if p.returncode:
        raise RuntimeError(p.stderr[-3000:])
    return float(json.loads(p.stdout.strip().splitlines()[-1])["steps_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="music")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--adv-steps", type=int, default=10, help="steps of the runs with the "
                    "discriminator (0: none)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    configs = [(t, bf, False) for t in a.threads for bf in (False, True)]
    if a.adv_steps:
        configs += [(t, bf, True) for t in a.threads for bf in (False, True)]
    runs: dict[str, list[float]] = {}
    res = {"machine": machine(), "preset": a.preset, "steps": a.steps}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "data").mkdir()
        for i in range(3):
            write_wav(t / "data" / f"m{i}.wav", 20.0)
        for _ in range(a.repeats):
            for threads, bf, adv in configs:
                key = f"{threads} thread{'s' * (threads > 1)}, {'bf16' if bf else 'fp32'}" + (
                    ", with discriminator" if adv else "")
                sps = run(a.preset, t / "data", t, a.adv_steps if adv else a.steps, threads,
                          bf, adv)
                runs.setdefault(key, []).append(sps)
                print(f"{key:45s} {sps:6.2f} steps/s", flush=True)
    res["steps_per_s"] = {k: round(statistics.median(v), 3) for k, v in runs.items()}
    res["runs"] = runs
    res["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    print("\nmedian steps/s:")
    for k, v in res["steps_per_s"].items():
        print(f"  {k:45s} {v:6.2f}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
