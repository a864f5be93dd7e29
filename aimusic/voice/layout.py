"""The reading stage's layout (text to speech, SPEAR-TTS's "reading" model): ``BOS p0 p1 ..
SEP s0 s1 .. END``, the phonemes of a sentence then the semantic tokens of it spoken,
``END`` when the speech ends; a reader with a voice prefix reads ``BOS v0 .. SEP`` first,
semantic tokens of the voice it is to speak in. The ids are the shared ones of
``aimusic.lm.layouts.Vocab`` (``END`` and the phoneme inventory of ``aimusic.text.phonemes``
above the semantic range); like the music stages' builders, these return ``(ids, mask)``
and their inverses refuse ids outside the range a position allows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from aimusic.lm.layouts import BOS, SEP, Range, Vocab, as_ids, check_range


def _reading_head(vocab: Vocab, phonemes: Any, voice: Any) -> torch.Tensor:
    """``BOS (v0 .. v(P-1) SEP) p0 .. p(M-1) SEP``: the reading stage's prompt."""
    parts = [torch.tensor([BOS])]
    if voice is not None:
        parts += [vocab.semantic_ids(voice).reshape(-1), torch.tensor([SEP])]
    return torch.cat([*parts, vocab.phoneme_ids(phonemes).reshape(-1), torch.tensor([SEP])])


def reading_sequence(vocab: Vocab, phonemes: Any, semantic: Any, end: bool = True,
                     voice: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Phonemes [M] and the semantic tokens of them spoken [N] -> ids, mask [M + N + 3]
    (one sentence: no batch dimension; ``end=False`` leaves END off, [M + N + 2]).

    ```
    phonemes  7 9          semantic  4 4 1        (clusters = 16: END 19, phoneme p p + 20)
    ids    1 27 29  2  7  7  4 19                 (BOS, phonemes, SEP, tokens + 3, END)
    mask   F  F  F  F  T  T  T  T
    ```
    The targets are the semantic tokens and END: the model learns when the speech ends.

    ``voice`` (semantic tokens [P] of another utterance in the same voice, P may be 0)
    comes first, closed by its own SEP: ``BOS v0 .. v(P-1) SEP p0 .. SEP s0 .. END``
    [P + M + N + 4]. Our semantic tokens say who speaks as well as what is said
    (research/token_speaker_probe.py), so a reader that hears the voice writes its
    tokens in that voice.
    """
    head = _reading_head(vocab, phonemes, voice)
    sem = vocab.semantic_ids(semantic).reshape(-1)
    tail = [torch.tensor([vocab.end_id])] if end else []
    ids = torch.cat([head, sem, *tail])
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[head.shape[0]:] = True
    return ids, mask


def reading_from_sequence(vocab: Vocab, ids: Any, n_phonemes: int,
                          n_voice: int | None = None) -> torch.Tensor:
    """Inverse of ``reading_sequence``: ids [M + N + 2 (+ 1)] (with a voice of
    ``n_voice`` tokens, [P + 1 + M + N + 2 (+ 1)]) -> the semantic tokens [N] before END
    (all after the last SEP when there is no END)."""
    t = as_ids(ids).reshape(-1)
    check_range(t[:1], BOS, BOS + 1, "the first id (BOS)")
    first = 1
    if n_voice is not None:
        check_range(t[n_voice + 1:n_voice + 2], SEP, SEP + 1, f"id {n_voice + 1} (SEP)")
        first = n_voice + 2
    sep = first + n_phonemes
    check_range(t[sep:sep + 1], SEP, SEP + 1, f"id {sep} (SEP)")
    sem = t[sep + 1:]
    stop = (sem == vocab.end_id).nonzero()
    if stop.numel():
        sem = sem[:int(stop[0])]
    return vocab.semantic_tokens(sem)


def allowed_reading(vocab: Vocab, n_phonemes: int,
                    n_voice: int | None = None) -> Callable[[int], Range]:
    """Position -> allowed ids: BOS, (voice tokens, SEP,) phonemes, SEP, then semantic
    ids or END."""
    lo, hi = vocab.semantic_range()
    first = 1 if n_voice is None else n_voice + 2  # the first phoneme

    def allowed(i: int) -> Range:
        if i == 0:
            return BOS, BOS + 1
        if i < first - 1:
            return lo, hi
        if i == first - 1:
            return SEP, SEP + 1
        if i < first + n_phonemes:
            return vocab.phoneme_offset, vocab.phoneme_offset + vocab.phonemes
        if i == first + n_phonemes:
            return SEP, SEP + 1
        return lo, vocab.end_id + 1  # END is the id right after the semantic range

    return allowed
