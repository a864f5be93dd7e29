"""Training the semantic tokenizer, self-supervised, in HuBERT's two iterations.

Iteration 1: hand-made features of random segments, standardized, k-means (k-means++
seeding, mini-batch updates). Iteration 2: a transformer sees log-mel frames, a share of
them masked in spans, and learns to predict the iteration-1 token of every masked frame
from its context. Its input is randomly equalized (a smooth random curve added across the
mel bands, and a random gain) while its targets come from the clean audio: a timbre
change must not change the prediction, which pushes its middle layers towards what is
played rather than what plays it. k-means on a middle layer gives the final tokens.
No labels anywhere.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aimusic.cluster import minibatch_kmeans, nearest
from aimusic.data import SegmentSampler, fixed_clips, scan_all
from aimusic.dsp import normalized_entropy
from aimusic.errors import AimusicError
from aimusic.fileio import file_hash
from aimusic.progress import TrainProgress
from aimusic.semantic.features import log_mel
from aimusic.semantic.model import SemanticConfig, SemanticModel, save_semantic

log = logging.getLogger("aimusic")


@dataclass
class SemanticTrainConfig:
    segment_seconds: float = 4.0
    kmeans_segments: int = 1500  # random segments whose frames k-means sees (~100 min)
    kmeans_steps: int = 300
    steps: int = 4000  # iteration-2 transformer steps
    minutes: float = 0.0  # wall-clock budget for those steps; 0 means no limit
    batch_size: int = 16
    lr: float = 5e-4
    warmup: int = 200
    mask_prob: float = 0.08  # chance that a frame starts a masked span
    mask_span: int = 5
    eq_std: float = 0.6  # random equalization strength (natural-log units)
    val_every: int = 250
    val_clips: int = 8
    seed: int = 0


TRAIN_PRESETS = {
    "tiny": lambda: SemanticTrainConfig(segment_seconds=2.0, kmeans_segments=24, kmeans_steps=20,
                                        steps=30, batch_size=4, warmup=5, val_every=15,
                                        val_clips=2),
    "small": SemanticTrainConfig,
    "base": lambda: SemanticTrainConfig(batch_size=64, steps=50_000, val_every=2000),
    "speech": SemanticTrainConfig,
}


def span_mask(batch: int, n: int, prob: float, span: int, gen: torch.Generator) -> torch.Tensor:
    """[batch, n] bool: each frame starts a masked span of ``span`` frames with ``prob``;
    at least one span per row."""
    starts = torch.rand(batch, n, generator=gen) < prob
    starts[torch.arange(batch), torch.randint(max(1, n - span + 1), (batch,), generator=gen)] = True
    mask = torch.zeros(batch, n + span, dtype=torch.bool)
    for k in range(span):
        mask[:, k: k + n] |= starts
    return mask[:, :n]


def random_eq(mel: torch.Tensor, n_mels: int, std: float, gen: torch.Generator) -> torch.Tensor:
    """Add a smooth random curve across mel bands, and a random gain, to log-mel frames
    [B, n, stack * n_mels]: a different instrument or room, the same notes."""
    b = mel.shape[0]
    m = torch.linspace(0, math.pi, n_mels)
    curve = torch.zeros(b, n_mels)
    for j in range(1, 5):
        amp = torch.randn(b, 1, generator=gen) * std / j
        phase = torch.rand(b, 1, generator=gen) * 2 * math.pi
        curve += amp * torch.cos(j * m[None] + phase)
    curve += torch.randn(b, 1, generator=gen) * std
    stack = mel.shape[-1] // n_mels
    return mel + curve.repeat(1, stack)[:, None, :].to(mel.device)


def _gather(model: SemanticModel, sampler: SegmentSampler, segments: int, batch: int,
            progress_name: str) -> torch.Tensor:
    """Unstandardized features of ``segments`` random segments, frames stacked [N, D]."""
    feats = []
    with torch.no_grad(), TrainProgress(progress_name, segments) as bar:
        for i in range(0, segments, batch):
            x = torch.from_numpy(sampler.batch(min(batch, segments - i)))
            feats.append(model.raw_features(x.to(model.centroids.device)).reshape(
                -1, model.centroids.shape[1]).cpu())
            bar.update(min(segments, i + batch), {})
    return torch.cat(feats)


def fit_clusters(model: SemanticModel, feats: torch.Tensor, cfg: SemanticTrainConfig,
                 gen: torch.Generator) -> dict[str, Any]:
    """Set the model's standardization and centroids from raw features [N, D]."""
    model.feat_mean.copy_(feats.mean(0))
    model.feat_std.copy_(feats.std(0).clamp_min(1e-5))
    f = model.standardize(feats.to(model.feat_mean.device)).cpu()
    k = model.cfg.clusters
    if f.shape[0] < k:
        raise AimusicError(f"{f.shape[0]} feature frames cannot make {k} clusters: "
                           f"give more audio or fewer --clusters")
    c = minibatch_kmeans(f, k, steps=cfg.kmeans_steps, generator=gen)
    model.centroids.copy_(c)
    assign = nearest(f, c)
    usage = normalized_entropy(assign, k)
    # mean squared distance of a frame to its centroid (per dimension): k-means' own loss
    inertia = float((f - c[assign]).pow(2).mean())
    return {"frames": int(f.shape[0]), "cluster_usage": round(usage, 4),
            "inertia": round(inertia, 4)}


