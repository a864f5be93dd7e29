"""Codec training: ``CodecRun`` holds a run's models, optimizers and random sources and
takes one step; ``_train`` is the loop around it, from batch to checkpoint.

Per step: random segments -> codec (with quantizer dropout) -> multi-scale mel loss and
commitment; after ``adv_start`` steps also a discriminator step (hinge) and the
generator's adversarial and feature-matching losses. Named losses are weighted by the
config, gradients clipped. Validation on held-out files at intervals writes the model,
its training state (``--resume`` continues exactly) and a line of ``<model>.log.jsonl``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aimusic.artifacts import load_state, read_metadata, save_state, state_path
from aimusic.codec.discriminator import (
    MultiScaleSTFTDiscriminator,
    feature_matching_loss,
    hinge_d_loss,
    hinge_g_loss,
)
from aimusic.codec.model import Codec, CodecConfig, save_codec
from aimusic.codec.modules import SpectralDecoder
from aimusic.config import config_from_dict, config_to_dict
from aimusic.data import SegmentSampler, fixed_clips, scan_all
from aimusic.distributed import DistInfo, any_true, process_group
from aimusic.dsp import mel_distance, multiscale_mel_loss, normalized_entropy, si_sdr
from aimusic.errors import AimusicError
from aimusic.fileio import atomic_path
from aimusic.progress import TrainProgress
from aimusic.runtime import fast_bf16

log = logging.getLogger("aimusic")


@dataclass
class CodecTrainConfig:
    steps: int = 100_000
    minutes: float = 0.0  # wall-clock budget; 0 means no limit
    batch_size: int = 8
    segment_seconds: float = 0.75
    lr: float = 3e-4
    disc_lr: float = 3e-4
    warmup: int = 200  # steps of linear warm-up of a fresh optimizer (from scratch, or --init)
    lr_half_life: int = 40_000  # both learning rates halve every this many steps (0: constant);
    # the step count carries on through --resume and --init, so a long budget spent as
    # several runs follows one schedule
    grad_clip: float = 1.0
    bf16: bool = True  # encoder, decoder and discriminator in bfloat16 autocast where that is
    # fast (CUDA; CPUs with AVX-512 bf16: 1.4x float32's steps/s); quantizer, losses in float32
    adv_start: int = 2000  # steps of reconstruction-only warm-up
    disc_channels: int = 16
    disc_ffts: tuple[int, ...] = (2048, 1024, 512)
    mel_windows: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    quantizer_dropout: float = 0.5  # share of items trained with fewer levels
    w_mel: float = 1.0
    w_wave: float = 0.1  # L1 on the waveform: the mel loss alone leaves the phase free
    w_commit: float = 1.0
    spec_start: int = 1000  # steps before the istft head's spectrum losses join (from scratch,
    # they hold a young codec's codebooks collapsed; the mel loss spreads them first)
    w_spec: float = 1.0  # istft head: its STFT magnitudes against the target's (``spectrum_losses``)
    w_phase: float = 1.0  # istft head: its phases against the target's (``phase_losses``)
    w_fine: float = 0.0  # the output's STFT magnitudes at ``fine_fft`` points against the
    # target's (``fine_spectrum_loss``): the held partials a 4 * hop window cannot resolve
    fine_fft: int = 4096
    w_adv: float = 0.1
    w_feat: float = 1.0
    decoder_only: bool = False  # train the decoder alone: the encoder and codebooks stay as
    # --init gave them, so the codec's tokens (and LMs trained on them) stay valid
    val_every: int = 500
    val_clips: int = 8
    val_seconds: float = 4.0
    seed: int = 0


TRAIN_PRESETS = {
    "tiny": lambda: CodecTrainConfig(batch_size=2, segment_seconds=0.5, adv_start=20, spec_start=40,
                                     warmup=10,
                                     disc_channels=4, val_every=50, val_clips=2,
                                     val_seconds=1.0),
    # the discriminator costs 4-5x a reconstruction step on a CPU: an hour's CPU budget
    # trains reconstruction only; longer runs get the adversarial phase
    "small": lambda: CodecTrainConfig(adv_start=20_000, disc_channels=8),
    "music": lambda: CodecTrainConfig(adv_start=20_000, disc_channels=8),
    "speech": lambda: CodecTrainConfig(adv_start=20_000, disc_channels=8),
    "base": lambda: CodecTrainConfig(batch_size=32, segment_seconds=1.0, disc_channels=32,
                                     adv_start=5000, val_every=2000),
}


def learning_rate(base: float, step: int, start: int, warmup: int, half_life: int) -> float:
    """The learning rate at ``step`` of an optimizer that started at step ``start``: linear
    warm-up over its first ``warmup`` steps, then halving every ``half_life`` steps of the
    whole schedule (counted from 0, not from ``start``)."""
    ramp = min(1.0, (step - start + 1) / warmup) if warmup > 0 else 1.0
    decay = 0.5 ** (step / half_life) if half_life > 0 else 1.0
    return base * ramp * decay


def sample_levels(batch: int, levels: int, p: float, gen: torch.Generator) -> torch.Tensor:
    """Quantizer dropout: each item uses all levels, or with probability p a uniform 1..levels.

    Drawn from a generator seeded alike on every rank, so all ranks take the same branches.
    """
    n = torch.randint(1, levels + 1, (batch,), generator=gen)
    keep_all = torch.rand(batch, generator=gen) >= p
    return torch.where(keep_all, torch.full_like(n, levels), n)


def _weighted_cos(d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(d) weighted by w: 0 when every angle d is a whole turn, whatever the
    wrapping (an anti-wrapping loss, smooth everywhere)."""
    return ((1 - torch.cos(d)) * w).sum() / w.sum().clamp_min(1e-8)


