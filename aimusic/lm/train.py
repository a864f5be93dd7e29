"""Token LM training: random windows of a token directory, next-token cross entropy.

Per stage (``semantic``, ``coarse``, ``fine``; or ``delay``, MusicGen's one acoustic
stage; or ``acoustic``, a coarse LM on acoustic tokens alone, AudioLM's acoustic-only
ablation, trained only when named, never by ``--stage all``): each step draws a batch of
random windows from the training items (a numpy Generator whose state is saved, so
``--resume`` continues exactly), lays them out with ``layouts`` (windows shorter than the
context, at the end of short items, are padded and masked), and takes an AdamW step on
the mean cross entropy of the target tokens, with linear warm-up, cosine decay and
gradient clipping. Under torchrun every rank draws the same global batch and computes its
share; the loss is normalized by the global count of targets, so the gradients (and the
run) equal a single process's up to rounding.

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
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from aimusic.artifacts import load_state, save_state, state_path
from aimusic.config import config_from_dict, config_to_dict
from aimusic.distributed import DistInfo, process_group
from aimusic.errors import AimusicError, ArtifactError, ConfigError
from aimusic.lm import layouts as L
from aimusic.lm.baselines import BaselineScore, StreamCounts
from aimusic.lm.model import LMConfig, TokenLM, lm_path, next_token_loss, save_lm
from aimusic.progress import TrainProgress
from aimusic.runtime import fast_bf16
from aimusic.tokens.reader import TokenDataset

log = logging.getLogger("aimusic")
MIN_VAL_TOKENS = 50  # semantic tokens (2 s) held out, below which validation is noise

VAL_DIRS = {"val", "valid", "validation"}
FLAT_STAGES = ("semantic", "coarse", "fine")


@dataclass
class LMTrainConfig:
    steps: int = 5000
    minutes: float = 0.0  # wall-clock budget per stage; 0 means no limit
    batch_size: int = 16  # windows per step, over all processes
    lr: float = 5e-4
    min_lr: float = 0.1  # the cosine ends at this share of lr
    warmup: int = 200
    weight_decay: float = 0.1  # on matrices and the embedding, not on norms
    beta2: float = 0.95
    grad_clip: float = 1.0
    window: int = 0  # semantic tokens per window (frames for fine); 0: the most max_len holds
    val_every: int = 250
    val_windows: int = 32  # validation windows measured at each val_every
    eval_windows: int = 0  # windows of the final measurement; 0: the whole validation split
    bf16: bool = True  # bfloat16 autocast where it is fast (CUDA, CPUs with AVX-512 bf16)
    seed: int = 0


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


# -- windows ---------------------------------------------------------------------------

Window = tuple[int, int, int]  # item, start, length (semantic tokens; frames for fine)


def read_frames(ds: TokenDataset, i: int, start: int, n: int) -> torch.Tensor:
    """Acoustic frames [levels, n] from frame ``start`` of item i (within its semantic span)."""
    fpt = ds.frames_per_token
    t0, t1 = start // fpt, -(-(start + n) // fpt)
    _, ac = ds.slice(i, t0, t1 - t0)
    o = start - t0 * fpt
    return ac[:, o:o + n]


@dataclass(frozen=True)
class StageData:
    """How one stage reads windows and lays them out."""

    cfg: LMConfig
    frames_per_token: int
    n: int  # the longest window

    @classmethod
    def make(cls, cfg: LMConfig, frames_per_token: int, window: int = 0) -> StageData:
        try:
            most = L.fit_window(cfg.stage, cfg.layout, cfg.max_len, cfg.coarse_levels,
                                frames_per_token)
        except ValueError as e:
            raise ConfigError(f"{e}: raise max_len") from None
        if window > most:
            raise ConfigError(f"a window of {window} does not fit the {cfg.stage} LM's context "
                              f"of {cfg.max_len} (at most {most})")
        return cls(cfg, frames_per_token, window or most)

    @property
    def stage(self) -> str:
        return self.cfg.stage

    def units(self, semantic_length: int) -> int:
        """Window units in an item: semantic tokens, or frames for the fine stage."""
        return semantic_length * (self.frames_per_token if self.stage == "fine" else 1)

    def seq_len(self, w: int) -> int:
        return L.sequence_length(self.stage, self.cfg.layout, w, self.cfg.coarse_levels,
                                 self.frames_per_token)

    def tokens(self, w: int) -> int:
        """Tokens the model reads for a window of w (steps times streams for delay)."""
        return self.seq_len(w) * self.cfg.streams

    def target_streams(self) -> list[str | int]:
        """``"semantic"`` or codec levels: the streams whose tokens are the targets."""
        K, kc = self.cfg.levels, self.cfg.coarse_levels
        if self.stage == "semantic":
            return ["semantic"]
        lo, hi = {"coarse": (0, kc), "acoustic": (0, kc), "fine": (kc, K),
                  "delay": (0, K)}[self.stage]
        return list(range(lo, hi))

    def sequence(self, ds: TokenDataset, win: Window) -> tuple[torch.Tensor, torch.Tensor]:
        """ids, mask of one window."""
        i, start, w = win
        vocab, kc = self.cfg.layout, self.cfg.coarse_levels
        if self.stage == "fine":
            return L.fine_sequence(vocab, read_frames(ds, i, start, w), kc)
        sem, ac = ds.slice(i, start, w)
        if self.stage == "semantic":
            return L.semantic_sequence(vocab, sem)
        if self.stage == "coarse":
            return L.coarse_sequence(vocab, sem, ac, kc)
        if self.stage == "acoustic":
            return L.acoustic_sequence(vocab, ac, kc)
        return L.delay_sequence(vocab, sem, ac)

    def batch(self, ds: TokenDataset, windows: list[Window]) -> tuple[torch.Tensor, torch.Tensor]:
        """ids, mask [B, T(, streams)] padded at the end (PAD, not a target) to the longest."""
        seqs = [self.sequence(ds, w) for w in windows]
        T = max(s[0].shape[0] for s in seqs)
        ids = torch.full((len(seqs), T, *seqs[0][0].shape[1:]), L.PAD, dtype=torch.long)
        mask = torch.zeros(ids.shape, dtype=torch.bool)
        for b, (x, m) in enumerate(seqs):
            ids[b, :x.shape[0]] = x
            mask[b, :m.shape[0]] = m
        return ids, mask

    def stream_stretches(self, ds: TokenDataset,
                         win: Window) -> Iterator[tuple[str | int, np.ndarray, int]]:
        """(stream, targets, previous token or -1) of a window, for the baselines."""
        i, start, w = win
        if self.stage == "semantic":
            lo = max(0, start - 1)
            sem, _ = ds.slice(i, lo, start + w - lo)
            s = sem.numpy()
            yield "semantic", s[start - lo:], int(s[0]) if start > lo else -1
            return
        fpt = self.frames_per_token
        f0, nf = (start, w) if self.stage == "fine" else (start * fpt, w * fpt)
        lo = max(0, f0 - 1)
        ac = read_frames(ds, i, lo, f0 + nf - lo).numpy()
        for k in self.target_streams():
            row = ac[int(k)]
            yield k, row[f0 - lo:], int(row[0]) if f0 > lo else -1


class WindowSampler:
    """Random windows: an item with probability in proportion to its length, a window of
    ``n`` (or the whole item when shorter) at a uniform start. Its numpy Generator's state
    is saved with the training state."""

    def __init__(self, units: np.ndarray, items: list[int], n: int, seed: int) -> None:
        self.items, self.n = items, n
        self.units = units[items].astype(np.int64)
        self.cum = np.cumsum(self.units)
        if not len(items) or self.cum[-1] == 0:
            raise AimusicError("no training tokens to draw windows from")
        self.rng = np.random.default_rng(seed)

    def draw(self) -> Window:
        r = int(self.rng.integers(0, int(self.cum[-1])))
        j = int(np.searchsorted(self.cum, r, side="right"))
        u = int(self.units[j])
        w = min(self.n, u)
        return self.items[j], int(self.rng.integers(0, u - w + 1)), w

    def state(self) -> dict:
        return dict(self.rng.bit_generator.state)

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def tile_windows(units: np.ndarray, items: list[int], n: int, limit: int = 0) -> list[Window]:
    """Consecutive windows covering the items (the last of each may be shorter); with
    ``limit``, that many spread evenly over the list."""
    wins = [(i, s, min(n, int(units[i]) - s)) for i in items for s in range(0, int(units[i]), n)]
    if limit and len(wins) > limit:
        idx = np.unique(np.linspace(0, len(wins) - 1, limit).round().astype(int))
        wins = [wins[k] for k in idx]
    return wins


# -- measuring -------------------------------------------------------------------------


def _autocast(device: torch.device, bf16: bool = True) -> torch.autocast:
    """bfloat16 matrix products where they are fast (CUDA; CPUs with AVX-512 bf16, where a
    `small` step takes 0.7 of float32's time); the loss stays in float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16,
                          enabled=bf16 and fast_bf16(device))


