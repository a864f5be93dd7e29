"""Codec benchmark: CPU speed against EnCodec 24 kHz, and peak memory of `aimusic encode/decode`.

Targets (2 CPU threads, 6 kbps, the ``music`` preset with random weights; ``--preset``):
  encode >= 50x real time, decode >= 40x real time, both >= 2x EnCodec's speed;
  encoding and decoding a 20-minute file each peak under 1 GB of RSS.

The machine may be shared, so speed runs are interleaved (ours, EnCodec, ours, ...) after a
warm-up and the median of each is reported. Memory is the peak RSS of the real CLI run as a
subprocess, read with getrusage(RUSAGE_CHILDREN) in a fresh wrapper process.

Two threads on two busy cores can run several times slower than one thread (the OpenMP
workers wait on each other), so compare absolute speeds only from a quiet machine; the load
average is printed at the start and the end.

    .venv/bin/python benchmarks/bench_codec.py [--quick] [--json out.json] [--no-encodec] [--audio F]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

SR = 24000
KBPS = 6.0
TARGETS = {"encode_x_realtime": 50.0, "decode_x_realtime": 40.0, "encode_vs_encodec": 2.0,
           "decode_vs_encodec": 2.0, "encode_peak_mb": 1000.0, "decode_peak_mb": 1000.0}
WRAPPER = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
           "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
           "print(r.returncode, time.perf_counter() - t, "
           "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def music_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples of a synthetic 'song': decaying harmonic notes, a bass line, noise-burst drums."""
    out = np.zeros(n, dtype=np.float64)
    note = int(0.25 * SR)
    scale = np.array([0, 2, 4, 7, 9])
    for start in range(0, n, note):
        t = np.arange(min(note, n - start)) / SR
        for f0, amp in ((220 * 2 ** (rng.choice(scale) / 12 + rng.integers(0, 2)), 0.12),
                        (55 * 2 ** (rng.choice(scale) / 12), 0.15)):
            tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 5))
            out[start : start + t.size] += amp * np.exp(-6 * t) * tone
        if (start // note) % 2 == 0:  # a drum hit every half second
            out[start : start + t.size] += 0.2 * np.exp(-40 * t) * rng.standard_normal(t.size)
    return (out + 0.003 * rng.standard_normal(n)).astype(np.float32)


def write_wav(path: Path, seconds: float, block_seconds: float = 10.0) -> Path:
    """A mono 16-bit wav of music_like audio, written block by block (memory stays small)."""
    total, block = int(seconds * SR), int(block_seconds * SR)
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        for i, start in enumerate(range(0, total, block)):
            f.write(np.clip(music_like(min(block, total - start), np.random.default_rng(i)), -1, 1))
    return path


PRESET = "music"  # --preset


def build_ours(fold: bool = True) -> Any:
    """The preset (``--preset``), random weights; folded as load_codec does (save the unfolded
    one)."""
    from aimusic.codec.model import PRESETS, Codec

    torch.manual_seed(0)
    codec = Codec(PRESETS[PRESET]())
    return codec.fold_weight_norm().eval() if fold else codec


def build_encodec() -> Any:
    """EnCodec 24 kHz as encodec_model_24khz() builds it (causal, weight norm), random weights."""
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # imported, never used
    warnings.filterwarnings("ignore", message=".*weight_norm` is deprecated")
    from encodec.model import EncodecModel

    torch.manual_seed(0)
    m = EncodecModel._get_model([1.5, 3.0, 6.0, 12.0, 24.0], SR, 1, causal=True,
                                model_norm="weight_norm", audio_normalize=False, name="encodec_24khz")
    m.set_target_bandwidth(KBPS)
    return m.eval()


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def time_ours(codec: Any, audio: np.ndarray) -> tuple[float, float]:
    from aimusic.codec.stream import decode_stream, encode_stream

    with torch.inference_mode():
        t0 = time.perf_counter()
        codes, _ = encode_stream(codec, iter([audio]), codec.cfg.levels_for(KBPS))
        t1 = time.perf_counter()
        y = np.concatenate(list(decode_stream(codec, codes)))
        t2 = time.perf_counter()
    assert codes.shape[0] == codec.cfg.levels_for(KBPS) and y.size >= audio.size
    return t1 - t0, t2 - t1


def time_encodec(model: Any, audio: np.ndarray) -> tuple[float, float]:
    x = torch.from_numpy(audio)[None, None]
    with torch.inference_mode():
        t0 = time.perf_counter()
        frames = model.encode(x)
        t1 = time.perf_counter()
        y = model.decode(frames)
        t2 = time.perf_counter()
    assert frames[0][0].shape[1] == 8 and y.shape[-1] >= audio.size, (frames[0][0].shape, y.shape)
    return t1 - t0, t2 - t1


def bench_speed(audio: np.ndarray, repeats: int, encodec: bool) -> dict[str, Any]:
    seconds = audio.size / SR
    systems = {"ours": (build_ours(), time_ours)}
    if encodec:
        systems["encodec"] = (build_encodec(), time_encodec)
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in systems}
    for i in range(repeats + 1):  # round 0 is the warm-up
        for name, (model, fn) in systems.items():
            enc, dec = fn(model, audio)
            if i > 0:
                runs[name].append((enc, dec))
    res: dict[str, Any] = {"audio_seconds": round(seconds, 2), "repeats": repeats}
    for name, (model, _) in systems.items():
        enc = statistics.median(r[0] for r in runs[name])
        dec = statistics.median(r[1] for r in runs[name])
        res[name] = {"parameters": n_params(model), "encode_s": enc, "decode_s": dec,
                     "encode_x_realtime": seconds / enc, "decode_x_realtime": seconds / dec,
                     "runs": runs[name]}
    if encodec:
        res["encode_vs_encodec"] = res["encodec"]["encode_s"] / res["ours"]["encode_s"]
        res["decode_vs_encodec"] = res["encodec"]["decode_s"] / res["ours"]["decode_s"]
    return res


