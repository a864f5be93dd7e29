"""Music codec variants at equal CPU time: train each for the same minutes on the same data
with the same seed, then measure every row of one table (issue 29).

    python research/codec_variants.py --minutes 30 --parallel 2 --out runs/variants
    python research/codec_variants.py --out runs/variants --only speech,binphase --eval-only

Each variant is a preset plus a few config lines (``VARIANTS``). Training runs one thread
per job (``--parallel`` jobs at once) and resumes where a killed run stopped; a variant whose
model and evaluation exist is skipped. Per variant: the validation mel distance of its last
checkpoint (training's own held-out files), and `aimusic eval codec --coherence` on the
recorded and rendered test splits (mel distance per bitrate with the bitrate ladder, SI-SDR,
code usage, encode/decode speed, and the continuation coherence the round trip keeps).
Writes OUT/<variant>/... and OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AIMUSIC = [sys.executable, "-m", "aimusic"]
DATA = ["data/corpus/recorded", "data/corpus/rendered"]
TESTS = {"recorded": ("data/corpus/recorded/test", 23), "rendered": ("data/corpus/rendered/test", 16)}
COHERENCE_CLIPS = 12

# name -> (preset, YAML text for --config)
VARIANTS: dict[str, tuple[str, str]] = {
    "small": ("small", ""),
    "speech": ("speech", ""),
    "binphase": ("speech", "model: {head_bin_phase: true}\n"),
    "50hz": ("speech", "model: {ratios: [4, 5, 3], levels: 12}\n"),
    "adv": ("speech", "train: {adv_start: 2500}\n"),
    # second round, on what the first taught (the spectral encoder and istft head win)
    "spec0": ("speech", "train: {spec_start: 0}\n"),
    "spec0-lowmel": ("speech", "train: {spec_start: 0, mel_windows: [32, 64, 128, 256, 512, "
                               "1024, 2048, 4096]}\n"),
    # third: each bin's frequency predicted and its phase accumulated (a steady partial at
    # any frequency from a steady latent; research/codec_oracle_probe.py)
    # (no waveform L1: its phase starts where a segment does, and an L1 against a waveform
    # whose phase it cannot match pulls its magnitudes down)
    "if": ("speech", "model: {head_if: true}\ntrain: {w_wave: 0.0}\n"),
    "if-spec0": ("speech", "model: {head_if: true}\ntrain: {w_wave: 0.0, spec_start: 0}\n"),
}


def run(cmd: list[str], log: Path, env: dict[str, str]) -> int:
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def train(name: str, out: Path, minutes: float) -> None:
    preset, yaml = VARIANTS[name]
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    model = d / "codec.safetensors"
    (d / "config.yaml").write_text(yaml or "{}\n")
    env = {**os.environ, "AIMUSIC_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = d / "trained"
    if done.exists():
        return
    # a killed run resumes with what it has left of its minutes (the log says how many)
    spent = 0.0
    if (d / "codec.state.safetensors").exists():
        lines = [json.loads(x) for x in (d / "codec.log.jsonl").read_text().splitlines()]
        spent = max((x.get("minutes", 0.0) for x in lines), default=0.0)
    left = minutes - spent
    if left > 0.5:
        cmd = [*AIMUSIC, "train-codec", *DATA, "--preset", preset, "--config",
               str(d / "config.yaml"), "--minutes", f"{left:.2f}", "-o", str(model)]
        if spent:
            cmd.append("--resume")
        t0 = time.time()
        rc = run(cmd, d / "train.out", env)
        if rc:
            raise SystemExit(f"{name}: train-codec failed (rc {rc}); see {d / 'train.out'}")
        print(f"{name}: trained {(time.time() - t0) / 60:.1f} min", flush=True)
    done.write_text("")


def evaluate(name: str, out: Path) -> None:
    d = out / name
    env = {**os.environ, "AIMUSIC_THREADS": "1", "OMP_NUM_THREADS": "1"}
    for split, (folder, clips) in TESTS.items():
        res = d / f"eval-{split}.json"
        if res.exists():
            continue
        cmd = [*AIMUSIC, "eval", "codec", folder, "--codec", str(d / "codec.safetensors"),
               "--clips", str(clips), "--seconds", "10", "--coherence", "-o", str(res)]
        if run(cmd, d / "eval.out", env):
            raise SystemExit(f"{name}: eval codec failed; see {d / 'eval.out'}")


def row(name: str, out: Path) -> dict:
    d = out / name
    lines = [json.loads(x) for x in (d / "codec.log.jsonl").read_text().splitlines()]
    last = [x for x in lines if "mel_distance" in x][-1]
    r = {"variant": name, "steps": last["step"], "minutes": last.get("minutes"),
         "val_mel": round(last["mel_distance"], 4), "usage": last["code_usage"]}
    for split in TESTS:
        e = json.loads((d / f"eval-{split}.json").read_text())
        bws = list(e["codec"])
        top = e["codec"][bws[-1]]
        coh = e["coherence"]["coherence"]
        r[split] = {"mel": {bw: e["codec"][bw]["mel_distance"] for bw in bws},
                    "si_sdr": top["si_sdr"], "encode_x": top["encode_x_realtime"],
                    "decode_x": top["decode_x_realtime"],
                    "coherence": {k: round(v["overall"], 3) for k, v in coh.items()},
                    "harmony": {k: round(v["harmony"], 3) for k, v in coh.items()},
                    "ladder": [(s["mean_drop"], s["std_error"]) for s in e["ladder"]]}
    return r


def table(rows: list[dict]) -> str:
    head = ("| variant | steps | val mel | recorded mel 1.5/3/6 | rendered mel 1.5/3/6 | "
            "coherence kept rec / ren (6 kbps) | harmony rec / ren | SI-SDR rec | "
            "usage min | encode / decode x |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        rec, ren = r["recorded"], r["rendered"]
        top = list(rec["coherence"])[-1]
        lines.append(
            f"| {r['variant']} | {r['steps']} | {r['val_mel']:.3f} | "
            f"{' / '.join(f'{v:.3f}' for v in rec['mel'].values())} | "
            f"{' / '.join(f'{v:.3f}' for v in ren['mel'].values())} | "
            f"{rec['coherence'][top]:.2f} / {ren['coherence'][top]:.2f} | "
            f"{rec['harmony'][top]:.2f} / {ren['harmony'][top]:.2f} | {rec['si_sdr']:.1f} | "
            f"{min(r['usage']):.2f} | {rec['encode_x']:.0f} / {rec['decode_x']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/variants"))
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--only", help="comma-separated variant names")
    ap.add_argument("--eval-only", action="store_true")
    a = ap.parse_args()
    names = a.only.split(",") if a.only else list(VARIANTS)
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {list(VARIANTS)}")

    def one(name: str) -> None:
        if not a.eval_only:
            train(name, a.out, a.minutes)
        evaluate(name, a.out)

    with ThreadPoolExecutor(a.parallel) as ex:
        list(ex.map(one, names))
    rows = [row(n, a.out) for n in names]
    (a.out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    (a.out / "table.md").write_text(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
