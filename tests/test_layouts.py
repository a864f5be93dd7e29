"""Token layouts: round trips at random sizes, disjoint id ranges, target masks, allowed ranges."""

import numpy as np
import pytest
import torch

from aimusic.lm import layouts as L
from aimusic.lm.layouts import BOS, PAD, SEP, Vocab


def random_case(seed: int) -> tuple[Vocab, int, np.ndarray, np.ndarray, int]:
    """A random vocabulary, coarse split, semantic tokens [2, n] and codes [2, K, 3n]."""
    rng = np.random.default_rng(seed)
    v = Vocab(clusters=int(rng.integers(2, 40)), levels=int(rng.integers(2, 9)),
              codebook_size=int(rng.integers(2, 70)))
    kc = int(rng.integers(1, v.levels))
    n = int(rng.integers(1, 12))
    sem = rng.integers(0, v.clusters, (2, n))
    codes = rng.integers(0, v.codebook_size, (2, v.levels, 3 * n)).astype(np.int16)
    return v, kc, sem, codes, n


def test_id_ranges_are_disjoint_and_cover_the_vocabulary() -> None:
    v = Vocab(clusters=7, levels=4, codebook_size=5)
    ranges = [(PAD, PAD + 1), (BOS, BOS + 1), (SEP, SEP + 1), v.semantic_range()]
    ranges += [v.level_range(k) for k in range(v.levels)]
    ids = np.concatenate([np.arange(lo, hi) for lo, hi in ranges])
    assert sorted(ids) == list(range(v.size))  # every id once: no overlap, no hole
    assert v.stage_size("semantic", 2) == 3 + 7
    assert v.stage_size("coarse", 2) == v.stage_size("acoustic", 2) == 3 + 7 + 2 * 5
    assert v.stage_size("fine", 2) == v.stage_size("delay", 2) == v.size
    with pytest.raises(ValueError, match="out of range"):
        v.semantic_ids([7])
    with pytest.raises(ValueError, match="out of range"):
        v.acoustic_codes(torch.tensor([[v.level_offset(1)]]), first_level=0)


@pytest.mark.parametrize("seed", range(6))
def test_round_trips_at_random_sizes(seed: int) -> None:
    v, kc, sem, codes, n = random_case(seed)
    frames = codes.shape[-1]

    ids, mask = L.semantic_sequence(v, sem)
    assert ids.shape == (2, n + 1) and ids.dtype == torch.long
    assert torch.equal(L.semantic_from_sequence(v, ids), torch.as_tensor(sem))

    ids, mask = L.coarse_sequence(v, sem, codes, kc)
    assert ids.shape[-1] == L.sequence_length("coarse", v, n, kc)
    assert torch.equal(L.coarse_from_sequence(v, ids, n, kc), torch.as_tensor(codes[:, :kc]).long())

    ids, mask = L.fine_sequence(v, codes, kc)
    assert ids.shape[-1] == L.sequence_length("fine", v, frames, kc)
    assert torch.equal(L.fine_from_sequence(v, ids, frames, kc), torch.as_tensor(codes).long())

    ids, mask = L.delay_sequence(v, sem, codes)
    assert ids.shape == (2, L.sequence_length("delay", v, n, kc), v.levels)
    assert torch.equal(L.delay_from_sequence(v, ids, n), torch.as_tensor(codes).long())

    ids, mask = L.acoustic_sequence(v, codes, kc)
    assert ids.shape == (2, L.sequence_length("acoustic", v, n, kc)) == (2, 1 + frames * kc)
    assert torch.equal(L.acoustic_from_sequence(v, ids, kc), torch.as_tensor(codes[:, :kc]).long())
    # the coarse layout without its semantic prefix
    assert torch.equal(ids, L.coarse_sequence(v, sem, codes, kc)[0][:, n:])

    one = L.coarse_sequence(v, sem[1], codes[1], kc)[0]  # no batch dimension: same ids
    assert torch.equal(one, L.coarse_sequence(v, sem, codes, kc)[0][1])