def _nll_sum(model: torch.nn.Module, lm: TokenLM, ids: torch.Tensor, mask: torch.Tensor,
             device: torch.device, bf16: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross entropy of the targets, and their count (tensors on the device)."""
    with _autocast(device, bf16):
        logits = model(ids)
    count = mask[:, 1:].sum()
    offsets = lm.stream_offsets if lm.cfg.streams > 1 else None
    return next_token_loss(logits, ids, mask, offsets) * count, count


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
            s, c = _nll_sum(model, model, ids.to(device), mask.to(device), device, bf16)
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


def lr_at(step: int, cfg: LMTrainConfig, planned: int | None = None) -> float:
    """Linear warm-up to ``lr``, then a cosine to ``min_lr * lr`` at ``planned`` steps
    (default ``steps``; a ``minutes`` budget plans fewer, see ``plan_steps``)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    end = cfg.steps if planned is None else planned
    t = min(1.0, (step - cfg.warmup) / max(1, end - cfg.warmup))
    return cfg.lr * (cfg.min_lr + (1 - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * t)))


def plan_steps(cfg: LMTrainConfig, step: int, steps_done: int, elapsed: float) -> int:
    """The step at which a ``minutes`` budget will run out, from the pace so far, so the
    cosine reaches its floor when the time does (never more than ``steps``)."""
    if cfg.minutes <= 0 or steps_done <= 0:
        return cfg.steps
    rate = steps_done / max(1e-9, elapsed)
    remaining = max(0.0, cfg.minutes * 60 - elapsed)
    return max(step + 1, min(cfg.steps, step + int(0.95 * rate * remaining)))


