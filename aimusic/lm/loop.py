"""The one training loop of every token LM: the music stages and the voice's reader.

A model and a batch source go in; the loop reads top to bottom: draw a batch, set the
learning rate, forward, loss, backward, clip, step, log; every ``val_every`` steps
validate and checkpoint. Around it, and only here: the schedule (linear warm-up, then a
cosine that reaches its floor when the ``steps`` or the ``minutes`` budget runs out), the
wall-clock budget, non-finite checks, and the training state that ``--resume`` continues
from exactly (model, optimizer, the batch source's random state, torch's, the counters).

Under torchrun every rank draws the same global batch and computes its share
(``Batches.draw`` returns this rank's); the loss is normalized by the global count of
target tokens, so the gradients equal a single process's up to rounding.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.distributed as dist

from aimusic.distributed import DistInfo
from aimusic.errors import AimusicError
from aimusic.lm.model import TokenLM, next_token_loss
from aimusic.progress import TrainProgress
from aimusic.runtime import fast_bf16

SINGLE = DistInfo()  # one process


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


class Batches(Protocol):
    """A source of training batches whose random state can be saved and restored."""

    def draw(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """This rank's share of the next global batch: token ids [B, T], the mask of real
        tokens [B, T], and the tokens the whole global batch reads (for throughput)."""
        ...

    def state(self) -> Any: ...

    def set_state(self, state: Any) -> None: ...


@dataclass
class Run:
    """Where a run stands: saved in its training state, restored by ``--resume``."""

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_tokens: int = 0
    train_seconds: float = 0.0
    planned: int | None = None  # the step a --minutes budget ends at, once the pace is known
    finished: bool = False  # the plan ran out (not an interrupted run)

    def throughput(self) -> dict[str, Any]:
        """Tokens read in training steps (drawing batches included, validation not), per
        second of those steps, over every process."""
        return {"train_tokens": self.train_tokens, "train_seconds": round(self.train_seconds, 2),
                "tokens_per_s": round(self.train_tokens / max(1e-9, self.train_seconds), 1)}


# -- the schedule ----------------------------------------------------------------------


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


# -- the loss --------------------------------------------------------------------------


def autocast(device: torch.device, bf16: bool = True) -> torch.autocast:
    """bfloat16 matrix products where they are fast (CUDA; CPUs with AVX-512 bf16, where a
    `small` step takes 0.7 of float32's time); the loss stays in float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16,
                          enabled=bf16 and fast_bf16(device))


