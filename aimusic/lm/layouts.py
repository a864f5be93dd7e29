"""Token layouts: how each LM stage lays semantic and acoustic tokens out in one sequence.

Every stage uses the same global token ids (``Vocab``): three specials, then the semantic
clusters, then each codec level in its own range. A stage's embedding table is the prefix
of that id space it needs (``Vocab.stage_size``), so ids never need translating between
stages and a token's id says what it is.

```
ids:  0 PAD | 1 BOS | 2 SEP | 3 .. 3+C-1 semantic | level 0 | level 1 | ... | level K-1
                                                  ^ acoustic_offset = 3 + C, each level
                                                    codebook_size ids wide
```

Stages (AudioLM, Borsos et al. 2022; MusicGen's delay pattern, Copet et al. 2023):

- ``semantic``: ``BOS s0 s1 ...``
- ``coarse``: ``s0 .. s(n-1) SEP`` then the first ``coarse_levels`` levels flattened frame
  by frame
- ``fine``: a window's coarse levels flattened, ``SEP``, then its remaining levels
- ``delay``: all levels of a frame in one step of ``levels`` parallel streams, level k
  delayed by k steps, after a prefix of semantic steps
- ``acoustic``: ``SEP`` then the first ``coarse_levels`` levels flattened frame by frame:
  the coarse layout with no semantic prefix, for AudioLM's acoustic-only ablation (a
  coarse LM that never sees semantic tokens; generation skips the semantic stage). Its
  windows count semantic tokens' worth of frames, as the coarse stage's do, and its
  table is the coarse stage's
- ``reading`` (the voice's text-to-speech stage, laid out in ``aimusic.voice.layout``):
  it never sees acoustic ids, so its own symbols take the ids above the semantic range:
  ``END`` at ``acoustic_offset``, then the phoneme inventory. Its table stops after the
  phonemes; ``Vocab`` holds those ids so every stage shares one id space

Each builder returns ``(ids, mask)``: ``mask`` is True where the token is a prediction
target (predicted from the position before it), so a loss reads ``mask[..., 1:]``. The
inverses refuse ids outside the range a position allows, which catches a model or a
sampler writing the wrong kind of token. Inputs may be numpy arrays or tensors, with any
leading batch dimensions; outputs are int64 tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

PAD, BOS, SEP = 0, 1, 2
N_SPECIAL = 3
# stages of audio tokens, trained by `train-lm` in windows of a long token stream
WINDOWED_STAGES = ("semantic", "coarse", "fine", "delay", "acoustic")
STAGES = (*WINDOWED_STAGES, "reading")  # reading: one sentence a sequence (`train-tts`)

Range = tuple[int, int]  # allowed ids [lo, hi)


@dataclass(frozen=True)
class Vocab:
    """Id ranges of specials, semantic tokens and each codec level."""

    clusters: int  # semantic vocabulary
    levels: int  # codec levels
    codebook_size: int  # codes per level
    phonemes: int = 0  # phoneme inventory of the reading stage (0: no reading stage)

    @property
    def semantic_offset(self) -> int:
        return N_SPECIAL

    @property
    def acoustic_offset(self) -> int:
        return N_SPECIAL + self.clusters

    @property
    def size(self) -> int:
        """Every id: specials, semantic and all levels."""
        return self.acoustic_offset + self.levels * self.codebook_size

    def level_offset(self, k: int) -> int:
        if not 0 <= k < self.levels:
            raise ValueError(f"level {k} is not one of 0..{self.levels - 1}")
        return self.acoustic_offset + k * self.codebook_size

    def semantic_range(self) -> Range:
        return self.semantic_offset, self.acoustic_offset

    def level_range(self, k: int) -> Range:
        lo = self.level_offset(k)
        return lo, lo + self.codebook_size

    def stage_size(self, stage: str, coarse_levels: int) -> int:
        """Size of the id prefix a stage uses: its embedding table.

        The semantic LM needs no acoustic ids and the coarse LM (and the acoustic one) none
        above its levels, so their tables stop early; fine and delay need every level. Fine
        (a few percent of its table) and acoustic leave the semantic rows unused: ids are
        global.
        """
        check_stage(stage)
        if stage == "semantic":
            return self.acoustic_offset
        if stage == "reading":
            return self.phoneme_offset + self.phonemes
        if stage in ("coarse", "acoustic"):
            return self.acoustic_offset + coarse_levels * self.codebook_size
        return self.size

    @property
    def end_id(self) -> int:
        """The reading stage's end of speech (an id no other stage's table has)."""
        return self.acoustic_offset

    @property
    def phoneme_offset(self) -> int:
        """The reading stage's first phoneme id: phoneme p is ``phoneme_offset + p``."""
        return self.acoustic_offset + 1

    def phoneme_ids(self, phonemes: Any) -> torch.Tensor:
        """Phoneme ids of the inventory [...] -> the reading stage's ids [...]."""
        t = as_ids(phonemes)
        check_range(t, 0, self.phonemes, "phonemes")
        return t + self.phoneme_offset

    def semantic_ids(self, tokens: Any) -> torch.Tensor:
        """Semantic tokens [...] (0..clusters-1) -> ids [...]."""
        t = as_ids(tokens)
        check_range(t, 0, self.clusters, "semantic tokens")
        return t + self.semantic_offset

    def semantic_tokens(self, ids: Any) -> torch.Tensor:
        """Inverse of ``semantic_ids``."""
        t = as_ids(ids)
        check_range(t, *self.semantic_range(), "semantic ids")
        return t - self.semantic_offset

    def acoustic_ids(self, codes: Any, first_level: int = 0) -> torch.Tensor:
        """Codes [..., K, F] of levels ``first_level .. first_level+K-1`` -> ids [..., K, F]."""
        c = as_ids(codes)
        check_range(c, 0, self.codebook_size, "codes")
        return c + self._offsets(first_level, c.shape[-2]).to(c.device)[:, None]

    def acoustic_codes(self, ids: Any, first_level: int = 0) -> torch.Tensor:
        """Inverse of ``acoustic_ids``: ids [..., K, F] -> codes [..., K, F]."""
        t = as_ids(ids)
        codes = t - self._offsets(first_level, t.shape[-2]).to(t.device)[:, None]
        check_range(codes, 0, self.codebook_size, f"ids of levels {first_level}..")
        return codes

    def _offsets(self, first_level: int, k: int) -> torch.Tensor:
        if first_level < 0 or first_level + k > self.levels:
            raise ValueError(f"levels {first_level}..{first_level + k - 1} do not fit "
                             f"{self.levels} levels")
        return self.acoustic_offset + torch.arange(first_level, first_level + k) * self.codebook_size


