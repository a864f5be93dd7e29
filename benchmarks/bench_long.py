"""Long continuations: `aimusic continue --seconds L` against a 20 s request, same models.

Per test file: its first `--prompt-seconds` are the prompt; `aimusic continue` runs in a
child process twice, for 20 s and for `--seconds` (default 600), and the benchmark keeps
each run's wall time, x real time and peak RSS (the child's own, from wait4), and whether
the output file could be read while it was still being written. Then the coherence with
the prompt (`aimusic eval continuation`'s measure: 1 = the truth's agreement with its
prompt, 0 = other files') of the long output's first and last 10 s, over the files.

    .venv/bin/python benchmarks/bench_long.py data/corpus/recorded/test --files 2 \\
        [--seconds 600] [--models aimusic/bundled/music] [--json F]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], out: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd``: its wall time, its own peak RSS (wait4's rusage of that child), and the
    times ``out`` could be read as audio while it ran, and at how many lengths."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: list[int] = []  # frames a reader found, every 2 s
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(2)
        with contextlib.suppress(RuntimeError, sf.LibsndfileError):
            seen.append(sf.info(str(out)).frames)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr.read().decode()[-2000:]}")
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "reads_while_running": len(seen), "distinct_lengths_read": len(set(seen))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--files", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--prompt-seconds", type=float, default=5.0)
    ap.add_argument("--models", default=str(ROOT / "aimusic/bundled/music"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()

    from aimusic.audio import list_audio_files, load_audio, save_audio
    from aimusic.gen import coherence as C

    env = {**os.environ}
    sr = 24000
    files = list_audio_files(a.folder)
    step = max(1, len(files) // a.files)
    chosen = files[::step][:a.files]
    rows, firsts, lasts, clips = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for f in chosen:
            x = load_audio(f, sr)
            n = int(a.prompt_seconds * sr)
            prompt, truth = x[:n], x[n:n + 10 * sr]
            clips.append((prompt, truth))
            pw = Path(tmp) / "prompt.wav"
            save_audio(pw, prompt, sr)
            row: dict[str, Any] = {"file": f.name}
            for name, secs in (("long", a.seconds), ("short", 20.0)):
                out = Path(tmp) / f"{name}.wav"
                cmd = [str(Path(sys.executable).with_name("aimusic")), "-q", "--seed", str(a.seed),
                       "continue", str(pw), "-s", str(secs), "--continuation-only", "-o", str(out),
                       "--models", a.models]
                r = run(cmd, out, env)
                r["x_realtime"] = round(secs / r["wall_s"], 3)
                row[name] = r
                if name == "long":
                    y = sf.read(str(out), dtype="float32")[0]
                    row["long"]["frames"] = int(y.size)
                    firsts.append(y[:10 * sr])
                    lasts.append(y[-10 * sr:])
            print(json.dumps(row), flush=True)
            rows.append(row)
    feats = [(C.features(p, sr), C.features(t, sr)) for p, t in clips]
    truth = [C.agreement(fp, ft) for fp, ft in feats]
    floor = [{m: float(np.mean([C.agreement(fp, feats[j][1])[m] for j in range(len(feats)) if j != i]))
              for m in C.MEASURES} for i, (fp, _) in enumerate(feats)]
    first = [C.agreement(fp, C.features(y, sr)) for (fp, _), y in zip(feats, firsts)]
    last = [C.agreement(fp, C.features(y, sr)) for (fp, _), y in zip(feats, lasts)]
    res = {"date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "command": " ".join(sys.argv), "seconds": a.seconds, "models": a.models, "files": rows,
           "coherence_first_10s": C.coherence(first, truth, floor),
           "coherence_last_10s": C.coherence(last, truth, floor)}
    print(json.dumps({k: res[k] for k in ("coherence_first_10s", "coherence_last_10s")}, indent=1))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
