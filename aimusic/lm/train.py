"""Token LM training: each stage (``semantic``, ``coarse``, ``fine``; or ``delay``,
MusicGen's one acoustic stage; or ``acoustic``, a coarse LM on acoustic tokens alone,
AudioLM's acoustic-only ablation, trained only when named, never by ``--stage all``) is a
model and a batch source of random windows (``windows``) for the shared training loop
(``loop.fit``: AdamW on the next-token cross entropy, warm-up and cosine, clipping,
``--resume`` exactly, DDP under torchrun).

Every ``val_every`` steps the model is measured on a fixed set of validation windows and
written with its training state and a line of ``<model>.log.jsonl``. At the end, the whole
validation split is measured in consecutive windows beside two count-based baselines on
exactly the same target tokens (``baselines``): all three, and the training throughput,
go into the model file's ``extra`` metadata and the log.

The LM file records the hashes of the codec and semantic model its tokens came from
(``depends``); resuming on tokens made by other models is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from aimusic.artifacts import load_state, save_state, state_path
from aimusic.config import config_from_dict, config_to_dict
from aimusic.distributed import DistInfo, process_group
from aimusic.errors import AimusicError, ArtifactError, ConfigError
from aimusic.lm import layouts as L
from aimusic.lm.baselines import BaselineScore, StreamCounts
from aimusic.lm.loop import (
    LMTrainConfig,
    Run,
    fit,
    make_optimizer,
    nll_sum,
    restore,
    snapshot,
)
from aimusic.lm.model import LMConfig, TokenLM, lm_path, reads, save_lm
from aimusic.lm.windows import StageBatches, StageData, Window, WindowSampler, tile_windows
from aimusic.tokens.reader import TokenDataset

log = logging.getLogger("aimusic")
MIN_VAL_TOKENS = 50  # semantic tokens (2 s) held out, below which validation is noise

VAL_DIRS = {"val", "valid", "validation"}
FLAT_STAGES = ("semantic", "coarse", "fine")


TRAIN_PRESETS = {
    "tiny": lambda: LMTrainConfig(steps=100, batch_size=4, lr=6e-3, warmup=5, weight_decay=0.0,
                                  val_every=50, val_windows=4),
    "small": lambda: LMTrainConfig(steps=800, batch_size=16, lr=2e-3, warmup=50, val_every=100,
                                   val_windows=16),
    "base": lambda: LMTrainConfig(steps=50_000, batch_size=32, lr=3e-4, warmup=1000,
                                  val_every=1000, val_windows=128),
}


def stages_for(stage: str, layout: str) -> list[str]:
    """The stages ``--stage`` and ``--layout`` name, in training order."""
    if layout not in ("flat", "delay"):
        raise ConfigError(f"unknown layout {layout!r}; choose flat or delay")
    if stage == "all":
        return ["semantic", "delay"] if layout == "delay" else list(FLAT_STAGES)
    if stage == "reading":
        raise ConfigError("the reading stage learns from text: train it with `aimusic train-tts`")
    if stage not in L.WINDOWED_STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose all, {', '.join(L.WINDOWED_STAGES)}")
    if layout == "delay" and stage in ("coarse", "fine", "acoustic"):
        raise ConfigError(f"the delay layout has no {stage} stage: it trains semantic and delay")
    return [stage]


def _stable_fraction(source: str) -> float:
    return int(hashlib.sha1(source.encode()).hexdigest()[:8], 16) / 2**32


def split_items(sources: list[str], val_fraction: float = 0.05) -> tuple[list[int], list[int]]:
    """Train and validation items by source path (relative to the tokenized folder): items
    below a ``val``/``valid``/``validation`` folder validate, items below ``test`` are left
    out; with no validation item, a stable ``val_fraction`` (by hash of the path) is held
    out (at least one item when there are two or more)."""
    train: list[int] = []
    val: list[int] = []
    for i, s in enumerate(sources):
        dirs = {d.lower() for d in PurePosixPath(s).parts[:-1]}
        if "test" in dirs:
            continue
        (val if dirs & VAL_DIRS else train).append(i)
    if not val and len(train) >= 2:
        held = [i for i in train if _stable_fraction(sources[i]) < val_fraction] or [train[-1]]
        train = [i for i in train if i not in set(held)]
        val = held
    return train, val


def stage_config(base: LMConfig, stage: str, ds: TokenDataset) -> LMConfig:
    """The preset's transformer with the stage and the token directory's vocabulary."""
    m = ds.manifest
    levels = int(m["levels"])
    cfg = replace(base, stage=stage, clusters=int(m["clusters"]), levels=levels,
                  codebook_size=int(m["codebook_size"]),
                  coarse_levels=max(1, min(base.coarse_levels, levels - 1)))
    cfg.check()
    return cfg


# -- measuring -------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: TokenLM, ds: TokenDataset, sd: StageData, windows: list[Window],
             device: torch.device, batch_size: int = 16, bf16: bool = True) -> tuple[float, int]:
    """Mean cross entropy (nats/token) of the windows' target tokens, and their number."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for j in range(0, len(windows), batch_size):
            ids, mask = sd.batch(ds, windows[j:j + batch_size])
            s, c = nll_sum(model, model, ids.to(device), mask.to(device), device, bf16)
            total += float(s)
            count += int(c)
    finally:
        model.train(was)
    return total / max(1, count), count


