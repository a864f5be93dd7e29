"""Tokenize benchmark: end-to-end speed of `aimusic tokenize` (decode, resample, semantic and
acoustic tokens, shards, manifest) on real recorded audio.

Target (2 CPU cores, ``small`` codec, an iteration-1 semantic model): >= 30x real time.

Files are taken whole, in sorted order, from ``--audio`` until ``--minutes`` of audio are
reached, linked into a temporary folder and tokenized into a fresh directory with
``--workers`` processes, exactly as the CLI does after loading its models. A breakdown
of one file's time by stage (one thread, after a warm-up) is printed beside it.

Without ``models/semantic.safetensors`` the semantic model is an iteration-1 model
(MFCC with deltas and chroma, nearest centroid) with random centroids, which costs what
a trained one costs; the report says so. The machine may be shared: the load average is
printed at the start and the end.

    .venv/bin/python benchmarks/bench_tokenize.py [--audio DIR] [--minutes 30] [--workers 2] [--json F]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

TARGET = 30.0


def pick_files(audio: Path, minutes: float) -> list[Path]:
    """Whole files in sorted order until ``minutes`` of audio."""
    from aimusic.audio import audio_info, list_audio_files

    chosen, total = [], 0.0
    for f in list_audio_files(audio):
        if total >= minutes * 60:
            break
        chosen.append(f)
        total += audio_info(f).duration
    return chosen


def load_models(codec_path: Path, semantic_path: Path, tmp: Path) -> tuple[Any, Any, str]:
    """The codec, and the semantic model or, without one, an iteration-1 model with random
    centroids (its speed does not depend on them), saved and loaded so it has a hash."""
    from aimusic.codec.model import load_codec
    from aimusic.semantic.model import PRESETS, SemanticModel, load_semantic, save_semantic

    codec = load_codec(codec_path)
    if semantic_path.exists():
        return codec, load_semantic(semantic_path), str(semantic_path)
    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS["small"](), iteration=1)
    model = SemanticModel(cfg)
    model.get_buffer("centroids").normal_()
    semantic = load_semantic(save_semantic(model, tmp / "semantic.safetensors"))
    return codec, semantic, (f"iteration 1, {cfg.clusters} random centroids "
                             f"({semantic_path} not found)")


def stages(codec: Any, semantic: Any, path: Path, seconds: float = 60.0) -> dict[str, float]:
    """Seconds per stage for the first ``seconds`` of one file, one thread."""
    from aimusic.audio import load_audio
    from aimusic.codec.stream import encode_stream

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        semantic.tokens(np.zeros(24000, np.float32))  # warm-up: imports, numba compilation
        t0 = time.perf_counter()
        audio = load_audio(path, codec.cfg.sample_rate, duration=seconds)
        t1 = time.perf_counter()
        semantic.tokens(audio)
        t2 = time.perf_counter()
        with torch.inference_mode():
            encode_stream(codec, iter([audio]), codec.cfg.levels)
        t3 = time.perf_counter()
    finally:
        torch.set_num_threads(threads)
    dur = audio.size / codec.cfg.sample_rate
    return {"audio_seconds": round(dur, 2), "decode_x_realtime": dur / (t1 - t0),
            "semantic_x_realtime": dur / (t2 - t1), "acoustic_x_realtime": dur / (t3 - t2),
            "all_x_realtime_one_thread": dur / (t3 - t0)}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", type=Path, default=Path("data/corpus/recorded/test"))
    ap.add_argument("--minutes", type=float, default=30.0, help="audio to tokenize (whole files)")
    ap.add_argument("--codec", type=Path, default=Path("models/codec.safetensors"))
    ap.add_argument("--semantic", type=Path, default=Path("models/semantic.safetensors"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--files-per-shard", type=int, default=64)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    from aimusic.tokens.tokenize import tokenize

    res: dict[str, Any] = {
        "machine": {"cpu": cpu_name(), "cores": torch.multiprocessing.cpu_count(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "loadavg_at_start": loadavg(),
                    "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "command": " ".join([Path(sys.executable).name, *sys.argv])},
        "target_x_realtime": TARGET}
    with tempfile.TemporaryDirectory(prefix="bench_tokenize_") as tmp:
        t0 = time.perf_counter()
        codec, semantic, semantic_name = load_models(args.codec, args.semantic, Path(tmp))
        res["model_load_s"] = time.perf_counter() - t0
        res["codec"], res["semantic"] = str(args.codec), semantic_name
        files = pick_files(args.audio, args.minutes)
        src, out = Path(tmp) / "audio", Path(tmp) / "tokens"
        src.mkdir()
        for f in files:
            (src / f.name).symlink_to(f.resolve())
        r = tokenize(src, out, codec, semantic, workers=args.workers,
                     files_per_shard=args.files_per_shard)
        shard_mb = sum(p.stat().st_size for p in out.glob("shard-*.safetensors")) / 2**20
    res["run"] = {"files": r.files, "items": r.items, "skipped": r.skipped,
                  "audio_seconds": round(r.new_seconds, 2), "wall_s": round(r.wall_seconds, 2),
                  "workers": r.workers, "x_realtime": round(r.x_realtime, 2),
                  "semantic_tokens": r.semantic_tokens, "acoustic_frames": r.acoustic_frames,
                  "shard_mb": round(shard_mb, 2)}
    res["machine"]["loadavg_at_end"] = loadavg()
    res["stages_one_file"] = stages(codec, semantic, files[0])  # after the run: it warms caches
    res["pass"] = r.x_realtime >= TARGET

    print("\n== tokenize benchmark ==")
    for k, v in res["machine"].items():
        print(f"{k:>17}: {v}")
    print(f"{'codec':>17}: {res['codec']}\n{'semantic':>17}: {semantic_name}")
    print(f"\none file, first {res['stages_one_file']['audio_seconds']} s, one thread (x real time):")
    for k, v in res["stages_one_file"].items():
        if k != "audio_seconds":
            print(f"  {k:28}{v:8.1f}")
    run = res["run"]
    print(f"\n{run['files']} files, {run['audio_seconds'] / 60:.1f} min of audio, {run['workers']} workers: "
          f"{run['wall_s']:.1f} s wall, {run['shard_mb']} MB of shards")
    print(f"end to end: {run['x_realtime']:.1f}x real time (target >= {TARGET:g}x: "
          f"{'PASS' if res['pass'] else 'FAIL'})")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
        print(f"results: {args.json}")


if __name__ == "__main__":
    main()
