"""Does the coarse LM learn faster when each semantic token sits right before the frames it
covers, instead of all of them in a prefix?

The oracle-semantic probe (research/oracle_semantic_probe.py) found that the coarse LM,
given the truth's own semantic tokens, continues no more coherently than with the semantic
LM's: it does not follow them. In the coarse layout (`lm.layouts.coarse_sequence`) the
semantic token of frame f is at a distance that grows along the window, so a small model
must learn where to look. This probe trains the same LM shape on the same windows laid out
interleaved, with the same length and the same targets:

    prefix:       s0 s1 .. s(n-1) SEP  a0 b0 a1 b1 ..            (the coarse layout)
    interleaved:  SEP  s0 [frames of s0] s1 [frames of s1] ..     (this probe)

The interleaved model sees each semantic token only when its frames start (no look-ahead),
so it has less to go on than the prefix layout; a lower validation cross entropy at the
same step says the alignment, not the information, was what the coarse LM lacked.

    AIMUSIC_THREADS=1 python research/coarse_interleaved_probe.py data/tokens-music2 \
        --models models/interleaved --steps 400 [--ahead A]

``--ahead A`` puts each semantic token A tokens before its frames (the first A right after
SEP), so the model sees a little of what comes, as the prefix layout sees it all.

It runs `aimusic train-lm --stage coarse` with the layout swapped (any flag after the
tokens folder is passed on). The weights it saves are NOT a coarse LM the chain can use
(generation lays the sequence out as a prefix): keep them out of any models folder; the
log (`lm-coarse.log.jsonl`) is the result. Compare with a prefix run's log at equal steps.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import aimusic.lm.layouts as L  # noqa: E402


def interleaved_sequence(vocab: L.Vocab, semantic: Any, codes: Any, coarse_levels: int,
                         ahead: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Semantic [..., N] and codes [..., K, F] (F = N * fpt) -> ids, mask [..., 1 + N + F*Kc]:
    SEP, then each semantic token followed by its fpt frames' coarse levels. With ``ahead``
    = a, the semantic tokens come a tokens early: SEP, s0 .. s(a-1), then s(t+a) before the
    frames of s(t) while there is one; the length stays the same. The semantic tokens are
    given, never targets."""
    sem = vocab.semantic_ids(semantic)
    ac = L._flatten(vocab.acoustic_ids(L.as_ids(codes)[..., :coarse_levels, :]))
    n = sem.shape[-1]
    if n == 0 or ac.shape[-1] % n:
        raise ValueError(f"{ac.shape[-1]} acoustic ids do not split into {n} semantic tokens")
    a = min(ahead, n)
    per = ac.shape[-1] // n
    parts, given = [L._fill(sem[..., :1], L.SEP), sem[..., :a]], [True] + [True] * a
    for t in range(n):
        if t + a < n:
            parts.append(sem[..., t + a:t + a + 1])
            given.append(True)
        parts.append(ac[..., t * per:(t + 1) * per])
        given += [False] * per
    ids = torch.cat(parts, -1)
    mask = torch.tensor([not g for g in given]).expand(ids.shape).clone()
    return ids, mask


def check() -> None:
    v = L.Vocab(clusters=16, codebook_size=8, levels=2)
    sem = torch.tensor([4, 7])
    codes = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])  # 2 frames a token
    ids, mask = interleaved_sequence(v, sem, codes, 2)
    pre, pmask = L.coarse_sequence(v, sem, codes, 2)
    assert ids.shape == pre.shape and int(mask.sum()) == int(pmask.sum()) == 8
    assert sorted(ids.tolist()) == sorted(pre.tolist())
    assert ids[1] == pre[0] and ids[6] == pre[1] and not mask[1] and not mask[6]
    assert ids.tolist() == [2, pre[0], *pre[3:7].tolist(), pre[1], *pre[7:].tolist()]
    assert mask.tolist() == [False, False] + [True] * 4 + [False] + [True] * 4
    la, lmask = interleaved_sequence(v, sem, codes, 2, ahead=1)
    assert la.tolist() == [2, pre[0], pre[1], *pre[3:7].tolist(), *pre[7:].tolist()]
    assert lmask.tolist() == [False, False, False] + [True] * 8


if __name__ == "__main__":
    check()
    args = sys.argv[1:]
    ahead = 0
    if "--ahead" in args:  # semantic tokens early (0: each right before its own frames)
        i = args.index("--ahead")
        ahead = int(args[i + 1])
        del args[i:i + 2]
    # what lm.windows builds the coarse windows with
    L.coarse_sequence = lambda v, s, c, kc: interleaved_sequence(v, s, c, kc, ahead)
    from aimusic.cli import main

    if not args or args[0].startswith("-"):
        raise SystemExit(__doc__)
    sys.argv = ["aimusic", "train-lm", args[0], "--stage", "coarse", "--steps", "1000000",
                *args[1:]]
    main()