def train_iteration1(collection, cfg_model: SemanticConfig, cfg: SemanticTrainConfig
                     ) -> tuple[SemanticModel, dict[str, Any]]:
    model = SemanticModel(replace(cfg_model, iteration=1))
    sampler = SegmentSampler(collection.train, cfg_model.sample_rate, cfg.segment_seconds,
                             seed=cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    feats = _gather(model, sampler, cfg.kmeans_segments, 32, "features")
    return model, fit_clusters(model, feats, cfg, gen)


def train_iteration2(collection, first: SemanticModel, cfg_model: SemanticConfig,
                     cfg: SemanticTrainConfig, device: torch.device
                     ) -> tuple[SemanticModel, dict[str, Any]]:
    mc = replace(cfg_model, iteration=2)
    torch.manual_seed(cfg.seed)
    model = SemanticModel(mc).to(device)
    assert model.encoder is not None
    head = nn.Linear(mc.dim, first.cfg.clusters).to(device)
    params = list(model.encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / max(1, cfg.steps)))))
    sr = mc.sample_rate
    sampler = SegmentSampler(collection.train, sr, cfg.segment_seconds, seed=cfg.seed + 1)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    val = [torch.from_numpy(c) for _, c in fixed_clips(collection.val or collection.train, sr,
                                                       cfg.segment_seconds, cfg.val_clips)]
    first = first.to(device)

    def targets_of(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return nearest(first.features(x).flatten(0, 1), first.centroids).view(x.shape[0], -1)

    def val_accuracy() -> float:
        if not val:
            return float("nan")
        model.eval()
        hits = total = 0
        vgen = torch.Generator().manual_seed(1234)
        with torch.no_grad():
            for clip in val:  # one at a time: a file shorter than the segment gives a shorter clip
                x = clip[None].to(device)
                mel = log_mel(x, sr, mc.hop, mc.stack, mc.n_mels)
                mask = span_mask(1, mel.shape[1], cfg.mask_prob, cfg.mask_span, vgen).to(device)
                pred = head(model.encoder(mel, mask)).argmax(-1)  # type: ignore[misc]
                hits += int((pred == targets_of(x))[mask].sum())
                total += int(mask.sum())
        model.train()
        return hits / max(1, total)

    metrics: dict[str, Any] = {}
    step, t0 = 0, time.monotonic()
    model.train()
    with TrainProgress("semantic", cfg.steps) as bar:
        while step < cfg.steps:
            if cfg.minutes > 0 and time.monotonic() - t0 > cfg.minutes * 60:
                break
            x = torch.from_numpy(sampler.batch(cfg.batch_size)).to(device)
            tgt = targets_of(x)
            mel = random_eq(log_mel(x, sr, mc.hop, mc.stack, mc.n_mels), mc.n_mels, cfg.eq_std, gen)
            mask = span_mask(x.shape[0], mel.shape[1], cfg.mask_prob, cfg.mask_span, gen).to(device)
            logits = head(model.encoder(mel, mask))
            loss = nn.functional.cross_entropy(logits[mask], tgt[mask])
            if not torch.isfinite(loss):
                raise AimusicError(f"non-finite loss at step {step}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            bar.update(step, {"loss": float(loss.detach())})
            if step % cfg.val_every == 0:
                metrics = {"step": step, "masked_accuracy": round(val_accuracy(), 4)}
                bar.note(metrics)
    metrics = {"steps": step, "masked_accuracy": round(val_accuracy(), 4),
               "train_seconds": round(time.monotonic() - t0, 1)}
    model.eval()
    feats = _gather(model, SegmentSampler(collection.train, sr, cfg.segment_seconds, seed=cfg.seed),
                    cfg.kmeans_segments, 32, "features")
    metrics.update(fit_clusters(model, feats, cfg, torch.Generator().manual_seed(cfg.seed)))
    return model.cpu(), metrics


def iteration1_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".safetensors") + ".it1.safetensors")


def train_semantic(audio_dirs: list[str | Path], out: str | Path, cfg_model: SemanticConfig,
                   cfg: SemanticTrainConfig, iterations: int, device: torch.device,
                   first: SemanticModel | None = None, val_dir: str | Path | None = None
                   ) -> dict[str, Any]:
    """Train iteration 1 (or take ``first``), then iteration 2 if asked; write ``out``
    (and, for two iterations, the iteration-1 model beside it). Returns the figures."""
    out = Path(out)
    collection = scan_all(list(audio_dirs), val_dir)
    log.info("training on %d files, validating on %d (%d skipped)", len(collection.train),
             len(collection.val), len(collection.skipped))
    data = ", ".join(map(str, audio_dirs))
    t0 = time.monotonic()
    if first is None:
        first, m1 = train_iteration1(collection, cfg_model, cfg)
        m1["seconds"] = round(time.monotonic() - t0, 1)
        p1 = out if iterations == 1 else iteration1_path(out)
        save_semantic(first, p1, extra={"data": data, **m1})
        first.source_hash = file_hash(p1)
        log.info("iteration 1: %s -> %s", m1, p1)
        if iterations == 1:
            return {"iteration1": m1, "out": str(p1)}
    else:
        m1 = {"from": first.source_hash}
    model, m2 = train_iteration2(collection, first, cfg_model, cfg, device)
    save_semantic(model, out, depends={"iteration1": first.source_hash}, extra={"data": data, **m2})
    return {"iteration1": m1, "iteration2": m2, "out": str(out)}

