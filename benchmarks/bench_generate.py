"""Generation benchmark: `aimusic continue` of a 5 s prompt by 20 s with the `small` models.

Targets (2 CPU cores): the flat layout (semantic, coarse, fine LMs) in at most 2x the
generated duration (<= 40 s for 20 s); the delay layout faster than real time.

The LMs are the `small` preset with random weights (their speed does not depend on the
weights; the sampled tokens do not change how much work a step is), with the vocabulary
of the codec and semantic model in use: `models/codec.safetensors` and
`models/semantic.safetensors` (else `semantic.it1.safetensors`) when present, random
`small` ones otherwise. Everything runs in one process through `continue_audio`, after a
short warm-up (librosa's numba compilation, first-call allocations); `--cli` also times
one cold `aimusic continue` run, imports and model loading included.

With two or more threads the LM stages run side by side, one thread each (`--stages`
chooses). The KV cache's speed-up is measured on a shorter continuation
(`--nocache-seconds`), one thread, stages in turn: recomputing the whole window at every
step is too slow for 20 s. Per stage, it is the ratio of tokens per second with and
without the cache (the same tokens either way); the cached decoding is `gen.decode`'s
`Decoder`, the recomputation `Decoder.generate(use_cache=False)`.

    .venv/bin/python benchmarks/bench_generate.py [--seconds 20] [--prompt-seconds 5]
        [--nocache-seconds 1] [--threads 2] [--stages auto|in-turn|side-by-side] [--cli] [--json F]
"""

from __future__ import annotations

import argparse
import dataclasses
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
import torch

FLAT_TARGET = 2.0  # at most this many seconds of wall time per generated second
DELAY_TARGET = 1.0


def build_models(tmp: Path, codec_path: Path, semantic_path: Path) -> dict[str, str]:
    """Codec, semantic model and random `small` LMs that belong together, in ``tmp``."""
    from aimusic.codec.model import PRESETS as CODEC_PRESETS
    from aimusic.codec.model import Codec, load_codec, save_codec
    from aimusic.fileio import file_hash
    from aimusic.lm.model import PRESETS as LM_PRESETS
    from aimusic.lm.model import TokenLM, save_lm
    from aimusic.semantic.model import PRESETS as SEM_PRESETS
    from aimusic.semantic.model import SemanticModel, load_semantic, save_semantic

    torch.manual_seed(0)
    names = {}
    if codec_path.exists():
        (tmp / "codec.safetensors").symlink_to(codec_path.resolve())
        names["codec"] = str(codec_path)
    else:
        save_codec(Codec(CODEC_PRESETS["small"]()), tmp / "codec.safetensors")
        names["codec"] = "small, random weights"
    it1 = semantic_path.with_name(semantic_path.stem + ".it1.safetensors")
    for p in (semantic_path, it1):
        if p.exists():
            (tmp / "semantic.safetensors").symlink_to(p.resolve())
            names["semantic"] = str(p)
            break
    else:
        model = SemanticModel(dataclasses.replace(SEM_PRESETS["small"](), iteration=1))
        model.get_buffer("centroids").normal_()
        save_semantic(model, tmp / "semantic.safetensors")
        names["semantic"] = "iteration 1, random centroids"
    codec = load_codec(tmp / "codec.safetensors")
    semantic = load_semantic(tmp / "semantic.safetensors")
    depends = {"codec": file_hash(tmp / "codec.safetensors"),
               "semantic": file_hash(tmp / "semantic.safetensors")}
    for stage in ("semantic", "coarse", "fine", "delay"):
        cfg = dataclasses.replace(LM_PRESETS["small"](), stage=stage, dropout=0.0,
                                  clusters=semantic.cfg.clusters, levels=codec.cfg.levels,
                                  codebook_size=codec.cfg.codebook_size)
        lm = TokenLM(cfg)
        save_lm(lm, tmp / f"lm-{stage}.safetensors", depends=depends)
        names[f"lm-{stage}"] = f"small, {lm.num_parameters():,} parameters, random weights"
    return names


def prompt_audio(path: Path | None, seconds: float, sr: int) -> tuple[np.ndarray, str]:
    from aimusic.audio import list_audio_files, load_audio

    root = path or Path("data/corpus/recorded/test")
    if root.exists():
        f = list_audio_files(root)[0]
        return load_audio(f, sr, offset=30.0, duration=seconds), f"{f} from 30 s"
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32), \
        "a 220 Hz tone with a 2 Hz tremolo"