def make_optimizer(model: TokenLM, cfg: LMTrainConfig, device: torch.device) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, cfg.beta2),
                             fused=device.type == "cuda")


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
             show_progress: bool = True) -> dict[str, dict[str, Any]]:
    """Train the stages in turn on a token directory; ``out_dir/lm-<stage>.safetensors``.

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
                counts, str(tokens_dir))
        return results


def check_depends(have: dict[str, str], ds: TokenDataset, what: Path) -> None:
    """Refuse tokens made by other models than the ones an LM was trained on."""
    if have != ds.depends:
        diff = ", ".join(f"{role} {have.get(role)} (tokens: {ds.depends.get(role)})"
                         for role in sorted(set(have) | set(ds.depends))
                         if have.get(role) != ds.depends.get(role))
        raise ArtifactError(what, f"was trained on tokens of other models than {ds.root}: "
                                  f"{diff}; use the token directory it was trained on, or "
                                  "train a new LM (without --resume)")


def _train_stage(ds: TokenDataset, train_items: list[int], val_items: list[int], stage: str,
                 out: Path, base_cfg: LMConfig, cfg: LMTrainConfig, device: torch.device,
                 resume: bool, missing_ok: bool, dist_info: DistInfo, show_progress: bool,
                 counts: _Counts, data_desc: str) -> dict[str, Any]:
    state_file = state_path(out)
    state = None
    if resume and (state_file.exists() or not missing_ok):
        state = load_state(state_file)
    elif resume and dist_info.main:
        log.info("%s: no training state; training the %s stage from the start", state_file, stage)
    if state is not None:
        check_depends(dict(state.get("depends", {})), ds, state_file)
        model_cfg = config_from_dict(LMConfig, state["model_config"], str(state_file))
        if model_cfg.stage != stage:
            raise ArtifactError(state_file, f"is the state of the {model_cfg.stage} LM, not {stage}")
        cfg = config_from_dict(LMTrainConfig, {**state["train_config"], "steps": cfg.steps,
                                               "minutes": cfg.minutes}, str(state_file))
        # a finished run resumed is a run extended: a new --minutes budget counts from now
        # and a new --steps is the new end; an interrupted run keeps its plan
        if state.get("final") and cfg.minutes <= 0 and int(state["step"]) >= cfg.steps:
            if not dist_info.main:
                return {}
            log.info("%s: already trained for %d steps", out, int(state["step"]))
            return {"step": int(state["step"]), "out": str(out), **state["final"],
                    **_throughput(int(state["train_tokens"]), float(state["train_seconds"]))}
    else:
        model_cfg = stage_config(base_cfg, stage, ds)
    if cfg.batch_size < dist_info.world:
        raise ConfigError(f"batch_size {cfg.batch_size} is smaller than the {dist_info.world} "
                          "processes sharing it")
    sd = StageData.make(model_cfg, ds.frames_per_token, cfg.window)
    units = np.array([sd.units(int(n)) for n in ds.semantic_lengths], dtype=np.int64)

    torch.manual_seed(cfg.seed)
    model = TokenLM(model_cfg).to(device)
    torch.manual_seed(cfg.seed * 1000 + dist_info.rank)  # dropout differs between ranks
    opt = make_optimizer(model, cfg, device)
    sampler = WindowSampler(units, train_items, sd.n, cfg.seed)  # alike on every rank
    step, history = 0, []
    train_tokens, train_seconds = 0, 0.0
    planned: int | None = None  # fixed once the pace under a --minutes budget is known
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sampler.set_state(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"])
        step, history = int(state["step"]), list(state.get("history", []))
        train_tokens, train_seconds = int(state["train_tokens"]), float(state["train_seconds"])
        planned = None if state.get("final") else state.get("planned")
        planned = min(cfg.steps, int(planned)) if planned is not None and cfg.minutes > 0 else None
        if dist_info.main:
            log.info("resumed %s at step %d", state_file, step)
    net: torch.nn.Module = model
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dist_info.local_rank] if device.type == "cuda" else None)

    val_tokens = sum(int(ds.semantic_lengths[i]) for i in val_items)
    if dist_info.main and val_tokens < MIN_VAL_TOKENS:
        log.warning("%s: validation holds only %d semantic token%s in all; its figures are "
                    "noise (hold out more audio: a val/ folder)", stage, val_tokens,
                    "" if val_tokens == 1 else "s")
    val_windows = tile_windows(units, val_items, sd.n, cfg.val_windows)
    final_windows = tile_windows(units, val_items, sd.n, cfg.eval_windows)
    log_file = out.with_name(out.name.removesuffix(".safetensors") + ".log.jsonl")
    metrics: dict[str, Any] = history[-1] if history else {}
    final: dict[str, Any] = {}
    name = out.name.removesuffix(".safetensors")

    def write_log(entry: dict[str, Any]) -> None:
        with open(log_file, "a") as f:
            f.write(json.dumps({"stage": stage, **entry}) + "\n")

    def throughput() -> dict[str, Any]:
        return _throughput(train_tokens, train_seconds)

    def checkpoint() -> None:
        if not dist_info.main:
            return
        extra = {"steps": step, "data": data_desc, "window": sd.n,
                 **{k: v for k, v in metrics.items() if k != "step"}, **throughput(), **final}
        save_lm(model, out, depends=ds.depends, extra=extra)
        rng = {"cuda_rng": torch.cuda.get_rng_state()} if device.type == "cuda" else {}
        save_state(state_file, {
            "model": model.state_dict(), "opt": opt.state_dict(), "sampler": sampler.state(),
            "torch_rng": torch.get_rng_state(), **rng, "step": step, "history": history,
            "train_tokens": train_tokens, "train_seconds": train_seconds, "final": final,
            "planned": planned,
            "depends": ds.depends, "model_config": config_to_dict(model_cfg),
            "train_config": config_to_dict(cfg),
        })

    def validate() -> dict[str, Any]:
        ce, n = evaluate(model, ds, sd, val_windows, device, cfg.batch_size, cfg.bf16)
        return {"step": step, "val_ce": round(ce, 5), "val_tokens": n}

    if dist_info.main and state is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if log_file.exists():
            log_file.unlink()  # a fresh run starts a fresh log
        metrics = validate()
        history.append(metrics)
        write_log({**metrics, "lr": 0.0})
    start_time, start_step = time.monotonic(), step
    progress = TrainProgress(name, planned or cfg.steps, start=step,
                             enabled=show_progress and dist_info.main)
    loss_sum, loss_count = 0.0, 0
    with progress:
        while step < (planned or cfg.steps):
            if cfg.minutes > 0 and _any(time.monotonic() - start_time > cfg.minutes * 60,
                                        dist_info, device):
                break
            t0 = time.monotonic()
            windows = [sampler.draw() for _ in range(cfg.batch_size)]  # the global batch
            mine = windows[dist_info.rank::dist_info.world]
            ids, mask = sd.batch(ds, mine)
            lr = lr_at(step, cfg, planned)
            for g in opt.param_groups:
                g["lr"] = lr
            nll, count = _nll_sum(net, model, ids.to(device, non_blocking=True),
                                  mask.to(device, non_blocking=True), device, cfg.bf16)
            total = torch.stack([nll.detach().float(), count.float()])
            if dist_info.enabled:
                dist.all_reduce(total)
            global_nll, global_count = float(total[0]), float(total[1])
            mean = global_nll / max(1.0, global_count)
            if not math.isfinite(mean):
                raise AimusicError(f"non-finite loss at step {step} of the {stage} LM "
                                   f"(loss={mean:.3g}); stopped; the last good checkpoint is "
                                   f"{out} (resume with --resume)")
            opt.zero_grad(set_to_none=True)
            (nll * (dist_info.world / global_count)).backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if not math.isfinite(float(norm)):
                raise AimusicError(f"non-finite gradient at step {step} of the {stage} LM; "
                                   f"stopped; the last good checkpoint is {out} (resume with "
                                   "--resume, perhaps with a lower lr)")
            opt.step()
            step += 1
            train_seconds += time.monotonic() - t0
            train_tokens += sum(sd.tokens(w) for _, _, w in windows)
            loss_sum, loss_count = loss_sum + global_nll, loss_count + int(global_count)
            elapsed = time.monotonic() - start_time
            if planned is None and cfg.minutes > 0 and elapsed >= min(30.0, 6.0 * cfg.minutes):
                planned = _min_all(plan_steps(cfg, step, step - start_step, elapsed),
                                   dist_info, device)
                progress.set_total(planned)
            progress.update(step, {"loss": mean,
                                   "tok/s": int(train_tokens / max(1e-9, train_seconds))})
            if step % cfg.val_every == 0 or step == (planned or cfg.steps):
                metrics = _after_val(validate() if dist_info.main else {"step": step},
                                     loss_sum, loss_count, lr)
                loss_sum, loss_count = 0.0, 0
                history.append(metrics)
                progress.note(metrics)
                checkpoint()
                if dist_info.main:
                    write_log({**metrics, **throughput()})
    if not history or history[-1]["step"] != step:  # stopped by the clock
        metrics = _after_val(validate() if dist_info.main else {"step": step}, loss_sum,
                             loss_count, lr_at(max(0, step - 1), cfg))
        history.append(metrics)
        if dist_info.main:
            write_log({**metrics, **throughput()})
    if not dist_info.main:
        return {}
    t0 = time.monotonic()
    final = {**measure(model, ds, sd, final_windows, counts.get(sd.target_streams()), device,
                       cfg.batch_size), "final_step": step}
    log.info("%s: final measurement in %.1f s", name, time.monotonic() - t0)
    checkpoint()
    write_log({"step": step, "final": True, **final, **throughput()})
    return {"step": step, "out": str(out), **final, **throughput(),
            "elapsed_s": round(time.monotonic() - start_time, 1)}


def _throughput(tokens: int, seconds: float) -> dict[str, Any]:
    """Tokens the model read in training steps (steps times streams for delay), per second
    of those steps (drawing windows included, validation not), over every process."""
    return {"train_tokens": tokens, "train_seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / max(1e-9, seconds), 1)}


def _after_val(m: dict[str, Any], loss_sum: float, loss_count: int, lr: float) -> dict[str, Any]:
    if loss_count:
        m["train_loss"] = round(loss_sum / loss_count, 5)
    m["lr"] = lr
    return m


def _min_all(value: int, info: DistInfo, device: torch.device) -> int:
    """The smallest of every rank's ``value`` (the same plan on every rank)."""
    if not info.enabled:
        return value
    t = torch.tensor([float(value)], device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def _any(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when it is true on one."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


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
        check_depends(model.depends, ds, path)
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