def fit_counts(ds: TokenDataset, items: list[int], streams: set[str | int], clusters: int,
               codebook_size: int) -> dict[str | int, StreamCounts]:
    """Unigram and bigram counts of the given streams over the items, in one pass."""
    counts = {s: StreamCounts(clusters if s == "semantic" else codebook_size) for s in streams}
    fpt = ds.frames_per_token
    for i in items:
        sem, ac = ds.item(i)
        for s, c in counts.items():
            c.add(sem.numpy() if s == "semantic" else ac[int(s), :fpt * sem.numel()].numpy())
    return counts


def baseline_scores(ds: TokenDataset, sd: StageData, windows: list[Window],
                    counts: dict[str | int, StreamCounts]) -> dict[str, float]:
    """Unigram and bigram cross entropy of the windows' target tokens."""
    score = BaselineScore()
    for win in windows:
        for stream, targets, prev in sd.stream_stretches(ds, win):
            score.add(counts[stream], targets, prev)
    return {**score.result(), "baseline_tokens": score.tokens}


def measure(model: TokenLM, ds: TokenDataset, sd: StageData, windows: list[Window],
            counts: dict[str | int, StreamCounts], device: torch.device,
            batch_size: int) -> dict[str, Any]:
    """The LM's cross entropy beside the baselines', over the same target tokens."""
    ce, n = evaluate(model, ds, sd, windows, device, batch_size)
    base = baseline_scores(ds, sd, windows, counts)
    if base.pop("baseline_tokens") != n:  # both count the same targets, by construction
        raise AssertionError(f"baselines measured other tokens than the LM ({n})")
    return {"val_ce": round(ce, 5), "unigram_ce": round(base["unigram_ce"], 5),
            "bigram_ce": round(base["bigram_ce"], 5), "val_tokens": n}


# -- training --------------------------------------------------------------------------


class _Counts:
    """Baseline counts on the training items, fitted when first needed (on the main
    process) for the streams of every stage of the run, in one pass."""

    def __init__(self, ds: TokenDataset, items: list[int], streams: set[str | int]) -> None:
        self.ds, self.items, self.planned = ds, items, streams
        self.counts: dict[str | int, StreamCounts] = {}

    def get(self, needed: list[str | int]) -> dict[str | int, StreamCounts]:
        missing = set(needed) - set(self.counts)
        if missing:
            m = self.ds.manifest
            t0 = time.monotonic()
            self.counts.update(fit_counts(self.ds, self.items,
                                          (missing | self.planned) - set(self.counts),
                                          int(m["clusters"]), int(m["codebook_size"])))
            log.info("baselines fitted on %d items in %.1f s", len(self.items),
                     time.monotonic() - t0)
        return self.counts