@pytest.mark.parametrize("seed", range(4))
def test_every_id_lies_in_its_allowed_range_and_masks_mark_the_targets(seed: int) -> None:
    v, kc, sem, codes, n = random_case(seed)
    frames = codes.shape[-1]
    cases = [
        (L.semantic_sequence(v, sem), L.allowed_semantic(v), 1),
        (L.coarse_sequence(v, sem, codes, kc), L.allowed_coarse(v, n, kc), n + 1),
        (L.fine_sequence(v, codes, kc), L.allowed_fine(v, frames, kc), frames * kc + 1),
        (L.acoustic_sequence(v, codes, kc), L.allowed_acoustic(v, kc), 1),
    ]
    for (ids, mask), allowed, first_target in cases:
        for i in range(ids.shape[-1]):
            lo, hi = allowed(i)
            assert ((ids[:, i] >= lo) & (ids[:, i] < hi)).all()
        assert not mask[:, :first_target].any() and mask[:, first_target:].all()

    ids, mask = L.delay_sequence(v, sem, codes)
    allowed_d = L.allowed_delay(v, n, frames)
    for i in range(ids.shape[1]):
        for s, (lo, hi) in enumerate(allowed_d(i)):
            assert ((ids[:, i, s] >= lo) & (ids[:, i, s] < hi)).all()
            # targets: exactly the acoustic ids, i.e. the ranges that are not forced
            assert bool(mask[0, i, s]) == (i > n and hi - lo > 1)
    assert int(mask[0].sum()) == frames * v.levels


def test_delay_matches_the_docstring_example() -> None:
    codes = torch.tensor([[10, 11, 12, 13], [20, 21, 22, 23], [30, 31, 32, 33]])
    steps = L.delay(codes, pad=-1)
    assert steps.tolist() == [[10, -1, -1], [11, 20, -1], [12, 21, 30], [13, 22, 31],
                              [-1, 23, 32], [-1, -1, 33]]
    assert torch.equal(L.undelay(steps), codes)


def test_coarse_acoustic_and_delay_sequences_match_their_docstrings() -> None:
    v = Vocab(clusters=16, levels=2, codebook_size=10)
    a, b = v.level_offset(0), v.level_offset(1)
    ids, mask = L.coarse_sequence(v, [4, 7], [[0, 1, 2], [5, 6, 7]], 2)
    assert ids.tolist() == [7, 10, SEP, a, b + 5, a + 1, b + 6, a + 2, b + 7]
    assert mask.tolist() == [False] * 3 + [True] * 6
    ids, mask = L.acoustic_sequence(v, [[0, 1, 2], [5, 6, 7]], 2)
    assert ids.tolist() == [SEP, a, b + 5, a + 1, b + 6, a + 2, b + 7]
    assert mask.tolist() == [False] + [True] * 6
    assert L.allowed_acoustic(v, 2)(0) == (SEP, SEP + 1)
    assert L.allowed_acoustic(v, 2)(1) == v.level_range(0)
    assert L.allowed_acoustic(v, 2)(4) == v.level_range(1)
    with pytest.raises(ValueError, match="SEP"):
        L.acoustic_from_sequence(v, ids[1:], 2)
    ids, mask = L.delay_sequence(v, [4, 7], [[0, 1], [5, 6]])
    assert ids[:, 0].tolist() == [7, 10, SEP, a, a + 1, PAD]
    assert ids[:, 1].tolist() == [PAD, PAD, PAD, PAD, b + 5, b + 6]
    assert mask[:, 0].tolist() == [False, False, False, True, True, False]
    assert mask[:, 1].tolist() == [False, False, False, False, True, True]


def test_windows_fit_the_context() -> None:
    v = Vocab(clusters=512, levels=8, codebook_size=1024)
    for stage in L.WINDOWED_STAGES:
        n = L.fit_window(stage, v, 1024, 3)
        assert L.sequence_length(stage, v, n, 3) <= 1024 < L.sequence_length(stage, v, n + 1, 3)
    assert L.fit_window("coarse", v, 1024, 3) == 102  # 1 + 10 n tokens: 4 s at 25 tokens/s
    assert L.fit_window("acoustic", v, 1024, 3) == 113  # 1 + 9 n tokens
    assert L.sequence_length("acoustic", v, 5, 3) == 1 + 3 * 5 * 3
    with pytest.raises(ValueError, match="no fine window"):
        L.fit_window("fine", v, 8, 3)
    with pytest.raises(ValueError, match="unknown LM stage"):
        L.sequence_length("medium", v, 1, 3)