def peak_rss(cmd: list[str]) -> dict[str, float]:
    """Run cmd in a fresh wrapper process; its wall time and the peak RSS (MB) of cmd."""
    env = {**os.environ, "AIMUSIC_THREADS": str(torch.get_num_threads())}  # the CLI honours it
    p = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, env=env)
    out = p.stdout.split()
    if p.returncode != 0 or len(out) != 3 or out[0] != "0":
        raise RuntimeError(f"command failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    wall, kb = float(out[1]), int(out[2])
    return {"peak_mb": kb / 1024, "wall_s": wall}


def bench_memory(tmp: Path, minutes: float, encodec_minutes: float | None) -> dict[str, Any]:
    from aimusic.codec.model import save_codec

    model = save_codec(build_ours(fold=False), tmp / "codec.safetensors")
    wav, codes = write_wav(tmp / "long.wav", minutes * 60), tmp / "long.codes.safetensors"
    cli = [sys.executable, "-m", "aimusic", "-q"]
    res: dict[str, Any] = {"minutes": minutes,
                           "python_torch_import": peak_rss([sys.executable, "-c", "import torch"])}
    res["encode"] = peak_rss([*cli, "encode", str(wav), "--codec", str(model), "--bandwidth",
                              str(KBPS), "-o", str(codes)])
    res["decode"] = peak_rss([*cli, "decode", str(codes), "--codec", str(model),
                              "-o", str(tmp / "long.decoded.wav")])
    for key in ("encode", "decode"):
        res[key]["x_realtime"] = minutes * 60 / res[key]["wall_s"]
    if encodec_minutes is not None:
        short = write_wav(tmp / "encodec.wav", encodec_minutes * 60)
        res["encodec"] = {"minutes": encodec_minutes}
        for op in ("encode", "decode"):
            res["encodec"][op] = peak_rss([sys.executable, __file__, "--encodec-child", op, str(short)])
    return res


def encodec_child(op: str, wav: str) -> None:
    """Subprocess for EnCodec's memory: encode a whole file, or decode random codes of its length."""
    torch.set_num_threads(int(os.environ["AIMUSIC_THREADS"]))
    model = build_encodec()
    with torch.inference_mode():
        if op == "encode":
            audio, _ = sf.read(wav, dtype="float32")
            model.encode(torch.from_numpy(audio)[None, None])
        else:
            frames = -(-sf.info(wav).frames // 320)
            model.decode([(torch.randint(1024, (1, 8, frames)), None)])


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": torch.multiprocessing.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "loadavg_at_start": loadavg(),
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv])}