def phase_losses(phase: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """An STFT's phases [B, bins, F] against a complex target STFT of the same frames, as in
    APNet (Ai and Ling, 2023): the phases themselves, their differences across bins (group
    delay) and across frames (instantaneous frequency), each weighted by the target's
    magnitude so the loud partials count and the phases of noise (which nothing predicts)
    hardly do."""
    mag, ref = target.abs(), torch.angle(target)
    w = mag / mag.mean(dim=(1, 2), keepdim=True).clamp_min(1e-8)
    return {
        "phase/ip": _weighted_cos(phase - ref, w),
        "phase/gd": _weighted_cos(phase.diff(dim=1) - ref.diff(dim=1),
                                  torch.minimum(w[:, 1:], w[:, :-1])),
        "phase/iaf": _weighted_cos(phase.diff(dim=2) - ref.diff(dim=2),
                                   torch.minimum(w[..., 1:], w[..., :-1])),
    }


SPEC_FLOOR = 1e-2  # magnitudes below this (some 70 dB under a loud partial) all count alike


def floored(log_x: torch.Tensor, floor: float) -> torch.Tensor:
    """``log_x`` raised to ``floor`` where below it, with the gradient of ``log_x`` itself:
    an estimate below the floor where the target is above it is still pulled up. (A plain
    ``clamp_min`` has no gradient there, and bins that fell below the floor stayed there: the
    bundled speech codec predicts medians 4-8 nats below the recordings' above 2.5 kHz;
    BENCHMARKS.md.) Where both are floored, the L1 between them is 0 and so is its gradient."""
    return log_x + (log_x.clamp_min(floor) - log_x).detach()


def magnitude_loss(est: torch.Tensor, log_est: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Estimated magnitudes ``est`` (and their log) against the ``target``'s, [B, bins, F]:
    L1 of the log magnitudes floored at SPEC_FLOOR (``floored``) plus the spectral
    convergence, the linear error relative to the target's size (scale-free)."""
    convergence = (est - target).flatten(1).norm(dim=1) / target.flatten(1).norm(dim=1).clamp_min(1e-5)
    log_l1 = (floored(log_est, math.log(SPEC_FLOOR)) - target.clamp_min(SPEC_FLOOR).log()).abs().mean()
    return log_l1 + convergence.mean()


def spectrum_losses(x: torch.Tensor, log_mag: torch.Tensor, phase: torch.Tensor,
                    head: SpectralDecoder) -> dict[str, torch.Tensor]:
    """The istft head's STFT (log magnitude and phase, [B, bins, F]) against the STFT of the
    target audio x [B, 1, T] with the same window, hop and frames. The magnitudes are
    compared bin by bin (L1 of the log magnitudes, and the spectral convergence of the linear
    ones, which is scale-free: a linear L1 lets loud clips' gradients swamp the rest and
    collapsed a small codec's codebooks): a mel loss blurs the bins of a
    harmonic's neighbours together, and a codec trained on mel losses alone makes
    whispered speech, formants without harmonics (BENCHMARKS.md). An IF head's phases
    are accumulated from the segment's first frame, so its absolute phase is not compared,
    only its differences across frames and bins."""
    target = head.analyze(x, phase.shape[-1])
    losses = {"spec/mag": magnitude_loss(log_mag.exp(), log_mag, target.abs())}
    losses.update(phase_losses(phase, target))
    if head.if_phase:  # its phase starts where the segment does: only differences can match
        del losses["phase/ip"]
    return losses


def fine_spectrum_loss(x: torch.Tensor, y: torch.Tensor, n_fft: int) -> torch.Tensor:
    """``magnitude_loss``, as ``spectrum_losses`` compares the head's own frames, but on the
    decoded audio's STFT with a window of
    ``n_fft`` points (hop ``n_fft // 4``). At 4096 points and 24 kHz a bin is 5.9 Hz, finer
    than a semitone down to about 100 Hz: a partial drawn a semitone off, or a noise floor
    between partials, costs here where the 4 * hop window of the istft head (18.75 Hz
    bins at 75 frames/s) cannot tell. Both signals [B, 1, T]; T shorter than ``n_fft``
    is padded by the centred STFT."""
    window = torch.hann_window(n_fft, device=x.device)

    def mag(s: torch.Tensor) -> torch.Tensor:
        return torch.stft(s[:, 0], n_fft, n_fft // 4, window=window, return_complex=True).abs()

    m_y = mag(y)
    return magnitude_loss(m_y, m_y.clamp_min(1e-7).log(), mag(x))


@torch.no_grad()
def validate(codec: Codec, clips: list[np.ndarray], device: torch.device) -> dict[str, Any]:
    """Mel distance and SI-SDR at full bandwidth, per-level code usage (normalized entropy)."""
    codec.eval()
    sr, K = codec.cfg.sample_rate, codec.cfg.codebook_size
    mels, sdrs, codes_all = [], [], []
    for clip in clips:
        x = torch.from_numpy(clip)[None, None].to(device)
        codes = codec.encode(x)
        y = codec.decode(codes)[0, 0, : x.shape[-1]].float().cpu().numpy()
        mels.append(mel_distance(clip, y, sr))
        sdrs.append(si_sdr(clip, y))
        codes_all.append(codes[0].cpu())
    codec.train()
    if not clips:
        return {}
    codes_cat = torch.cat(codes_all, dim=-1)  # [levels, frames]
    usage = [round(normalized_entropy(codes_cat[k], K), 4) for k in range(codes_cat.shape[0])]
    return {"mel_distance": float(np.mean(mels)), "si_sdr": float(np.mean(sdrs)),
            "code_usage": usage}


def train_codec(
    audio_dir: str | Path | list[str | Path],
    out: str | Path,
    model_cfg: CodecConfig,
    train_cfg: CodecTrainConfig,
    device: torch.device,
    resume: bool = False,
    val_dir: str | Path | None = None,
    show_progress: bool = True,
    init: str | Path | None = None,
) -> dict[str, Any]:
    """Train a codec on the audio under ``audio_dir`` (one folder or several); returns the
    last validation metrics. ``init``: a codec file to start from (its architecture, its
    weights and codebooks; a fresh optimizer), e.g. to train it on with new losses; with
    ``train_cfg.decoder_only`` only its decoder learns, and the file says whose tokens it
    reads and writes (``extra.tokens_of``), so LMs trained on them keep working."""
    out = Path(out)
    with process_group(device) as dist_info:
        return _train(audio_dir, out, model_cfg, train_cfg, device, resume, val_dir,
                      show_progress, dist_info, init)


def log_path(model: Path) -> Path:
    """Where the history of ``models/x.safetensors`` is kept: ``models/x.log.jsonl``."""
    return model.with_name(model.name.removesuffix(".safetensors") + ".log.jsonl")


class CodecRun:
    """One run of codec training: the codec and its discriminator, their optimizers, the
    random sources (segments, quantizer dropout), where the schedule stands (its step, the
    minutes behind it, the step this optimizer started at), and one training step."""

    def __init__(self, model_cfg: CodecConfig, cfg: CodecTrainConfig, device: torch.device,
                 dist_info: DistInfo, files: list, init: str | Path | None,
                 start_from: Codec | None, state: dict[str, Any] | None) -> None:
        self.model_cfg, self.cfg, self.device, self.dist_info = model_cfg, cfg, device, dist_info
        torch.manual_seed(cfg.seed)
        codec = Codec(model_cfg)
        self.step, self.minutes_before, self.opt_start = 0, 0.0, 0
        self.history: list[dict[str, Any]] = []
        if start_from is not None:
            frames = cfg.batch_size * math.ceil(cfg.segment_seconds * model_cfg.frame_rate)
            codec.init_from(start_from, per_code=frames / model_cfg.codebook_size)
            done = read_metadata(init)["extra"]  # type: ignore[arg-type]
            self.step = self.opt_start = int(done.get("steps", 0))
            self.minutes_before = float(done.get("minutes", 0.0))
            log.info("starting from %s (%s) at step %d", init, start_from.source_hash, self.step)
        self.codec = codec.to(device)
        self.started_from = (state or {}).get("init") or (
            None if start_from is None else {"path": str(init), "hash": start_from.source_hash,
                                             "tokens": start_from.tokens_hash, "step": self.step})
        if cfg.decoder_only and not self.started_from:
            raise AimusicError("decoder-only training needs --init CODEC: the trained codec whose "
                               "encoder and codebooks (and so whose tokens) it keeps")
        self.frozen = (codec.encoder, codec.quantizer) if cfg.decoder_only else ()
        self.tokens_of = (self.started_from.get("tokens") or self.started_from["hash"]
                          if cfg.decoder_only and self.started_from else None)
        for m in self.frozen:
            m.requires_grad_(False)
        self.disc = MultiScaleSTFTDiscriminator(cfg.disc_ffts, cfg.disc_channels).to(device)
        self.opt_g = torch.optim.AdamW([p for p in codec.parameters() if p.requires_grad],
                                       lr=cfg.lr, betas=(0.5, 0.9))
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
        self.sampler = SegmentSampler(files, model_cfg.sample_rate, cfg.segment_seconds,
                                      seed=cfg.seed * 1000 + dist_info.rank + self.step)
        self.dropout_gen = torch.Generator().manual_seed(cfg.seed + self.step)
        if state is not None:
            self._load(state)
        self.g_model: torch.nn.Module = self.codec
        self.d_model: torch.nn.Module = self.disc
        if dist_info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [dist_info.local_rank] if device.type == "cuda" else None
            self.g_model = DDP(self.codec, device_ids=ids, broadcast_buffers=False)
            self.d_model = DDP(self.disc, device_ids=ids, broadcast_buffers=False)
        self.bf16 = cfg.bf16 and fast_bf16(device)
        self.weights = {"mel/loss": cfg.w_mel, "wave/l1": cfg.w_wave, "vq/commit": cfg.w_commit,
                        "spec/mag": cfg.w_spec, "spec/fine": cfg.w_fine, "phase/ip": cfg.w_phase,
                        "phase/gd": cfg.w_phase, "phase/iaf": cfg.w_phase,
                        "adv/gen": cfg.w_adv, "adv/feat": cfg.w_feat}
        self.head = codec.decoder if isinstance(codec.decoder, SpectralDecoder) else None
        self.spectral = self.head is not None and (cfg.w_spec > 0 or cfg.w_phase > 0)
        self.spec_from = 0 if self.started_from else cfg.spec_start  # a trained codec: no warm-up

    def _load(self, state: dict[str, Any]) -> None:
        self.codec.load_state_dict(state["codec"])
        self.disc.load_state_dict(state["disc"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sampler.set_state(state["sampler"])
        self.dropout_gen.set_state(state["dropout_rng"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.history = int(state["step"]), list(state.get("history", []))
        self.minutes_before = float(state.get("minutes", 0.0))
        self.opt_start = int(state.get("opt_start", 0))

    def state(self, minutes: float) -> dict[str, Any]:
        """What ``--resume`` needs to continue exactly."""
        return {"codec": self.codec.state_dict(), "disc": self.disc.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "sampler": self.sampler.state(), "dropout_rng": self.dropout_gen.get_state(),
                "torch_rng": torch.get_rng_state(), "step": self.step, "history": self.history,
                "minutes": minutes, "opt_start": self.opt_start,
                "model_config": config_to_dict(self.model_cfg),
                "train_config": config_to_dict(self.cfg), "init": self.started_from}

    def train_step(self) -> dict[str, float]:
        """One step: the discriminator's (after ``adv_start``), then the codec's on the
        weighted losses. Returns the losses."""
        cfg, device = self.cfg, self.device
        for m in self.frozen:  # eval mode: the codebooks' EMA and dead-code restarts stay off
            m.eval()
        lr_scale = learning_rate(1.0, self.step, self.opt_start, cfg.warmup, cfg.lr_half_life)
        for opt, base in ((self.opt_g, cfg.lr), (self.opt_d, cfg.disc_lr)):
            for group in opt.param_groups:
                group["lr"] = base * lr_scale
        x = torch.from_numpy(self.sampler.batch(cfg.batch_size))[:, None].to(device)  # [B, 1, T]
        n_levels = sample_levels(cfg.batch_size, self.model_cfg.levels, cfg.quantizer_dropout,
                                 self.dropout_gen).to(device)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)
        with autocast:
            y, _, commit, *spectrum = self.g_model(
                x, n_levels, spectrum=self.spectral and self.step >= self.spec_from)
        y = y.float()
        losses = {"mel/loss": multiscale_mel_loss(x, y, self.model_cfg.sample_rate,
                                                  cfg.mel_windows),
                  "wave/l1": (x - y).abs().mean(), "vq/commit": commit.float()}
        if spectrum and self.head is not None:
            log_mag, phase = spectrum
            losses.update(spectrum_losses(x, log_mag.float(), phase.float(), self.head))
        if cfg.w_fine > 0:
            losses["spec/fine"] = fine_spectrum_loss(x, y, cfg.fine_fft)
        if self.step >= cfg.adv_start:
            with autocast:
                d_loss = hinge_d_loss(self.d_model(x), self.d_model(y.detach()))
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.grad_clip)
            self.opt_d.step()
            with autocast:
                fake = self.d_model(y)
                with torch.no_grad():
                    real = self.d_model(x)
            losses["adv/gen"] = hinge_g_loss(fake).float()
            losses["adv/feat"] = feature_matching_loss(real, fake).float()
            losses["adv/disc"] = d_loss.detach().float()
        total = sum(self.weights[k] * v for k, v in losses.items() if k in self.weights)
        if any_true(not bool(torch.isfinite(total)), self.dist_info):
            raise AimusicError(
                f"non-finite loss at step {self.step} "
                f"({', '.join(f'{k}={float(v.detach()):.3g}' for k, v in losses.items())}); "
                "stopped; the last good checkpoint is kept (resume with --resume)")
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[union-attr]
        torch.nn.utils.clip_grad_norm_(self.codec.parameters(), cfg.grad_clip)
        self.opt_g.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in losses.items()}


def _train(audio_dir, out, model_cfg, cfg, device, resume, val_dir, show_progress, dist_info,
           init):
    state_file = state_path(out)
    state = load_state(state_file) if resume else None
    start_from = None
    if init is not None and state is None:
        from aimusic.codec.model import load_codec

        start_from = load_codec(init)
        model_cfg = start_from.cfg  # the file's architecture, whatever the preset says
    if state is not None:  # the run's own configs win over flags when resuming
        model_cfg = config_from_dict(CodecConfig, state["model_config"], str(state_file))
        cfg = config_from_dict(CodecTrainConfig, {**state["train_config"],
                                                  "steps": cfg.steps, "minutes": cfg.minutes},
                               str(state_file))
    collection = scan_all(audio_dir, val_dir)
    data_desc = ", ".join(map(str, audio_dir if isinstance(audio_dir, list) else [audio_dir]))
    if dist_info.main:
        log.info("training on %d files, validating on %d (%d skipped)",
                 len(collection.train), len(collection.val), len(collection.skipped))
    r = CodecRun(model_cfg, cfg, device, dist_info, collection.train, init, start_from, state)
    if state is not None:
        log.info("resumed %s at step %d", state_file, r.step)
    val_clips = [c for _, c in fixed_clips(collection.val or collection.train,
                                           model_cfg.sample_rate, cfg.val_seconds, cfg.val_clips)]
    metrics: dict[str, Any] = r.history[-1] if r.history else {}
    start_time = time.monotonic()
    history_file = log_path(out)
    earlier = r.history if state is not None else _read_log(init)  # the schedule's runs so far
    run = 1 + max((h.get("run", 0) for h in earlier), default=0)
    if dist_info.main:
        _start_log(history_file, init if state is None else None, {
            "event": "start", "run": run, "step": r.step, "minutes": round(r.minutes_before, 2),
            "from": "resume" if state is not None else (
                f"init {start_from.source_hash}" if start_from is not None else "scratch"),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "device": device.type, "threads": torch.get_num_threads(),
            "bf16": r.bf16, "data": data_desc})
    sums: dict[str, float] = {}  # training losses summed since the last log line
    n_sums, t_line, step_line = 0, start_time, r.step

    def minutes() -> float:
        return r.minutes_before + (time.monotonic() - start_time) / 60

    def measure_and_save() -> None:
        nonlocal metrics, sums, n_sums, t_line, step_line
        metrics = {"step": r.step, **validate(r.codec, val_clips, device)}
        r.history.append({"run": run, "minutes": round(minutes(), 2), **metrics})
        if not dist_info.main:
            return
        total_min = round(minutes(), 2)
        save_codec(r.codec, out, extra={"steps": r.step, "minutes": total_min,
                                        "data": data_desc, **metrics,
                                        **({"init": r.started_from} if r.started_from else {}),
                                        **({"tokens_of": r.tokens_of} if r.tokens_of else {})})
        save_state(state_file, r.state(total_min))
        now = time.monotonic()
        line = {"run": run, "step": r.step, "minutes": total_min,
                "lr": float(f"{r.opt_g.param_groups[0]['lr']:.4g}"),
                "steps_per_s": round((r.step - step_line) / max(1e-9, now - t_line), 3),
                "train": {k: round(v / max(1, n_sums), 5) for k, v in sums.items()}, **metrics}
        with open(history_file, "a") as f:
            f.write(json.dumps(line) + "\n")
        sums, n_sums, t_line, step_line = {}, 0, now, r.step

    with TrainProgress("codec", cfg.steps, start=r.step,
                       enabled=show_progress and dist_info.main) as progress:
        while r.step < cfg.steps:
            out_of_time = cfg.minutes > 0 and time.monotonic() - start_time > cfg.minutes * 60
            if any_true(out_of_time, dist_info):
                break
            losses = r.train_step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            n_sums += 1
            progress.update(r.step, {k.split("/")[-1]: v for k, v in losses.items()})
            if r.step % cfg.val_every == 0 or r.step == cfg.steps:
                measure_and_save()
                progress.note(metrics)
        steps_done = progress.steps_done
    if not r.history or r.history[-1]["step"] != r.step:  # stopped by the clock
        measure_and_save()
    metrics["elapsed_s"] = round(time.monotonic() - start_time, 1)
    metrics["steps_per_s"] = round(steps_done / max(1e-9, metrics["elapsed_s"]), 3)
    if math.isnan(metrics.get("mel_distance", 0.0)):
        raise AimusicError(f"validation produced NaN; see {out}")
    return metrics


def _read_log(model: str | Path | None) -> list[dict[str, Any]]:
    """The lines of the history kept beside a codec file (none when there is none)."""
    if model is None or not log_path(Path(model)).exists():
        return []
    lines = log_path(Path(model)).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _start_log(history_file: Path, init: str | Path | None, line: dict[str, Any]) -> None:
    """Open the run's history: a fresh run (not ``--resume``) replaces what an earlier run
    wrote to the same file, and one started with ``--init`` first copies the history kept
    beside the codec it starts from, so the log holds every run of the schedule."""
    with atomic_path(history_file) as tmp:
        with open(tmp, "w") as f:
            if line["from"] == "resume" and history_file.exists():
                f.write(history_file.read_text())
            elif init is not None and log_path(Path(init)).exists():
                f.write(log_path(Path(init)).read_text())
            f.write(json.dumps(line) + "\n")
