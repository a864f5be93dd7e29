"""Token language models: one decoder-only transformer for every AudioLM stage.

The architecture is the now-standard one (LLaMA's): pre-norm RMSNorm, rotary positions on
queries and keys, ``scaled_dot_product_attention``, a SwiGLU MLP, a final RMSNorm and an
output head tied to the input embedding. Token ids are global (``layouts.Vocab``) and a
stage's table is the id prefix it uses.

Streams. The delay stage puts ``levels`` tokens in each step (one per codec level). The
model reads tokens [B, T, S]: a step's embedding is the sum of its S tokens' embeddings
(they come from the one shared table; the ids already say which level each is). The
head of stream s is the tied table's rows of level s, so the logits are
[B, T, S, codebook_size], in ids local to the level (``stream_offsets`` maps them back).
The single-stream case is the plain LM: tokens [B, T] -> logits [B, T, vocab].

Decoding. ``forward(tokens, cache)`` with a ``KVCache`` appends the new positions' keys
and values and attends the new queries to everything cached, so a prompt can be prefilled
and then extended one step at a time; ``gen.decode.Decoder.generate`` samples that way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from aimusic.artifacts import load_artifact, save_artifact
from aimusic.config import config_from_dict, config_to_dict
from aimusic.errors import ArtifactError, ConfigError
from aimusic.lm.layouts import STAGES, Range, Vocab

FORMAT_KIND = "lm"
FORMAT_VERSION = 1


@dataclass
class LMConfig:
    """One stage's LM: its token layout and transformer; saved in the model file."""

    # semantic | coarse | fine | delay (MusicGen's one acoustic stage) | acoustic (coarse
    # with no semantic tokens: AudioLM's acoustic-only ablation)
    stage: str = "semantic"
    # the token layout, from the token directory's manifest
    clusters: int = 512  # semantic vocabulary
    levels: int = 8  # codec levels
    codebook_size: int = 1024
    coarse_levels: int = 3  # levels the coarse (and acoustic) stage predicts; fine the rest
    phonemes: int = 0  # the reading stage's phoneme inventory (aimusic.text.phonemes)
    # the reading stage: semantic tokens of the voice read before the phonemes (0: none,
    # the first readers' layout; voice.layout.reading_sequence)
    voice_tokens: int = 0
    # the transformer
    dim: int = 256
    layers: int = 6
    heads: int = 4
    max_len: int = 1024  # context in tokens (in steps of ``levels`` tokens for delay)
    dropout: float = 0.0
    rope_base: float = 10000.0

    @property
    def layout(self) -> Vocab:
        return Vocab(self.clusters, self.levels, self.codebook_size, self.phonemes)

    @property
    def vocab(self) -> int:
        """Embedding rows: the ids the stage uses, specials included."""
        return self.layout.stage_size(self.stage, self.coarse_levels)

    @property
    def streams(self) -> int:
        return self.levels if self.stage == "delay" else 1

    @property
    def hidden(self) -> int:
        """SwiGLU width: 8/3 dim (as many weights as a 4x GELU MLP), a multiple of 32."""
        return 32 * math.ceil(8 * self.dim / 3 / 32)

    def check(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"unknown LM stage {self.stage!r}; choose one of: {', '.join(STAGES)}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ConfigError(f"dim {self.dim} must split into {self.heads} heads of an even width")
        if self.stage == "reading" and self.phonemes < 1:
            raise ConfigError("the reading stage needs its phoneme inventory (phonemes >= 1)")
        if self.voice_tokens and (self.stage != "reading" or self.voice_tokens < 0):
            raise ConfigError(f"voice_tokens {self.voice_tokens}: only the reading stage "
                              "reads a voice prefix (0 or more of its semantic tokens)")
        if self.stage in ("coarse", "fine", "acoustic") and not 1 <= self.coarse_levels < self.levels:
            raise ConfigError(f"coarse_levels {self.coarse_levels} must be 1..{self.levels - 1}")


PRESETS = {
    # tests: seconds on one core; layout of the tiny codec (8 x 64) and semantic (16) models
    "tiny": lambda: LMConfig(clusters=16, codebook_size=64, dim=32, layers=2, heads=2,
                             max_len=256),
    # the CPU default, sized for "30 minutes of 2 cores per stage": dim 256 x 6 layers x
    # 1024 tokens trained at ~400 tokens/s on one busy core, this shape at ~2,800
    # (semantic stage: 20 s of context; coarse: 2 s; fine: 0.8 s)
    "small": lambda: LMConfig(dim=192, layers=4, heads=4, max_len=512, dropout=0.0),
    # GPUs: AudioLM's smaller settings are 12 layers of 1024; this is GPT-2 small's shape
    "base": lambda: LMConfig(dim=768, layers=12, heads=12, max_len=2048, dropout=0.1),
}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # statistics in float32: bf16 squares lose too much at 8 bits of mantissa
        norm = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return (x.float() * norm).type_as(x) * self.weight


def rope_tables(head_dim: int, length: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [length, head_dim / 2] of the rotary angles at positions 0..length-1."""
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(length, dtype=torch.float64), inv)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, T, Dh] by position: pairs (x_i, x_{i + Dh/2}) (GPT-NeoX's layout)."""
    x1, x2 = x.chunk(2, -1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), -1)


class KVCache:
    """Keys and values of every layer for positions [0, length), preallocated to max_len.

    ``forward(tokens, cache)`` writes the new positions at ``length`` and advances it.
    Buffers are allocated at the first write with the keys' batch, dtype and device (so
    autocast's bf16 is kept). ``trim(n)`` rolls back to the first n positions.
    """

    def __init__(self, layers: int, max_len: int) -> None:
        self.max_len = max_len
        self.length = 0
        self.k: list[torch.Tensor | None] = [None] * layers
        self.v: list[torch.Tensor | None] = [None] * layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, H, T, Dh] at [length, length + T); all keys and values so far."""
        B, H, T, Dh = k.shape
        kb, vb = self.k[layer], self.v[layer]
        if kb is None or vb is None:
            kb = k.new_zeros(B, H, self.max_len, Dh)
            vb = v.new_zeros(B, H, self.max_len, Dh)
            self.k[layer], self.v[layer] = kb, vb
        elif kb.shape[0] != B:
            raise ValueError(f"cache holds a batch of {kb.shape[0]}, got {B}")
        end = self.length + T
        kb[:, :, self.length:end] = k
        vb[:, :, self.length:end] = v
        return kb[:, :, :end], vb[:, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def trim(self, n: int) -> None:
        self.length = min(self.length, n)

    def reset(self) -> None:
        self.length = 0


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: KVCache | None, layer: int) -> torch.Tensor:
        B, T, D = x.shape
        # [B, T, 3D] -> 3 x [B, H, T, Dh]
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        start = 0
        if cache is not None:
            start = cache.length
            k, v = cache.update(layer, k, v)
        p = self.dropout if self.training else 0.0
        if start == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        elif T == 1:  # one new query sees every cached key
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:  # several new queries: causal among themselves, all of the cache before
            mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.norm1 = RMSNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads, cfg.dropout)
        self.norm2 = RMSNorm(cfg.dim)
        self.mlp = SwiGLU(cfg.dim, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: KVCache | None, layer: int) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), cos, sin, cache, layer))
        return x + self.drop(self.mlp(self.norm2(x)))


class TokenLM(nn.Module):
    """tokens [B, T] -> logits [B, T, vocab]; delay stage: [B, T, S] -> [B, T, S, codebook_size]."""

    rope_cos: torch.Tensor  # [max_len, head_dim / 2], buffers rebuilt from the config
    rope_sin: torch.Tensor

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        cfg.check()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.dim)
        cos, sin = rope_tables(cfg.dim // cfg.heads, cfg.max_len, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        # first id of each stream's head: level s for the delay stage, 0 for one stream
        if cfg.streams > 1:
            lay = cfg.layout
            self.stream_offsets = [lay.level_offset(s) for s in range(cfg.streams)]
            self.stream_vocab = cfg.codebook_size
        else:
            self.stream_offsets, self.stream_vocab = [0], cfg.vocab
        self.source_path: Path | None = None  # set by load_lm
        self.source_hash: str | None = None
        self.depends: dict[str, str] = {}
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2's: N(0, 0.02), residual output projections scaled down by depth
        residual_std = 0.02 / math.sqrt(2 * self.cfg.layers)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                residual = name.endswith(("attn.out.weight", "mlp.down.weight"))
                nn.init.normal_(p, std=residual_std if residual else 0.02)

    def new_cache(self) -> KVCache:
        return KVCache(self.cfg.layers, self.cfg.max_len)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits of the next token at every position; ``cache`` (if given) is extended."""
        multi = self.cfg.streams > 1
        if tokens.dim() != (3 if multi else 2) or (multi and tokens.shape[-1] != self.cfg.streams):
            want = f"[B, T, {self.cfg.streams}]" if multi else "[B, T]"
            raise ValueError(f"{self.cfg.stage} LM reads tokens {want}, got {list(tokens.shape)}")
        B, T = tokens.shape[:2]
        start = cache.length if cache is not None else 0
        if start + T > self.cfg.max_len:
            raise ValueError(f"{start + T} positions exceed the context of {self.cfg.max_len}")
        x = self.embed(tokens)
        if multi:
            x = x.sum(2)  # [B, T, S, D] -> [B, T, D]
        x = self.drop(x)
        cos, sin = self.rope_cos[start:start + T], self.rope_sin[start:start + T]
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, i)
        if cache is not None:
            cache.advance(T)
        h = self.norm(x)
        if not multi:
            return F.linear(h, self.embed.weight)  # [B, T, vocab]
        S, C, lo = self.cfg.streams, self.stream_vocab, self.stream_offsets[0]
        return F.linear(h, self.embed.weight[lo:lo + S * C]).view(B, T, S, C)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per position (forward + backward), PaLM's estimate for MFU:
        6 N for the weights (the tied table counts once, as the head's matmul) plus
        12 layers dim T for attention scores and values over a context of T."""
        T = seq_len or self.cfg.max_len
        return 6 * self.num_parameters() + 12 * self.cfg.layers * self.cfg.dim * T


def next_token_loss(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                    stream_offsets: Sequence[int] | None = None) -> torch.Tensor:
    """Mean cross entropy of the tokens ``mask`` marks, each predicted from the position
    before it. logits [B, T, V] with tokens, mask [B, T]; or, for streams, logits
    [B, T, S, C] with tokens, mask [B, T, S] and the model's ``stream_offsets``."""
    pred, target, keep = logits[:, :-1], tokens[:, 1:], mask[:, 1:]
    if pred.dim() == 4:
        if stream_offsets is None:
            raise ValueError("stream logits need the model's stream_offsets")
        target = target - torch.as_tensor(stream_offsets, device=target.device)
    target = torch.where(keep, target, torch.full_like(target, -100))
    return F.cross_entropy(pred.reshape(-1, pred.shape[-1]).float(), target.reshape(-1),
                           ignore_index=-100)


# -- sampling --------------------------------------------------------------------------


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ids [...] from logits [..., V]. Temperature 0 is greedy (argmax); ``top_k``
    keeps the k most likely; ``top_p`` keeps the smallest set of most likely ids whose
    probability reaches p (after temperature and top_k)."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    V = logits.shape[-1]
    if top_k is not None and 0 < top_k < V:
        values, idx = logits.topk(top_k, -1)
        logits = torch.full_like(logits, -math.inf).scatter(-1, idx, values)
    if top_p is not None and top_p < 1:
        ordered, idx = logits.sort(-1, descending=True)
        probs = ordered.softmax(-1)
        above = probs.cumsum(-1) - probs  # mass of the ids ranked before each one
        ordered = ordered.masked_fill(above >= top_p, -math.inf)
        logits = torch.full_like(logits, -math.inf).scatter(-1, idx, ordered)
    probs = logits.softmax(-1).reshape(-1, V)
    return torch.multinomial(probs, 1, generator=generator).view(logits.shape[:-1])



@torch.no_grad()
def check_window(prompt_len: int, n: int, max_len: int) -> None:
    """A generation call must start from at least one position and fit the context."""
    if prompt_len < 1:
        raise ValueError("generate needs a prompt of at least one position (BOS)")
    if prompt_len + n > max_len:
        raise ValueError(f"{prompt_len} + {n} positions exceed the context of "
                         f"{max_len}; generate in windows")


def pick_streams(model: TokenLM, logits: torch.Tensor, ranges: Sequence[Range] | None, i: int,
                  temperature: float, top_k: int | None, top_p: float | None,
                  generator: torch.Generator | None) -> torch.Tensor:
    """Streams: logits [B, S, C] (level-local) -> global ids [B, S]."""
    S, C = logits.shape[1:]
    offsets = torch.as_tensor(model.stream_offsets, device=logits.device)
    forced = torch.full((S,), -1, dtype=torch.long, device=logits.device)
    if ranges is not None:
        keep = torch.zeros(S, C, dtype=torch.bool, device=logits.device)
        for s, (lo, hi) in enumerate(ranges):
            if hi - lo == 1:
                forced[s] = lo
                keep[s] = True  # sampled and discarded: keeps the draws aligned
                continue
            a, b = lo - model.stream_offsets[s], hi - model.stream_offsets[s]
            if a < 0 or b > C:
                raise ValueError(f"position {i}: stream {s} cannot produce ids [{lo}, {hi}); its "
                                 f"head covers [{model.stream_offsets[s]}, {model.stream_offsets[s] + C})")
            keep[s, a:b] = True
        logits = logits.masked_fill(~keep, -math.inf)
    tok = sample(logits, temperature, top_k, top_p, generator) + offsets
    return torch.where(forced >= 0, forced, tok)


# -- files -----------------------------------------------------------------------------


def lm_path(models_dir: str | os.PathLike, stage: str) -> Path:
    """Where a models folder keeps a stage's LM: ``lm-STAGE.safetensors``."""
    return Path(models_dir) / f"lm-{stage}.safetensors"


def reads(stage: str) -> tuple[str, ...]:
    """Whose tokens a stage's LM reads, so whose hashes must match where it is used: the
    semantic LM reads semantic tokens alone (any codec may render what it makes), the
    acoustic-only LM codec tokens alone (any semantic model may stand beside it), the
    others both."""
    return {"semantic": ("semantic",), "acoustic": ("codec",)}.get(stage, ("codec", "semantic"))


def save_lm(model: TokenLM, path: str | os.PathLike, depends: dict[str, str] | None = None,
            extra: dict | None = None) -> Path:
    """Write an ``aimusic.lm/1`` file; ``depends`` names the codec / semantic / token hashes."""
    return save_artifact(
        path,
        dict(model.state_dict()),
        FORMAT_KIND,
        FORMAT_VERSION,
        config_to_dict(model.cfg),
        depends=depends,
        extra={"parameters": model.num_parameters(), "stage": model.cfg.stage, **(extra or {})},
    )


def load_lm(path: str | os.PathLike, stage: str | None = None,
            device: torch.device | str = "cpu") -> TokenLM:
    """Rebuild an LM from its file; ``stage`` (if given) must be the file's."""
    p = Path(path)
    if not p.exists():
        what = f"{stage} LM" if stage else "language model"
        raise ArtifactError(p, f"{what} not found; train one with `aimusic train-lm`")
    art = load_artifact(p, FORMAT_KIND, FORMAT_VERSION)
    cfg = config_from_dict(LMConfig, art.config, str(p))
    if stage is not None and cfg.stage != stage:
        raise ArtifactError(p, f"is the {cfg.stage} LM, expected the {stage} LM")
    model = TokenLM(cfg)
    missing, unexpected = model.load_state_dict(art.tensors, strict=False)
    if missing or unexpected:
        raise ArtifactError(p, f"weights do not match the config (missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]})")
    model.source_path, model.source_hash, model.depends = p, art.hash, dict(art.depends)
    return model.to(device).eval()