def nll_sum(net: torch.nn.Module, lm: TokenLM, ids: torch.Tensor, mask: torch.Tensor,
            device: torch.device, bf16: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross entropy of the targets, and their count (tensors on the device).
    ``net`` is ``lm`` or its DDP wrapper."""
    with autocast(device, bf16):
        logits = net(ids)
    count = mask[:, 1:].sum()
    offsets = lm.stream_offsets if lm.cfg.streams > 1 else None
    return next_token_loss(logits, ids, mask, offsets) * count, count


# -- the training state ----------------------------------------------------------------


def snapshot(model: TokenLM, opt: torch.optim.Optimizer, batches: Batches, run: Run,
             device: torch.device) -> dict[str, Any]:
    """What ``restore`` needs to continue the run exactly."""
    rng = {"cuda_rng": torch.cuda.get_rng_state()} if device.type == "cuda" else {}
    return {"model": model.state_dict(), "opt": opt.state_dict(), "batches": batches.state(),
            "torch_rng": torch.get_rng_state(), **rng, "step": run.step, "history": run.history,
            "train_tokens": run.train_tokens, "train_seconds": run.train_seconds,
            "planned": run.planned, "finished": run.finished}


def restore(state: dict[str, Any], model: TokenLM, opt: torch.optim.Optimizer, batches: Batches,
            cfg: LMTrainConfig, device: torch.device) -> Run:
    """Load a ``snapshot`` into the model, optimizer and batch source. An interrupted run
    keeps its plan; a finished one resumed is extended: to a new ``steps``, or by a new
    ``minutes`` budget counted from now."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    # states written before the loop was shared name the batches' state "sampler"
    batches.set_state(state["batches"] if "batches" in state else state["sampler"])
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"])
    planned = None if state.get("finished", state.get("final")) else state.get("planned")
    planned = min(cfg.steps, int(planned)) if planned is not None and cfg.minutes > 0 else None
    return Run(step=int(state["step"]), history=list(state.get("history", [])),
               train_tokens=int(state["train_tokens"]),
               train_seconds=float(state["train_seconds"]), planned=planned)


# -- the loop --------------------------------------------------------------------------


def fit(model: TokenLM, opt: torch.optim.Optimizer, batches: Batches, cfg: LMTrainConfig,
        device: torch.device, run: Run, *, name: str,
        validate: Callable[[int], dict[str, Any]],
        checkpoint: Callable[[Run], None],
        write_log: Callable[[dict[str, Any]], None] | None = None,
        dist_info: DistInfo = SINGLE, show_progress: bool = True) -> Run:
    """Train ``model`` on ``batches`` until ``run`` reaches its planned step or the
    ``minutes`` budget of this run is spent.

    ``validate(step)`` measures the model (on the main process; other ranks get
    ``{"step": step}``); its figures, with the training loss and learning rate, go into
    ``run.history``, ``write_log`` and the progress line, then ``checkpoint(run)`` saves.
    A fresh run is measured once before its first step. The last step is always
    checkpointed, with ``run.finished`` set. Returns ``run``.
    """
    net: torch.nn.Module = model
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dist_info.local_rank] if device.type == "cuda" else None)

    def measure(loss_sum: float, loss_count: int, lr: float) -> dict[str, Any]:
        m: dict[str, Any] = validate(run.step) if dist_info.main else {"step": run.step}
        if loss_count:
            m["train_loss"] = round(loss_sum / loss_count, 5)
        m["lr"] = lr
        run.history.append(m)
        if write_log is not None and dist_info.main:
            write_log({**m, **run.throughput()} if loss_count else m)
        return m

    model.train()
    if run.step == 0 and not run.history:
        measure(0.0, 0, 0.0)  # the untrained model: where the curve starts
    start_time, start_step = time.monotonic(), run.step
    loss_sum, loss_count = 0.0, 0
    with TrainProgress(name, run.planned or cfg.steps, start=run.step,
                       enabled=show_progress and dist_info.main) as progress:
        while run.step < (run.planned or cfg.steps):
            if cfg.minutes > 0 and _any(time.monotonic() - start_time > cfg.minutes * 60,
                                        dist_info, device):
                break
            t0 = time.monotonic()
            ids, mask, tokens = batches.draw()
            lr = lr_at(run.step, cfg, run.planned)
            for g in opt.param_groups:
                g["lr"] = lr
            nll, count = nll_sum(net, model, ids.to(device, non_blocking=True),
                                 mask.to(device, non_blocking=True), device, cfg.bf16)
            total = torch.stack([nll.detach().float(), count.float()])
            if dist_info.enabled:
                dist.all_reduce(total)
            global_nll, global_count = float(total[0]), float(total[1])
            mean = global_nll / max(1.0, global_count)
            if not math.isfinite(mean):
                raise AimusicError(f"{name}: non-finite loss at step {run.step} (loss={mean:.3g});"
                                   " stopped; the last checkpoint is kept (resume with "
                                   "--resume, perhaps with a lower lr)")
            opt.zero_grad(set_to_none=True)
            (nll * (dist_info.world / max(1.0, global_count))).backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if not math.isfinite(float(norm)):
                raise AimusicError(f"{name}: non-finite gradient at step {run.step}; stopped; "
                                   "the last checkpoint is kept (resume with --resume, "
                                   "perhaps with a lower lr)")
            opt.step()
            run.step += 1
            run.train_seconds += time.monotonic() - t0
            run.train_tokens += tokens
            loss_sum, loss_count = loss_sum + global_nll, loss_count + int(global_count)
            elapsed = time.monotonic() - start_time
            if run.planned is None and cfg.minutes > 0 and elapsed >= min(30.0, 6.0 * cfg.minutes):
                run.planned = _min_all(plan_steps(cfg, run.step, run.step - start_step, elapsed),
                                       dist_info, device)
                progress.set_total(run.planned)
            progress.update(run.step, {"loss": mean,
                                       "tok/s": int(run.train_tokens / max(1e-9, run.train_seconds))})
            if run.step % cfg.val_every == 0 or run.step == (run.planned or cfg.steps):
                run.finished = run.step == (run.planned or cfg.steps)
                progress.note(measure(loss_sum, loss_count, lr))
                loss_sum, loss_count = 0.0, 0
                checkpoint(run)
    if not run.finished:  # stopped by the clock, or nothing was left to do
        run.finished = True
        if not run.history or run.history[-1]["step"] != run.step:
            measure(loss_sum, loss_count, lr_at(max(0, run.step - 1), cfg, run.planned))
        checkpoint(run)
    return run


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
