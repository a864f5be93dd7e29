"""The codec: encoder -> residual VQ -> decoder, its config, presets, save and load."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from aimusic.artifacts import load_artifact, save_artifact
from aimusic.codec.modules import (
    Decoder,
    Encoder,
    PhaseTrack,
    SpectralDecoder,
    SpectralEncoder,
)
from aimusic.codec.quantizer import ResidualVQ
from aimusic.config import config_from_dict, config_to_dict
from aimusic.errors import AimusicError, ArtifactError

FORMAT_KIND = "codec"
FORMAT_VERSION = 1


@dataclass
class CodecConfig:
    """Architecture of a codec; saved in the model file and used to rebuild it."""

    sample_rate: int = 24000
    channels: int = 32  # width of the first conv; doubles at each downsampling
    patch: int = 1  # samples folded into channels before the first conv
    ratios: tuple[int, ...] = (2, 4, 5, 8)  # patch * product is the hop: 320 -> 75 frames/s
    dilations: tuple[int, ...] = (1, 3, 9)  # residual units per block
    dim: int = 128  # latent dimension
    levels: int = 8  # residual VQ levels
    codebook_size: int = 1024
    codebook_dim: int = 8  # each level looks its codes up in this projection of the latent
    ema_decay: float = 0.99
    causal: bool = False
    head: str = "conv"  # decoder: "conv" (transposed convs, SEANet) or "istft" (Vocos-style)
    head_channels: int = 512  # width of the istft decoder
    head_dilations: tuple[int, ...] = (1, 3, 9, 1, 3, 9)  # its residual units
    head_bin_phase: bool = False  # istft: phase predicted relative to each bin's own advance
    head_if: bool = False  # istft: each bin's frequency predicted, its phase accumulated
    encoder: str = "conv"  # "conv" (strided convs on the waveform, SEANet) or "stft" (convs on
    # its STFT frames, as wide as the istft head and with its residual units)

    @property
    def hop(self) -> int:
        return self.patch * math.prod(self.ratios)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def bits_per_level(self) -> float:
        return math.log2(self.codebook_size)

    def bandwidths(self) -> list[float]:
        """kbps of all the levels, half and a quarter of them (where whole numbers): 1.5 / 3
        / 6 at the default's 8 levels at 75 Hz, and at 12 levels at 50 Hz."""
        counts = [self.levels // d for d in (4, 2, 1) if self.levels % d == 0]
        return [round(n * self.bits_per_level * self.frame_rate / 1000, 3) for n in counts]

    def levels_for(self, kbps: float | None) -> int:
        """Number of levels that give ``kbps`` (all levels when None)."""
        if kbps is None:
            return self.levels
        per_level = self.bits_per_level * self.frame_rate / 1000
        n = kbps / per_level
        if abs(n - round(n)) > 1e-6 or not 1 <= round(n) <= self.levels:
            valid = ", ".join(f"{k * per_level:g}" for k in range(1, self.levels + 1))
            raise AimusicError(f"bandwidth {kbps:g} kbps is not available; choose one of {valid}")
        return int(round(n))


def preset_tiny() -> CodecConfig:
    """Tests: seconds on one core. 24 kHz, hop 320, 8 levels of 64 codes."""
    return CodecConfig(patch=8, channels=8, ratios=(4, 5, 2), dilations=(1,), dim=32,
                       codebook_size=64)


def preset_small() -> CodecConfig:
    """The conv codec (the CPU default until 2026-12-07, the bundled music codec's until
    then): 8-sample patches keep every conv at 3 kHz or below (fast on CPUs).

    Plain lookups in the 128-d latent (``codebook_dim=dim``): each level then shrinks what
    the levels before it left, so more levels decode closer to the encoder's latent. With
    8-d factorized lookups a 14-minute one-thread CPU run (1,490 steps) decoded 4 levels
    worse than 2 (mel distance 0.507, 0.529, 0.505 at 2, 4, 8 levels on recorded
    validation clips); plain lookups gave 0.522, 0.520, 0.520 and higher code usage (min
    0.82 against 0.74)."""
    return CodecConfig(patch=8, channels=64, ratios=(4, 5, 2), dilations=(1, 3), dim=128,
                       codebook_dim=128)


def preset_speech() -> CodecConfig:
    """The spectral encoder (``encoder="stft"``) and the inverse-STFT decoder
    (``head="istft"``), ``small``'s quantizer: every layer at the frame rate.

    The conv decoder, trained an hour on a CPU, smears speech's formants and harmonics into
    noise and leaves tones at 3 and 6 kHz (its 8-sample output patches); speech judged by
    a recognizer or a speaker encoder needs exactly those formants. The conv encoder (the
    bundled speech codec's: ``encoder: conv``) kept about half of the 1-4 kHz envelope the
    words are in; trained from scratch for the same CPU time, the stft encoder's round trip
    leaves the recognizer 1.5 times the recordings' word error where the conv encoder's
    left 4 times (research/JOURNAL.md, "A spectral encoder for speech")."""
    return CodecConfig(patch=8, channels=64, ratios=(4, 5, 2), dilations=(1, 3), dim=128,
                       codebook_dim=128, head="istft", encoder="stft")


def preset_music() -> CodecConfig:
    """The CPU default for music (``train-codec`` with no ``--preset``): the spectral
    encoder (``encoder="stft"``), ``small``'s quantizer and the inverse-STFT decoder
    (``head="istft"``), every layer at the frame rate: the ``speech`` preset's architecture.

    Chosen by measurement (BENCHMARKS.md, "A music codec that keeps the notes"): trained
    30 minutes on one thread each, same data and seed, it kept 0.72 / 0.69 of a true
    continuation's coherence on the recorded / rendered test pieces where ``small`` kept
    0.49 / 0.46, and beat bin phase, a 50 Hz frame rate, a late adversarial term and a
    head that accumulates each bin's predicted frequency (``head_if``, which renders a
    held chord's partials exactly but learns real music more slowly)."""
    return CodecConfig(patch=8, channels=64, ratios=(4, 5, 2), dilations=(1, 3), dim=128,
                       codebook_dim=128, head="istft", encoder="stft")


def preset_base() -> CodecConfig:
    """GPU-sized, comparable to EnCodec 24 kHz without its LSTM."""
    return CodecConfig(channels=32, dilations=(1, 3, 9), dim=128)


PRESETS = {"tiny": preset_tiny, "small": preset_small, "music": preset_music,
           "speech": preset_speech, "base": preset_base}


class Codec(nn.Module):
    """Waveform [B, 1, T] <-> codes [B, K, F] with F = ceil(T / hop)."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder: nn.Module
        if cfg.encoder == "stft":
            if cfg.causal:
                raise AimusicError("the stft encoder is not causal; use encoder: conv")
            self.encoder = SpectralEncoder(cfg.dim, cfg.head_channels, cfg.hop, cfg.head_dilations)
        elif cfg.encoder == "conv":
            self.encoder = Encoder(cfg.channels, cfg.ratios, cfg.dim, cfg.dilations,
                                   cfg.causal, cfg.patch)
        else:
            raise AimusicError(f"unknown codec encoder {cfg.encoder!r}: choose conv or stft")
        self.quantizer = ResidualVQ(cfg.dim, cfg.levels, cfg.codebook_size, cfg.codebook_dim,
                                    cfg.ema_decay)
        self.decoder: nn.Module
        if cfg.head == "istft":
            if cfg.causal:
                raise AimusicError("the istft decoder head is not causal; use head: conv")
            if cfg.head_bin_phase and cfg.head_if:
                raise AimusicError("head_bin_phase and head_if are two ways to make the phase; "
                                   "choose one")
            self.decoder = SpectralDecoder(cfg.dim, cfg.head_channels, cfg.hop, cfg.head_dilations,
                                           cfg.head_bin_phase, cfg.head_if)
        elif cfg.head == "conv":
            self.decoder = Decoder(cfg.channels, cfg.ratios, cfg.dim, cfg.dilations,
                                   cfg.causal, cfg.patch)
        else:
            raise AimusicError(f"unknown codec decoder head {cfg.head!r}: choose conv or istft")

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Right-pad [..., T] to a whole number of frames."""
        extra = -x.shape[-1] % self.cfg.hop
        return nn.functional.pad(x, (0, extra)) if extra else x

    def forward(
        self, x: torch.Tensor, n_levels: torch.Tensor | int | None = None, spectrum: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """Training pass: x [B, 1, T] -> (reconstruction [B, 1, T], codes, commitment loss),
        and with ``spectrum`` (istft head only) the head's log magnitude and phase."""
        T = x.shape[-1]
        z = self.encoder(self.pad(x))
        with torch.autocast(x.device.type, enabled=False):  # nearest codes in float32
            q, codes, commit = self.quantizer(z.float(), n_levels)
        if not spectrum:
            return self.decoder(q)[..., :T], codes, commit
        if not isinstance(self.decoder, SpectralDecoder):
            raise AimusicError("only the istft decoder head has a spectrum")
        log_mag, phase = self.decoder.spectrum(q)
        return self.decoder.synthesize(log_mag, phase)[..., :T], codes, commit, log_mag, phase

    @torch.no_grad()
    def encode(self, x: torch.Tensor, n_levels: int | None = None) -> torch.Tensor:
        """x [B, 1, T] -> codes [B, n_levels, ceil(T / hop)]."""
        z = self.encoder(self.pad(x))
        return self.quantizer.encode(z, n_levels or self.cfg.levels)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, first_frame: int = 0,
               track: PhaseTrack | None = None) -> torch.Tensor:
        """codes [B, K, F] -> audio [B, 1, F * hop]; ``first_frame`` is the index of the
        first frame in the whole signal when a long one is decoded in chunks, and ``track``
        carries an IF head's phase from one chunk to the next (``codec.stream``)."""
        return self.decoder(self.quantizer.decode(codes), first_frame, track)

    @torch.no_grad()
    def init_from(self, other: Codec, per_code: float) -> None:
        """Start from ``other``'s weights (same config; its layers folded or weight-normed):
        a folded weight W enters a weight-normed layer as direction W and gain |W| (the
        same W), and the codebooks get EMA statistics (``seed_statistics``)."""
        from torch.nn.utils import parametrize

        if config_to_dict(other.cfg) != config_to_dict(self.cfg):
            raise AimusicError("--init: the codec's architecture differs from this run's")
        src = dict(other.state_dict())
        folded = set()  # weight-normed layers here whose weight came folded
        for name, m in self.named_modules():
            key = f"{name}.weight"
            if parametrize.is_parametrized(m, "weight") and key in src:
                w = src.pop(key)
                pw = m.parametrizations.weight  # type: ignore[union-attr, index]
                pw.original0.copy_(torch.norm_except_dim(w, 2, 0))
                pw.original1.copy_(w)
                folded.add(name)
        missing, unexpected = self.load_state_dict(src, strict=False)
        missing = [k for k in missing if not k.endswith(TRAINING_ONLY)
                   and k.split(".parametrizations.")[0] not in folded]
        if missing or unexpected:
            raise AimusicError(f"--init: weights do not match (missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]})")
        for level in range(self.cfg.levels):
            self.quantizer.vq(level).seed_statistics(per_code)

    def fold_weight_norm(self) -> Codec:
        """Bake weight norm into plain weights: same outputs, faster inference."""
        from torch.nn.utils import parametrize

        for m in self.modules():
            if parametrize.is_parametrized(m):
                for name in list(m.parametrizations.keys()):  # type: ignore[union-attr, operator]
                    parametrize.remove_parametrizations(m, name)
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


TRAINING_ONLY = ("cluster_size", "embed_sum", "unused")  # EMA statistics: in the training state only


def save_codec(codec: Codec, path: str | os.PathLike, extra: dict | None = None,
               dtype: torch.dtype | None = None) -> Path:
    """The codec's weights (without the codebooks' EMA statistics) and config. With
    ``dtype`` (float16: half the bytes, how codecs are kept in the repository) its
    floating weights are stored in that type; they load back into float32."""
    weights = {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v
               for k, v in codec.state_dict().items() if not k.endswith(TRAINING_ONLY)}
    stored = {} if dtype is None else {"stored_as": str(dtype).removeprefix("torch.")}
    return save_artifact(
        path,
        weights,
        FORMAT_KIND,
        FORMAT_VERSION,
        config_to_dict(codec.cfg),
        extra={"parameters": codec.num_parameters(), **(extra or {}), **stored},
    )


def load_codec(path: str | os.PathLike, device: torch.device | str = "cpu") -> Codec:
    """Rebuild a codec from its file; clear errors for a missing or foreign file."""
    p = Path(path)
    if not p.exists():
        raise ArtifactError(p, "codec not found; train one with `aimusic train-codec AUDIO_DIR`")
    art = load_artifact(p, FORMAT_KIND, FORMAT_VERSION)
    cfg = config_from_dict(CodecConfig, art.config, str(p))
    codec = Codec(cfg)
    if not any(".parametrizations." in k for k in art.tensors):  # saved after folding
        codec.fold_weight_norm()
    missing, unexpected = codec.load_state_dict(art.tensors, strict=False)
    missing = [k for k in missing if not k.endswith(TRAINING_ONLY)]
    if missing or unexpected:
        raise ArtifactError(p, f"weights do not match the config (missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]})")
    codec.source_path = p  # type: ignore[assignment]
    codec.source_hash = art.hash  # type: ignore[assignment]
    # a decoder trained on alone (train-codec --decoder-only) keeps its codec's tokens
    codec.tokens_hash = art.meta["extra"].get("tokens_of") or art.hash  # type: ignore[assignment]
    return codec.fold_weight_norm().to(device).eval()