def summarize(r: dict[str, Any]) -> dict[str, Any]:
    return {"total_s": round(r["total"], 2), "encode_s": round(r["encode"], 2),
            "decode_s": round(r["decode"], 2), "x_realtime": round(r["x_realtime"], 2),
            "wall_per_generated_s": round(r["total"] / r["seconds"], 3),
            "stages": {s: {"seconds": round(v["seconds"], 2), "waited_s": round(v["waited"], 2),
                           "tokens": v["tokens"],
                           "tokens_per_s": round(v["tokens"] / (v["seconds"] - v["waited"]), 1)}
                       for s, v in r["stages"].items()}}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--prompt", type=Path, help="audio file or folder (default: the recorded test split)")
    ap.add_argument("--prompt-seconds", type=float, default=5.0)
    ap.add_argument("--nocache-seconds", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("AIMUSIC_THREADS", "2")))
    ap.add_argument("--codec", type=Path, default=Path("models/codec.safetensors"))
    ap.add_argument("--semantic", type=Path, default=Path("models/semantic.safetensors"))
    ap.add_argument("--layouts", default="flat,delay")
    ap.add_argument("--stages", choices=("auto", "in-turn", "side-by-side"), default="auto",
                    help="LM stages one after the other, or in threads side by side (auto: side "
                         "by side with 2+ threads)")
    ap.add_argument("--cli", action="store_true", help="also time one cold `aimusic continue` (flat)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    threads = {"auto": None, "in-turn": False, "side-by-side": True}[args.stages]

    from aimusic.gen import continue_audio, load_chain

    res: dict[str, Any] = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": args.threads,
                    "torch": torch.__version__, "python": platform.python_version(),
                    "loadavg_at_start": loadavg(),
                    "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "command": " ".join([Path(sys.executable).name, *sys.argv])},
        "seconds": args.seconds, "prompt_seconds": args.prompt_seconds,
        "stages_side_by_side": threads if threads is not None else args.threads >= 2}
    layouts = args.layouts.split(",")
    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp_name:
        tmp = Path(tmp_name)
        res["models"] = build_models(tmp, args.codec, args.semantic)
        chains = {lay: load_chain(tmp, lay) for lay in layouts}
        sr = next(iter(chains.values())).sample_rate
        audio, res["prompt"] = prompt_audio(args.prompt, args.prompt_seconds, sr)
        res["windows"] = {lay: c.windows for lay, c in chains.items()}
        for chain in chains.values():  # warm-up
            continue_audio(chain, audio, 0.2, seed=0)
        res["runs"] = {}
        for lay, chain in chains.items():
            r = continue_audio(chain, audio, args.seconds, seed=0, continuation_only=True,
                               threads=threads)
            assert r["audio"].size == round(args.seconds * sr)
            res["runs"][lay] = summarize(r)
            print(f"{lay}: {r['total']:.1f} s for {args.seconds:g} s", flush=True)
        res["kv_cache"] = {}
        torch.set_num_threads(1)  # a ratio of per-token costs: one thread, stages in turn
        for lay, chain in chains.items():
            cached, plain = (continue_audio(chain, audio, args.nocache_seconds, seed=0, use_cache=c,
                                            continuation_only=True, threads=False)
                             for c in (True, False))
            assert np.array_equal(cached["audio"], plain["audio"])
            a, b = summarize(cached), summarize(plain)
            res["kv_cache"][lay] = {
                "seconds": args.nocache_seconds, "cached": a, "recomputed": b,
                "speedup": {s: round(a["stages"][s]["tokens_per_s"] / b["stages"][s]["tokens_per_s"], 1)
                            for s in a["stages"]},
                "speedup_total": round(b["total_s"] / a["total_s"], 1)}
            print(f"{lay} without the cache: {plain['total']:.1f} s for {args.nocache_seconds:g} s",
                  flush=True)
        torch.set_num_threads(args.threads)
        if args.cli and "flat" in chains:
            prompt_file = tmp / "prompt.wav"
            from aimusic.audio import save_audio

            save_audio(prompt_file, audio, sr)
            env = {**os.environ, "AIMUSIC_THREADS": str(args.threads)}
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "aimusic", "-q", "--seed", "0", "continue",
                            str(prompt_file), "--seconds", str(args.seconds), "--layout", "flat",
                            "--models", str(tmp), "-o", str(tmp / "out.wav")], check=True, env=env)
            res["cli_flat_wall_s"] = round(time.perf_counter() - t0, 2)
    res["machine"]["loadavg_at_end"] = loadavg()
    flat, delay = res["runs"].get("flat"), res["runs"].get("delay")
    res["pass"] = {}
    if flat:
        res["pass"]["flat"] = flat["wall_per_generated_s"] <= FLAT_TARGET
    if delay:
        res["pass"]["delay"] = delay["x_realtime"] >= DELAY_TARGET

    print("\n== generation benchmark ==")
    for k, v in res["machine"].items():
        print(f"{k:>17}: {v}")
    for k, v in res["models"].items():
        print(f"{k:>17}: {v}")
    print(f"{'prompt':>17}: {args.prompt_seconds:g} s of {res['prompt']}")
    print(f"{'windows':>17}: {res['windows']}")
    for lay, r in res["runs"].items():
        target = (f"target <= {FLAT_TARGET:g} s per second" if lay == "flat"
                  else f"target >= {DELAY_TARGET:g}x real time")
        ok = "PASS" if res["pass"][lay] else "FAIL"
        print(f"\ncontinue {args.seconds:g} s, {lay}: {r['total_s']} s wall, {r['x_realtime']}x real time, "
              f"{r['wall_per_generated_s']} s per generated second ({target}: {ok})")
        print(f"  encode {r['encode_s']} s, decode {r['decode_s']} s")
        for s, v in r["stages"].items():
            print(f"  {s:9}{v['seconds']:8.2f} s ({v['waited_s']:5.2f} s waiting) {v['tokens']:8,} tokens "
                  f"{v['tokens_per_s']:9,.0f} tokens/s")
    for lay, k in res["kv_cache"].items():
        print(f"\nKV cache, {lay}, continue {k['seconds']:g} s: {k['cached']['total_s']} s cached, "
              f"{k['recomputed']['total_s']} s recomputed ({k['speedup_total']}x); per stage: "
              + ", ".join(f"{s} {x}x" for s, x in k["speedup"].items()))
    if "cli_flat_wall_s" in res:
        print(f"\ncold `aimusic continue --seconds {args.seconds:g}` (flat), imports and loading "
              f"included: {res['cli_flat_wall_s']} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
        print(f"results: {args.json}")


if __name__ == "__main__":
    main()
