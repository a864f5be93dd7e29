"""Count-based baselines an LM's cross entropy is read against.

For every stream of a stage's targets (the semantic tokens; or one codec level, frame by
frame), fit on the training split and measured on validation:

- **unigram**: p(b) = (c(b) + 1) / (N + V), add-one smoothed over the stream's V values;
  its cross entropy is the entropy of the token histogram, what an LM that ignores
  context would reach.
- **bigram**: the previous token of the same stream (the previous semantic token; the
  same level's code in the previous frame), Witten-Bell interpolated with the unigram:

  p(b | a) = (c(a, b) + T(a) p(b)) / (c(a) + T(a))

  where c(a) counts a as a context and T(a) the distinct tokens seen after it; a context
  never seen (or the first token of an item) falls back to p(b). No parameter to tune.

Acoustic levels each have their own tables: the LM knows from a token's position which
level comes next, so a global unigram over all levels would be a weaker straw man.
Cross entropies are in nats per token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class StreamCounts:
    """Unigram and bigram counts of one stream of tokens 0..vocab-1 (dense [V, V] bigrams)."""

    vocab: int
    unigram: np.ndarray = field(init=False)  # [V]
    bigram: np.ndarray = field(init=False)  # [V, V]: previous token, token

    def __post_init__(self) -> None:
        self.unigram = np.zeros(self.vocab, dtype=np.int64)
        self.bigram = np.zeros((self.vocab, self.vocab), dtype=np.int64)
        self._tables: tuple[np.ndarray, ...] | None = None

    def add(self, seq: np.ndarray) -> None:
        """Count one item's stream (consecutive tokens)."""
        s = np.asarray(seq, dtype=np.int64).ravel()
        if s.size and (s.min() < 0 or s.max() >= self.vocab):
            raise ValueError(f"tokens out of range 0..{self.vocab - 1}")
        V = self.vocab
        self.unigram += np.bincount(s, minlength=V)
        if s.size > 1:
            self.bigram += np.bincount(s[:-1] * V + s[1:], minlength=V * V).reshape(V, V)
        self._tables = None

    def _prepared(self) -> tuple[np.ndarray, ...]:
        if self._tables is None:
            uni = (self.unigram + 1.0) / (self.unigram.sum() + self.vocab)
            ctx = self.bigram.sum(1).astype(np.float64)  # c(a)
            types = (self.bigram > 0).sum(1).astype(np.float64)  # T(a)
            self._tables = (uni, ctx, types)
        return self._tables

    def unigram_nll(self, seq: np.ndarray) -> np.ndarray:
        """-log p(b) of each token."""
        uni, _, _ = self._prepared()
        return -np.log(uni[np.asarray(seq, dtype=np.int64)])

    def bigram_nll(self, seq: np.ndarray, prev: int = -1) -> np.ndarray:
        """-log p(b | a) of each token of a stretch of one item's stream; ``prev`` is the
        token before the stretch (-1 at the item's start: the unigram then)."""
        uni, ctx, types = self._prepared()
        s = np.asarray(seq, dtype=np.int64).ravel()
        a = np.concatenate([[prev], s[:-1]]) if s.size else s
        p = uni[s].copy()
        seen = a >= 0
        a_s, b_s = a[seen], s[seen]
        denom = ctx[a_s] + types[a_s]
        with np.errstate(invalid="ignore", divide="ignore"):
            wb = (self.bigram[a_s, b_s] + types[a_s] * uni[b_s]) / denom
        p[seen] = np.where(denom > 0, wb, uni[b_s])
        return -np.log(p)


@dataclass
class BaselineScore:
    """Summed negative log likelihoods over the same target tokens."""

    unigram: float = 0.0
    bigram: float = 0.0
    tokens: int = 0

    def add(self, counts: StreamCounts, seq: np.ndarray, prev: int = -1) -> None:
        self.unigram += float(counts.unigram_nll(seq).sum())
        self.bigram += float(counts.bigram_nll(seq, prev).sum())
        self.tokens += int(np.asarray(seq).size)

    def result(self) -> dict[str, float]:
        n = max(1, self.tokens)
        return {"unigram_ce": self.unigram / n, "bigram_ce": self.bigram / n}


def fit(streams: Iterable[np.ndarray], vocab: int) -> StreamCounts:
    """Counts of a stream over items (each array one item's consecutive tokens)."""
    c = StreamCounts(vocab)
    for s in streams:
        c.add(s)
    return c
