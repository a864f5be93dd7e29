"""Training windows of a token directory for each LM stage: which stretch of which item
(``Window``), laid out as the stage's sequence by ``layouts`` (``StageData``), drawn at
random for training (``WindowSampler``, whose numpy state is saved so ``--resume``
continues exactly; ``StageBatches``, the loop's batch source) or tiled for measuring
(``tile_windows``). Windows shorter than the context, at the end of short items, are
padded and masked."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from aimusic.distributed import DistInfo
from aimusic.errors import AimusicError, ConfigError
from aimusic.lm import layouts as L
from aimusic.lm.model import LMConfig
from aimusic.tokens.reader import TokenDataset

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


class StageBatches:
    """A stage's training batches for the loop: the global batch of random windows
    (the same on every rank), of which this rank lays out its share."""

    def __init__(self, ds: TokenDataset, sd: StageData, sampler: WindowSampler,
                 batch_size: int, dist_info: DistInfo) -> None:
        self.ds, self.sd, self.sampler, self.batch_size = ds, sd, sampler, batch_size
        self.rank, self.world = dist_info.rank, dist_info.world

    def draw(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        windows = [self.sampler.draw() for _ in range(self.batch_size)]
        ids, mask = self.sd.batch(self.ds, windows[self.rank::self.world])
        return ids, mask, sum(self.sd.tokens(w) for _, _, w in windows)

    def state(self) -> dict:
        return self.sampler.state()

    def set_state(self, state: dict) -> None:
        self.sampler.set_state(state)


def tile_windows(units: np.ndarray, items: list[int], n: int, limit: int = 0) -> list[Window]:
    """Consecutive windows covering the items (the last of each may be shorter); with
    ``limit``, that many spread evenly over the list."""
    wins = [(i, s, min(n, int(units[i]) - s)) for i in items for s in range(0, int(units[i]), n)]
    if limit and len(wins) > limit:
        idx = np.unique(np.linspace(0, len(wins) - 1, limit).round().astype(int))
        wins = [wins[k] for k in idx]
    return wins