def check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"unknown LM stage {stage!r}; choose one of: {', '.join(STAGES)}")


def as_ids(x: Any) -> torch.Tensor:
    """Token ids of any array-like, as an int64 tensor."""
    return torch.as_tensor(x).long()


def check_range(t: torch.Tensor, lo: int, hi: int, what: str) -> None:
    """Refuse ids outside [lo, hi), saying which and where they should be."""
    if t.numel() and (int(t.min()) < lo or int(t.max()) >= hi):
        raise ValueError(f"{what} out of range: found {int(t.min())}..{int(t.max())}, "
                         f"expected {lo}..{hi - 1}")


def _flatten(ids: torch.Tensor) -> torch.Tensor:
    """[..., K, F] -> [..., F*K], frame-major: f0l0 f0l1 .. f1l0 .."""
    return ids.transpose(-1, -2).reshape(*ids.shape[:-2], -1)


def _unflatten(ids: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of ``_flatten``: [..., F*K] -> [..., K, F]."""
    if ids.shape[-1] % k:
        raise ValueError(f"{ids.shape[-1]} tokens are not whole frames of {k} levels")
    return ids.reshape(*ids.shape[:-1], -1, k).transpose(-1, -2)


def _fill(like: torch.Tensor, value: int) -> torch.Tensor:
    return torch.full((*like.shape[:-1], 1), value, dtype=torch.long, device=like.device)


def sequence_length(stage: str, vocab: Vocab, n: int, coarse_levels: int,
                    frames_per_token: int = 3) -> int:
    """Tokens (steps, for ``delay``) of a window of ``n`` semantic tokens (``n`` frames for
    ``fine``), with ``frames_per_token * n`` acoustic frames beside semantic ones (the
    ``acoustic`` stage has those frames and no semantic tokens)."""
    check_stage(stage)
    if stage == "reading":
        raise ValueError("the reading stage is not windowed: a sentence is one sequence")
    frames = frames_per_token * n
    if stage == "semantic":
        return n + 1
    if stage == "coarse":
        return n + 1 + frames * coarse_levels
    if stage == "acoustic":
        return 1 + frames * coarse_levels
    if stage == "fine":
        return n * vocab.levels + 1
    return n + 1 + frames + vocab.levels - 1


def fit_window(stage: str, vocab: Vocab, max_len: int, coarse_levels: int,
               frames_per_token: int = 3) -> int:
    """The largest window ``n`` (as in ``sequence_length``) that fits ``max_len``."""
    base = sequence_length(stage, vocab, 0, coarse_levels, frames_per_token)
    per = sequence_length(stage, vocab, 1, coarse_levels, frames_per_token) - base
    n = (max_len - base) // per
    if n < 1:
        raise ValueError(f"a context of {max_len} tokens holds no {stage} window")
    return n


# -- semantic stage -------------------------------------------------------------------


def semantic_sequence(vocab: Vocab, semantic: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Semantic tokens [..., N] -> ids, mask [..., N+1]: BOS, then every token a target.

    ```
    tokens   5  9  9  2            (clusters = 16)
    ids   1  8 12 12  5            (BOS, then token + 3)
    mask  F  T  T  T  T
    ```
    """
    ids = vocab.semantic_ids(semantic)
    ids = torch.cat([_fill(ids, BOS), ids], -1)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[..., 0] = False
    return ids, mask


def semantic_from_sequence(vocab: Vocab, ids: Any) -> torch.Tensor:
    """Inverse of ``semantic_sequence``: ids [..., N+1] -> tokens [..., N]."""
    t = as_ids(ids)
    check_range(t[..., :1], BOS, BOS + 1, "the first id (BOS)")
    return vocab.semantic_tokens(t[..., 1:])


def allowed_semantic(vocab: Vocab) -> Callable[[int], Range]:
    """Position -> allowed ids: BOS first, semantic ids after."""

    def allowed(i: int) -> Range:
        return (BOS, BOS + 1) if i == 0 else vocab.semantic_range()

    return allowed


# -- coarse stage ---------------------------------------------------------------------


def coarse_sequence(vocab: Vocab, semantic: Any, codes: Any,
                    coarse_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Semantic [..., N] and codes [..., K, F] -> ids, mask [..., N + 1 + F*Kc].

    Only the first ``coarse_levels`` (Kc) levels of ``codes`` are used, flattened frame by
    frame after a separator; they are the targets.

    ```
    semantic  4  7                 codes (Kc = 2 of them)  l0: a0 a1 a2
                                                           l1: b0 b1 b2
    ids   s4 s7 SEP a0 b0 a1 b1 a2 b2      (sX = X + 3, aX = X + level 0's offset, ..)
    mask   F  F  F  T  T  T  T  T  T
    ```
    """
    sem = vocab.semantic_ids(semantic)
    ac = _flatten(vocab.acoustic_ids(as_ids(codes)[..., :coarse_levels, :]))
    ids = torch.cat([sem, _fill(sem, SEP), ac], -1)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[..., sem.shape[-1] + 1:] = True
    return ids, mask


def coarse_from_sequence(vocab: Vocab, ids: Any, n_semantic: int,
                         coarse_levels: int) -> torch.Tensor:
    """Inverse of ``coarse_sequence``: ids -> coarse codes [..., Kc, F]."""
    t = as_ids(ids)
    check_range(t[..., n_semantic:n_semantic + 1], SEP, SEP + 1, f"id {n_semantic} (SEP)")
    return vocab.acoustic_codes(_unflatten(t[..., n_semantic + 1:], coarse_levels))


def allowed_coarse(vocab: Vocab, n_semantic: int, coarse_levels: int) -> Callable[[int], Range]:
    """Position -> allowed ids: semantic, SEP, then levels 0..Kc-1 in turn."""

    def allowed(i: int) -> Range:
        if i < n_semantic:
            return vocab.semantic_range()
        if i == n_semantic:
            return SEP, SEP + 1
        return vocab.level_range((i - n_semantic - 1) % coarse_levels)

    return allowed


# -- acoustic stage (AudioLM's acoustic-only ablation): coarse with no semantic tokens --


def _no_semantic(codes: torch.Tensor) -> torch.Tensor:
    """Zero semantic tokens [..., 0] with the leading dimensions of codes [..., K, F]."""
    return codes.new_zeros((*codes.shape[:-2], 0))


def acoustic_sequence(vocab: Vocab, codes: Any,
                      coarse_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes [..., K, F] -> ids, mask [..., 1 + F*Kc]: ``coarse_sequence`` with no semantic
    tokens, so ``SEP`` then the first Kc levels flattened frame by frame (the targets).

    ```
    codes (Kc = 2 of them)  l0: a0 a1
                            l1: b0 b1
    ids   SEP a0 b0 a1 b1
    mask    F  T  T  T  T
    ```
    """
    c = as_ids(codes)
    return coarse_sequence(vocab, _no_semantic(c), c, coarse_levels)


def acoustic_from_sequence(vocab: Vocab, ids: Any, coarse_levels: int) -> torch.Tensor:
    """Inverse of ``acoustic_sequence``: ids -> coarse codes [..., Kc, F]."""
    return coarse_from_sequence(vocab, ids, 0, coarse_levels)


def allowed_acoustic(vocab: Vocab, coarse_levels: int) -> Callable[[int], Range]:
    """Position -> allowed ids: SEP, then levels 0..Kc-1 in turn."""
    return allowed_coarse(vocab, 0, coarse_levels)


# -- fine stage -----------------------------------------------------------------------


def fine_sequence(vocab: Vocab, codes: Any, coarse_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes [..., K, F] of a window -> ids, mask [..., F*Kc + 1 + F*(K-Kc)].

    The window's coarse levels come first (all of them, so a fine token sees the coarse
    ones of later frames too), then a separator, then the fine levels: the targets.

    ```
    codes  l0: a0 a1    (K = 3, Kc = 1)
           l1: b0 b1
           l2: c0 c1
    ids   a0 a1 SEP b0 c0 b1 c1
    mask   F  F  F  T  T  T  T
    ```
    """
    c = as_ids(codes)
    if c.shape[-2] != vocab.levels:
        raise ValueError(f"codes have {c.shape[-2]} levels, the vocabulary {vocab.levels}")
    coarse = _flatten(vocab.acoustic_ids(c[..., :coarse_levels, :]))
    fine = _flatten(vocab.acoustic_ids(c[..., coarse_levels:, :], coarse_levels))
    ids = torch.cat([coarse, _fill(coarse, SEP), fine], -1)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[..., coarse.shape[-1] + 1:] = True
    return ids, mask


def fine_from_sequence(vocab: Vocab, ids: Any, frames: int, coarse_levels: int) -> torch.Tensor:
    """Inverse of ``fine_sequence``: ids -> all codes [..., K, F], coarse from the prefix."""
    t = as_ids(ids)
    n = frames * coarse_levels
    if t.shape[-1] != frames * vocab.levels + 1:
        raise ValueError(f"{t.shape[-1]} ids are not a fine window of {frames} frames")
    check_range(t[..., n:n + 1], SEP, SEP + 1, f"id {n} (SEP)")
    coarse = vocab.acoustic_codes(_unflatten(t[..., :n], coarse_levels))
    fine = vocab.acoustic_codes(_unflatten(t[..., n + 1:], vocab.levels - coarse_levels),
                                coarse_levels)
    return torch.cat([coarse, fine], -2)


def allowed_fine(vocab: Vocab, frames: int, coarse_levels: int) -> Callable[[int], Range]:
    """Position -> allowed ids: coarse levels in turn, SEP, fine levels in turn."""
    n = frames * coarse_levels
    fine_levels = vocab.levels - coarse_levels

    def allowed(i: int) -> Range:
        if i < n:
            return vocab.level_range(i % coarse_levels)
        if i == n:
            return SEP, SEP + 1
        return vocab.level_range(coarse_levels + (i - n - 1) % fine_levels)

    return allowed


# -- delay pattern (one step per frame, all levels in parallel streams) --------------


def delay(codes: Any, pad: int = PAD) -> torch.Tensor:
    """Codes [..., K, F] -> steps [..., F+K-1, K], level k delayed by k steps.

    ```
    codes  l0: a0 a1 a2 a3         steps  t0: a0  P  P
           l1: b0 b1 b2 b3                t1: a1 b0  P
           l2: c0 c1 c2 c3                t2: a2 b1 c0
                                          t3: a3 b2 c1
                                          t4:  P b3 c2
                                          t5:  P  P c3
    ```
    Step t holds level k of frame t - k, so when a step is predicted, every level of its
    frames below k is already known (MusicGen's pattern).
    """
    c = as_ids(codes)
    *lead, K, F = c.shape
    out = torch.full((*lead, F + K - 1, K), pad, dtype=torch.long, device=c.device)
    for k in range(K):
        out[..., k:k + F, k] = c[..., k, :]
    return out


def undelay(steps: Any) -> torch.Tensor:
    """Inverse of ``delay``: steps [..., T, K] -> codes [..., K, T-K+1]."""
    s = as_ids(steps)
    T, K = s.shape[-2:]
    F = T - K + 1
    if F < 0:
        raise ValueError(f"{T} steps are fewer than {K} levels need")
    return torch.stack([s[..., k:k + F, k] for k in range(K)], -2)


def delay_sequence(vocab: Vocab, semantic: Any, codes: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Semantic [..., N] and codes [..., K, F] -> ids, mask [..., N + 1 + F+K-1, K].

    The semantic tokens are a prefix of steps in stream 0 (the other streams hold PAD),
    closed by a SEP step; the delayed codes follow. Targets are the acoustic ids, not the
    PAD filling the delay's corners (they are known in advance).

    ```
    semantic  4 7;  codes l0: a0 a1, l1: b0 b1 (K = 2)
    step    0   1   2   3   4   5
    s0     s4  s7 SEP  a0  a1   P
    s1      P   P   P   P  b0  b1
    mask s0 F   F   F   T   T   F
    mask s1 F   F   F   F   T   T
    ```
    """
    sem = vocab.semantic_ids(semantic)
    c = as_ids(codes)
    if c.shape[-2] != vocab.levels:
        raise ValueError(f"codes have {c.shape[-2]} levels, the vocabulary {vocab.levels}")
    prefix = torch.cat([sem, _fill(sem, SEP)], -1)
    K = vocab.levels
    head = torch.full((*prefix.shape, K), PAD, dtype=torch.long, device=prefix.device)
    head[..., 0] = prefix
    body = delay(vocab.acoustic_ids(c))
    ids = torch.cat([head, body], -2)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[..., prefix.shape[-1]:, :] = body != PAD
    return ids, mask


def delay_from_sequence(vocab: Vocab, ids: Any, n_semantic: int) -> torch.Tensor:
    """Inverse of ``delay_sequence``: ids -> codes [..., K, F]."""
    t = as_ids(ids)
    check_range(t[..., n_semantic:n_semantic + 1, 0], SEP, SEP + 1, f"step {n_semantic} (SEP)")
    return vocab.acoustic_codes(undelay(t[..., n_semantic + 1:, :]))


def allowed_delay(vocab: Vocab, n_semantic: int, frames: int) -> Callable[[int], Sequence[Range]]:
    """Step -> allowed ids of each stream: a one-id range (PAD, SEP) is forced."""
    K = vocab.levels
    pad: Range = (PAD, PAD + 1)

    def allowed(i: int) -> list[Range]:
        if i < n_semantic:
            return [vocab.semantic_range()] + [pad] * (K - 1)
        if i == n_semantic:
            return [(SEP, SEP + 1)] + [pad] * (K - 1)
        t = i - n_semantic - 1
        return [vocab.level_range(k) if 0 <= t - k < frames else pad for k in range(K)]

    return allowed