def loadavg() -> str:
    """1/5/15-minute load: above the core count means other work competed for the CPUs."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def verdict(value: float, key: str) -> str:
    target = TARGETS[key]
    ok = value <= target if key.endswith("_mb") else value >= target
    return "PASS" if ok else "FAIL"


def report(res: dict[str, Any]) -> None:
    print("\n== codec benchmark ==")
    for k, v in res["machine"].items():
        print(f"{k:>17}: {v}")
    s = res["speed"]
    print(f"\nspeed: {s['audio_seconds']} s of {res['audio']}, {KBPS:g} kbps, median of {s['repeats']}"
          " interleaved runs after a warm-up")
    print(f"{'':10}{'params':>12}{'encode s':>10}{'x RT':>8}{'decode s':>10}{'x RT':>8}")
    for name in ("ours", "encodec"):
        if name in s:
            r = s[name]
            print(f"{name:10}{r['parameters']:>12,}{r['encode_s']:>10.3f}{r['encode_x_realtime']:>8.1f}"
                  f"{r['decode_s']:>10.3f}{r['decode_x_realtime']:>8.1f}")
    rows = [("encode x real time", s["ours"]["encode_x_realtime"], "encode_x_realtime", "x"),
            ("decode x real time", s["ours"]["decode_x_realtime"], "decode_x_realtime", "x")]
    if "encode_vs_encodec" in s:
        rows += [("encode speed / EnCodec", s["encode_vs_encodec"], "encode_vs_encodec", "x"),
                 ("decode speed / EnCodec", s["decode_vs_encodec"], "decode_vs_encodec", "x")]
    m = res["memory"]
    for op in ("encode", "decode"):
        rows.append((f"{op} {m['minutes']:g} min, peak RSS", m[op]["peak_mb"], f"{op}_peak_mb", " MB"))
    print(f"\n{'figure':32}{'value':>13}{'target':>14}  result")
    for label, value, key, unit in rows:
        cmp = "<=" if key.endswith("_mb") else ">="
        print(f"{label:32}{value:>10.1f}{unit:<3}  {cmp} {TARGETS[key]:>6g}{unit:<3}  {verdict(value, key)}")
    print(f"\nmemory (CLI subprocesses, {m['minutes']:g} min of 24 kHz mono):")
    print(f"  python + import torch alone: {m['python_torch_import']['peak_mb']:.0f} MB")
    for op in ("encode", "decode"):
        r = m[op]
        print(f"  aimusic {op}: peak {r['peak_mb']:.0f} MB, wall {r['wall_s']:.1f} s "
              f"({r['x_realtime']:.1f}x real time, including start-up)")
    if "encodec" in m:
        e = m["encodec"]
        for op in ("encode", "decode"):
            print(f"  EnCodec {op} (whole file, {e['minutes']:g} min): peak {e[op]['peak_mb']:.0f} MB, "
                  f"wall {e[op]['wall_s']:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 s audio, 1 repeat, 2-minute memory file")
    ap.add_argument("--json", type=Path, help="write all results here")
    ap.add_argument("--no-encodec", action="store_true", help="skip the EnCodec comparison")
    ap.add_argument("--audio", type=Path, help="time on this file (first 30 s) instead of synthetic audio")
    ap.add_argument("--threads", type=int, default=2, help="torch threads, here and in the CLI runs")
    ap.add_argument("--preset", default="music", help="our codec's preset (default: %(default)s)")
    ap.add_argument("--encodec-child", nargs=2, metavar=("OP", "WAV"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.encodec_child:
        encodec_child(*args.encodec_child)
        return
    global PRESET
    PRESET = args.preset
    torch.set_num_threads(args.threads)
    seconds, repeats = (10.0, 1) if args.quick else (30.0, 3)
    if args.audio:
        from aimusic.codec.stream import read_blocks

        got: list[np.ndarray] = []
        for block in read_blocks(args.audio, SR):  # stop reading once we have enough
            got.append(block)
            if sum(b.size for b in got) >= seconds * SR:
                break
        audio = np.concatenate(got)[: int(seconds * SR)]
        source = str(args.audio)
    else:
        audio, source = music_like(int(seconds * SR), np.random.default_rng(0)), "synthetic music"
    res: dict[str, Any] = {"machine": machine(), "audio": source, "preset": PRESET,
                           "targets": TARGETS}
    res["speed"] = bench_speed(audio, repeats, not args.no_encodec)
    with tempfile.TemporaryDirectory(prefix="bench_codec_") as tmp:
        res["memory"] = bench_memory(Path(tmp), 2.0 if args.quick else 20.0,
                                     None if args.no_encodec else 0.5 if args.quick else 2.0)
    res["machine"]["loadavg_at_end"] = loadavg()
    s, m = res["speed"], res["memory"]
    res["pass"] = {k: verdict(v, k) == "PASS" for k, v in (
        ("encode_x_realtime", s["ours"]["encode_x_realtime"]),
        ("decode_x_realtime", s["ours"]["decode_x_realtime"]),
        ("encode_vs_encodec", s.get("encode_vs_encodec")), ("decode_vs_encodec", s.get("decode_vs_encodec")),
        ("encode_peak_mb", m["encode"]["peak_mb"]), ("decode_peak_mb", m["decode"]["peak_mb"]))
        if v is not None}
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
        print(f"\nresults: {args.json}")


if __name__ == "__main__":
    main()
