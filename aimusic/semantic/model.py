"""The semantic tokenizer: frame features -> nearest of ``clusters`` centroids.

Iteration 1 (HuBERT's first iteration): the features are the hand-made ones of
``features.handmade``, standardized with the training set's mean and deviation (for
speech, the ``speech`` preset: no chroma, and the MFCCs normalized over each input first,
:func:`cmvn`).
Iteration 2: a small transformer reads log-mel frames; it was trained to predict the
iteration-1 clusters of masked frames from their context (``train.py``), and the features
are one of its middle layers. Both save as one ``aimusic.semantic/1`` file: config,
standardization, centroids and, for iteration 2, the encoder's weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aimusic.artifacts import load_artifact, save_artifact
from aimusic.cluster import nearest
from aimusic.config import config_from_dict, config_to_dict
from aimusic.errors import ArtifactError, ConfigError
from aimusic.semantic.features import handmade, log_mel, onset_flags

FORMAT_KIND, FORMAT_VERSION = "semantic", 1


@dataclass
class SemanticConfig:
    sample_rate: int = 24000
    hop: int = 960  # 25 tokens/s: one per 3 codec frames
    clusters: int = 512
    iteration: int = 1
    # iteration 1 features
    n_mfcc: int = 13
    chroma_weight: float = 2.0  # chroma block scaled up after standardization (0: none)
    mfcc_fft: int = 2048  # the MFCCs' analysis window, samples
    cmvn: bool = False  # MFCCs normalized over each input (mean and deviation per coefficient)
    deltas: int = 2  # orders of MFCC differences kept (0, 1 or 2)
    sub_frames: int = 1  # MFCC frames per token, at hop / sub_frames, side by side (no chroma)
    # iteration 2 encoder
    n_mels: int = 80
    stack: int = 4
    dim: int = 256
    layers: int = 6
    heads: int = 4
    layer: int = 4  # whose output is clustered (1-based; a middle layer, as in HuBERT)
    window: int = 250  # tokens per attention window at inference (10 s)
    context: int = 50  # tokens of context on each side of a window
    # tokens say when notes are struck: token = cluster + clusters * (an onset falls in it)
    onsets: bool = False

    @property
    def token_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def vocab(self) -> int:
        """Distinct tokens: the clusters, twice over with ``onsets`` (struck or not)."""
        return self.clusters * (2 if self.onsets else 1)


PRESETS: dict[str, Callable[[], SemanticConfig]] = {
    "tiny": lambda: SemanticConfig(clusters=16, dim=32, layers=2, heads=2, layer=1, window=50,
                                   context=10),
    "small": lambda: SemanticConfig(dim=192, layers=4, heads=4, layer=3),
    "base": lambda: SemanticConfig(clusters=1024, dim=512, layers=8, heads=8, layer=6),
    # Speech: MFCCs alone (chroma is pitch: intonation and voice, not phonemes) from a 43 ms
    # window, normalized per input, two frames a token; its iteration-1 tokens carry more
    # of what is said and less of who says it (research/token_phone_probe.py,
    # BENCHMARKS.md).
    "speech": lambda: replace(PRESETS["small"](), chroma_weight=0.0, mfcc_fft=1024, cmvn=True,
                              sub_frames=2),
}


class SemanticEncoder(nn.Module):
    """Stacked log-mel frames -> transformer layers (pre-norm), with a convolutional
    relative position embedding (as wav2vec 2.0) and a learned mask embedding."""

    def __init__(self, cfg: SemanticConfig) -> None:
        super().__init__()
        d_in = cfg.stack * cfg.n_mels
        self.norm_in = nn.LayerNorm(d_in)
        self.proj = nn.Linear(d_in, cfg.dim)
        self.pos = nn.Conv1d(cfg.dim, cfg.dim, 15, padding=7, groups=cfg.heads)
        self.mask_embed = nn.Parameter(torch.randn(cfg.dim) * 0.1)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, dropout=0.1,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(cfg.layers))
        self.norm_out = nn.LayerNorm(cfg.dim)

    def forward(self, mel: torch.Tensor, mask: torch.Tensor | None = None,
                upto: int | None = None) -> torch.Tensor:
        """mel [B, n, stack*n_mels] -> [B, n, dim], after ``upto`` layers (default all)."""
        h = self.proj(self.norm_in(mel))
        if mask is not None:
            h = torch.where(mask[..., None], self.mask_embed.to(h.dtype), h)
        h = h + nn.functional.gelu(self.pos(h.transpose(1, 2))).transpose(1, 2)
        for block in self.blocks[: upto if upto is not None else len(self.blocks)]:
            h = block(h)
        return h if upto is not None else self.norm_out(h)


def cmvn(f: torch.Tensor, n_mfcc: int) -> torch.Tensor:
    """Handmade features [B, n, D] with the MFCCs (the first ``n_mfcc`` columns) brought
    to zero mean and unit deviation over each input's frames: the speaker's and the
    channel's average spectral shape removed, what changes from sound to sound kept
    (speech recognition's cepstral mean and variance normalization)."""
    c = f[..., :n_mfcc] - f[..., :n_mfcc].mean(1, keepdim=True)
    if f.shape[1] > 1:  # one frame has no deviation
        c = c / c.std(1, keepdim=True).clamp_min(1e-3)
    return torch.cat([c, f[..., n_mfcc:]], dim=-1)


class SemanticModel(nn.Module):
    feat_mean: torch.Tensor
    feat_std: torch.Tensor
    centroids: torch.Tensor

    def __init__(self, cfg: SemanticConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if not 0 <= cfg.deltas <= 2:
            raise ConfigError(f"deltas must be 0, 1 or 2, not {cfg.deltas}")
        if cfg.sub_frames < 1 or cfg.hop % cfg.sub_frames:
            raise ConfigError(f"sub_frames must divide hop ({cfg.hop}), not {cfg.sub_frames}")
        if cfg.sub_frames > 1 and cfg.chroma_weight:
            raise ConfigError("sub_frames > 1 needs chroma_weight: 0 (chroma is per token)")
        d = cfg.sub_frames * (1 + cfg.deltas) * cfg.n_mfcc + 12 if cfg.iteration == 1 else cfg.dim
        self.register_buffer("feat_mean", torch.zeros(d))
        self.register_buffer("feat_std", torch.ones(d))
        self.register_buffer("centroids", torch.zeros(cfg.clusters, d))
        self.encoder = SemanticEncoder(cfg) if cfg.iteration == 2 else None
        self.source_hash = ""
        self.source_path: Path | None = None

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """Audio [B, T] at cfg.sample_rate -> unstandardized features [B, T // hop, D]."""
        cfg = self.cfg
        if self.encoder is None:
            s = cfg.sub_frames
            f = handmade(x, cfg.sample_rate, cfg.hop // s, cfg.n_mfcc, mfcc_fft=cfg.mfcc_fft,
                         orders=cfg.deltas, chroma=cfg.chroma_weight != 0)
            f = cmvn(f, cfg.n_mfcc) if cfg.cmvn else f
            if s == 1:
                return f
            # s frames a token, side by side; then the (zero) chroma block, per token
            n = x.shape[-1] // cfg.hop
            f = f[:, :n * s, :-12].reshape(f.shape[0], n, -1)
            return torch.cat([f, f.new_zeros(f.shape[0], n, 12)], dim=-1)
        mel = log_mel(x, cfg.sample_rate, cfg.hop, cfg.stack, cfg.n_mels)
        return self._windowed(mel)

    def _windowed(self, mel: torch.Tensor) -> torch.Tensor:
        """Layer ``cfg.layer`` over windows with context on both sides, so a long file
        costs linear time and a token sees the same neighbourhood wherever the file starts
        a window (the output is a function of the file alone, not of batching)."""
        cfg, enc = self.cfg, self.encoder
        assert enc is not None
        n = mel.shape[1]
        if n <= cfg.window + 2 * cfg.context:
            return enc(mel, upto=cfg.layer)
        outs = []
        for s in range(0, n, cfg.window):
            a, b = max(0, s - cfg.context), min(n, s + cfg.window + cfg.context)
            h = enc(mel[:, a:b], upto=cfg.layer)
            outs.append(h[:, s - a: s - a + min(cfg.window, n - s)])
        return torch.cat(outs, dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.standardize(self.raw_features(x))

    def standardize(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw features [..., D] -> what the centroids live in: standardized, chroma
        weighted. Training fits the centroids through this same function."""
        f = (raw - self.feat_mean) / self.feat_std
        if self.encoder is None:
            f = torch.cat([f[..., :-12], f[..., -12:] * self.cfg.chroma_weight], dim=-1)
        return f

    @torch.no_grad()
    def tokens(self, audio: np.ndarray) -> np.ndarray:
        """Mono float32 audio at cfg.sample_rate -> int64 tokens [len(audio) // hop]: the
        nearest cluster of each frame, plus ``clusters`` where a note starts (``onsets``)."""
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        x = x.to(self.centroids.device)
        cfg = self.cfg
        if x.shape[-1] < cfg.hop:
            return np.zeros(0, dtype=np.int64)
        tok = nearest(self.features(x)[0], self.centroids)
        if cfg.onsets:
            tok = tok + cfg.clusters * onset_flags(x, cfg.sample_rate, cfg.hop)[0, :tok.shape[0]]
        return tok.cpu().numpy().astype(np.int64)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def save_semantic(model: SemanticModel, path: str | os.PathLike, depends: dict[str, str] | None = None,
                  extra: dict | None = None) -> Path:
    return save_artifact(path, model.state_dict(), FORMAT_KIND, FORMAT_VERSION,
                         config_to_dict(model.cfg), depends=depends,
                         extra={"parameters": model.num_parameters(), **(extra or {})})


def load_semantic(path: str | os.PathLike, device: torch.device | str = "cpu") -> SemanticModel:
    p = Path(path)
    if not p.exists():
        raise ArtifactError(p, "semantic model not found; train one with "
                               "`aimusic train-semantic AUDIO_DIR`")
    art = load_artifact(p, FORMAT_KIND, FORMAT_VERSION)
    cfg = config_from_dict(SemanticConfig, art.config, str(p))
    model = SemanticModel(cfg)
    try:
        model.load_state_dict(art.tensors)
    except RuntimeError as e:
        raise ArtifactError(p, f"weights do not match the config: {str(e)[:200]}") from None
    model.source_hash, model.source_path = art.hash, p
    return model.to(device).eval()


def token_entropy_bits(tokens: np.ndarray, clusters: int) -> float:
    """Entropy of the token histogram in bits (log2 clusters at uniform use)."""
    p = np.bincount(tokens, minlength=clusters).astype(np.float64)
    p = p[p > 0] / max(1, tokens.size)
    return float(-(p * np.log2(p)).sum()) if p.size else 0.0