def train_lm(tokens_dir: str | Path, out_dir: str | Path, stages: list[str], model_cfg: LMConfig,
             train_cfg: LMTrainConfig, device: torch.device, resume: bool = False,
             show_progress: bool = True,
             init: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Train the stages in turn on a token directory; ``out_dir/lm-<stage>.safetensors``.

    ``init``: a models directory whose LMs (float16 is fine) each stage starts from, with
    a fresh optimizer and schedule, where it has no training state to resume.

    Returns each stage's final figures (empty on processes other than the main one).
    """
    for s in stages:
        L.check_stage(s)
    with process_group(device) as dist_info:
        ds = TokenDataset(tokens_dir)
        train_items, val_items = split_items(ds.sources)
        if not train_items:
            raise AimusicError(f"{tokens_dir}: no training items (all {len(ds)} are held out)")
        if not val_items:
            log.warning("%s: no validation items; validating on the training items", tokens_dir)
        if dist_info.main:
            log.info("LM training on %d items, validating on %d", len(train_items), len(val_items))
        streams: set[str | int] = set()
        for s in stages:
            sd = StageData.make(stage_config(model_cfg, s, ds), ds.frames_per_token)
            streams |= set(sd.target_streams())
        counts = _Counts(ds, train_items, streams)
        results = {}
        for stage in stages:
            results[stage] = _train_stage(
                ds, train_items, val_items or train_items, stage, lm_path(out_dir, stage),
                model_cfg, train_cfg, device, resume, len(stages) > 1, dist_info, show_progress,
                counts, str(tokens_dir), lm_path(init, stage) if init is not None else None)
        return results


def check_depends(have: dict[str, str], ds: TokenDataset, what: Path, stage: str) -> None:
    """Refuse tokens made by other models than the ones an LM was trained on, of the
    models whose tokens its stage reads (``reads``)."""
    diff = ", ".join(f"{role} {have.get(role)} (tokens: {ds.depends.get(role)})"
                     for role in reads(stage) if have.get(role) != ds.depends.get(role))
    if diff:
        raise ArtifactError(what, f"was trained on tokens of other models than {ds.root}: "
                                  f"{diff}; use the token directory it was trained on, or "
                                  "train a new LM (without --resume)")


def _resumed_state(state_file: Path, stage: str, ds: TokenDataset, resume: bool,
                   missing_ok: bool, main: bool) -> dict[str, Any] | None:
    """The stage's training state when resuming (None: train from the start); refused when
    it belongs to another stage or to tokens of other models."""
    if not resume:
        return None
    if not state_file.exists() and missing_ok:
        if main:
            log.info("%s: no training state; training the %s stage from the start",
                     state_file, stage)
        return None
    state = load_state(state_file)
    check_depends(dict(state.get("depends", {})), ds, state_file, stage)
    if state["model_config"].get("stage") != stage:
        raise ArtifactError(state_file, f"is the state of the {state['model_config'].get('stage')} "
                                        f"LM, not {stage}")
    return state


def _warm_start(init: Path, stage: str, ds: TokenDataset, model_cfg: LMConfig,
                main: bool) -> tuple[TokenLM, dict[str, Any]]:
    """The LM at ``init`` to start a stage from, and what the new file records of it: its
    hash and the steps and seconds of training behind it (its own and its origin's)."""
    from aimusic.artifacts import read_metadata
    from aimusic.lm.model import load_lm

    warm = load_lm(init, stage)
    vocab = ("clusters", "levels", "codebook_size", "coarse_levels")
    if any(getattr(warm.cfg, k) != getattr(model_cfg, k) for k in vocab):
        raise ArtifactError(init, "has another vocabulary than these tokens (" + ", ".join(
            f"{k} {getattr(warm.cfg, k)} against {getattr(model_cfg, k)}" for k in vocab) + ")")
    if warm.depends != ds.depends and main:
        log.warning("%s was trained on tokens of other models (%s); starting from it anyway",
                    init, ", ".join(f"{k} {v}" for k, v in sorted(warm.depends.items())))
    extra = read_metadata(init).get("extra", {})
    steps = int(extra.get("steps", 0)) + int(extra.get("init_steps", 0))
    seconds = float(extra.get("train_seconds", 0.0)) + float(extra.get("init_seconds", 0.0))
    if main:
        log.info("%s: starting from %s (%d steps before)", stage, init, steps)
    return warm, {"init": f"{init} {warm.source_hash}", "init_steps": steps,
                  "init_seconds": round(seconds, 1)}


def _stage_configs(state: dict[str, Any] | None, state_file: Path, init: Path | None,
                   stage: str, ds: TokenDataset, base_cfg: LMConfig, cfg: LMTrainConfig,
                   main: bool) -> tuple[LMConfig, LMTrainConfig, TokenLM | None, dict[str, Any]]:
    """The stage's model and training configs, the LM it starts from (``init``) and what its
    file records of that origin. A resumed run keeps its own configs: a finished run
    resumed is a run extended (a new --minutes budget counts from now, a new --steps is the
    new end); an interrupted run keeps its plan."""
    if state is not None:
        model_cfg = config_from_dict(LMConfig, state["model_config"], str(state_file))
        cfg = config_from_dict(LMTrainConfig, {**state["train_config"], "steps": cfg.steps,
                                               "minutes": cfg.minutes}, str(state_file))
        return model_cfg, cfg, None, dict(state.get("origin", {}))
    model_cfg = stage_config(base_cfg, stage, ds)
    if init is None:
        return model_cfg, cfg, None, {}
    warm, origin = _warm_start(init, stage, ds, model_cfg, main)
    return warm.cfg, cfg, warm, origin


def _train_stage(ds: TokenDataset, train_items: list[int], val_items: list[int], stage: str,
                 out: Path, base_cfg: LMConfig, cfg: LMTrainConfig, device: torch.device,
                 resume: bool, missing_ok: bool, dist_info: DistInfo, show_progress: bool,
                 counts: _Counts, data_desc: str, init: Path | None = None) -> dict[str, Any]:
    """One stage: a model and its batches for the shared loop (``loop.fit``), then the
    final measurement beside the baselines. ``init``: an LM file to start from when there
    is no state to resume."""
    state_file = state_path(out)
    state = _resumed_state(state_file, stage, ds, resume, missing_ok, dist_info.main)
    model_cfg, cfg, warm, origin = _stage_configs(state, state_file, init, stage, ds, base_cfg,
                                                  cfg, dist_info.main)
    if (state is not None and state.get("final") and int(state["step"]) >= cfg.steps
            and cfg.minutes <= 0):  # a finished run, not extended: nothing to train
        if not dist_info.main:
            return {}
        log.info("%s: already trained for %d steps", out, int(state["step"]))
        return {"step": int(state["step"]), "out": str(out), **state["final"],
                **Run(train_tokens=int(state["train_tokens"]),
                      train_seconds=float(state["train_seconds"])).throughput()}
    if cfg.batch_size < dist_info.world:
        raise ConfigError(f"batch_size {cfg.batch_size} is smaller than the {dist_info.world} "
                          "processes sharing it")
    sd = StageData.make(model_cfg, ds.frames_per_token, cfg.window)
    units = np.array([sd.units(int(n)) for n in ds.semantic_lengths], dtype=np.int64)
    torch.manual_seed(cfg.seed)
    model = TokenLM(model_cfg).to(device)
    if warm is not None:
        model.load_state_dict(warm.state_dict())
    torch.manual_seed(cfg.seed * 1000 + dist_info.rank)  # dropout differs between ranks
    opt = make_optimizer(model, cfg, device)
    batches = StageBatches(ds, sd, WindowSampler(units, train_items, sd.n, cfg.seed),
                           cfg.batch_size, dist_info)  # the same windows drawn on every rank
    run = Run()
    if state is not None:
        run = restore(state, model, opt, batches, cfg, device)
        if dist_info.main:
            log.info("resumed %s at step %d", state_file, run.step)
    val_tokens = sum(int(ds.semantic_lengths[i]) for i in val_items)
    if dist_info.main and val_tokens < MIN_VAL_TOKENS:
        log.warning("%s: validation holds only %d semantic token%s in all; its figures are "
                    "noise (hold out more audio: a val/ folder)", stage, val_tokens,
                    "" if val_tokens == 1 else "s")
    val_windows = tile_windows(units, val_items, sd.n, cfg.val_windows)
    log_file = out.with_name(out.name.removesuffix(".safetensors") + ".log.jsonl")
    final: dict[str, Any] = {}

    def write_log(entry: dict[str, Any]) -> None:
        with open(log_file, "a") as f:
            f.write(json.dumps({"stage": stage, **entry}) + "\n")

    def validate(step: int) -> dict[str, Any]:
        ce, n = evaluate(model, ds, sd, val_windows, device, cfg.batch_size, cfg.bf16)
        return {"step": step, "val_ce": round(ce, 5), "val_tokens": n}

    def checkpoint(run: Run) -> None:
        if not dist_info.main:
            return
        metrics = run.history[-1] if run.history else {}
        save_lm(model, out, depends=ds.depends,
                extra={"steps": run.step, "data": data_desc, "window": sd.n,
                       **{k: v for k, v in metrics.items() if k != "step"},
                       **run.throughput(), **origin, **final})
        save_state(state_file, {**snapshot(model, opt, batches, run, device), "final": final,
                                "origin": origin,
                                "depends": ds.depends, "model_config": config_to_dict(model_cfg),
                                "train_config": config_to_dict(cfg)})

    if dist_info.main and state is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        log_file.unlink(missing_ok=True)  # a fresh run starts a fresh log
        if origin:
            write_log({"event": "start", **origin})
    name = out.name.removesuffix(".safetensors")
    start = time.monotonic()
    fit(model, opt, batches, cfg, device, run, name=name, validate=validate,
        checkpoint=checkpoint, write_log=write_log, dist_info=dist_info,
        show_progress=show_progress)
    if not dist_info.main:
        return {}
    t0 = time.monotonic()
    final_windows = tile_windows(units, val_items, sd.n, cfg.eval_windows)
    final.update(measure(model, ds, sd, final_windows, counts.get(sd.target_streams()), device,
                         cfg.batch_size), final_step=run.step)
    log.info("%s: final measurement in %.1f s", name, time.monotonic() - t0)
    checkpoint(run)
    write_log({"step": run.step, "final": True, **final, **run.throughput()})
    return {"step": run.step, "out": str(out), **final, **run.throughput(),
            "elapsed_s": round(time.monotonic() - start, 1)}


def evaluate_lms(tokens_dir: str | Path, models_dir: str | Path, stages: list[str],
                 device: torch.device, windows: int = 0,
                 batch_size: int = 16) -> dict[str, dict[str, Any]]:
    """Each stage's trained LM on the validation split of a token directory, beside the
    unigram and bigram baselines fitted on its training split (``eval lm``)."""
    from aimusic.artifacts import read_metadata
    from aimusic.lm.model import load_lm

    ds = TokenDataset(tokens_dir)
    train_items, val_items = split_items(ds.sources)
    if not val_items:
        raise AimusicError(f"{tokens_dir}: no validation items (a val/ folder, or 2+ items)")
    loaded = []
    for stage in stages:
        path = lm_path(models_dir, stage)
        model = load_lm(path, stage, device)
        check_depends(model.depends, ds, path, stage)
        window = int(read_metadata(path)["extra"].get("window", 0))
        loaded.append((path, model, StageData.make(model.cfg, ds.frames_per_token, window)))
    streams = {s for _, _, sd in loaded for s in sd.target_streams()}
    counts = _Counts(ds, train_items, streams)
    results = {}
    for path, model, sd in loaded:
        units = np.array([sd.units(int(n)) for n in ds.semantic_lengths], dtype=np.int64)
        wins = tile_windows(units, val_items, sd.n, windows)
        results[sd.stage] = {"model": str(path), "window": sd.n,
                             **measure(model, ds, sd, wins, counts.get(sd.target_streams()), device,
                                     batch_size)}
    return results
