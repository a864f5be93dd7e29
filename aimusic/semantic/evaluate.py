"""Do tokens follow the music or the instrument? Agreement between two renders of the
same pieces with disjoint instrument sets (``make_corpus.py --pairs``: folders a/ and b/
holding the same file names), as normalized mutual information between time-aligned token
sequences, and as the share of frames given the very same token. NMI does not see a
consistent relabelling (a transposition that maps every token to another one keeps it
high); the same-token share does: tokens that follow the notes keep it high across
instruments and lose it under a transposition. Two controls on the same sequences show
how much of a figure is the moment being played and how much is just the number of
clusters against the number of frames (NMI's finite-sample bias) or the piece's key and
register.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aimusic.audio import list_audio_files, load_audio
from aimusic.errors import AimusicError


def nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Normalized mutual information of two label sequences, MI / mean(H(a), H(b))."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a.size != b.size or a.size == 0:
        raise ValueError("nmi needs two non-empty sequences of the same length")
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1)
    p = joint / a.size
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / (pa[:, None] * pb[None, :])[nz])).sum())

    def h(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    denom = (h(pa) + h(pb)) / 2
    return mi / denom if denom > 0 else 0.0


def pairs(pairs_dir: str | Path) -> list[tuple[Path, Path]]:
    root = Path(pairs_dir)
    a, b = root / "a", root / "b"
    if not (a.is_dir() and b.is_dir()):
        raise AimusicError(f"{root}: expected folders a/ and b/ with the same pieces rendered "
                           f"twice (python examples/make_corpus.py --pairs)")
    by_name = {p.relative_to(b): p for p in list_audio_files(b)}
    found = [(p, by_name[p.relative_to(a)]) for p in list_audio_files(a) if p.relative_to(a) in by_name]
    if not found:
        raise AimusicError(f"{root}: no file name appears in both a/ and b/")
    return found


def agreement(found: list[tuple[Path, Path]],
              tokenizers: Mapping[str, Callable[[np.ndarray], np.ndarray]],
              sr: int = 24000) -> dict[str, Any]:
    """Per tokenizer: NMI and the same-token share (``same``) between the time-aligned
    renders, and two controls on the same token sequences: ``shifted`` (same piece, render
    b rolled by half the piece: shares key, register and tempo, not the moment) and
    ``other`` (each render a against render b of another piece: shares only the corpus's
    statistics, the chance level); ``same_shifted`` and ``same_other`` for the share."""
    toks: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in tokenizers}
    for pa, pb in found:
        xa, xb = load_audio(pa, sr), load_audio(pb, sr)
        n = min(xa.size, xb.size)
        for name, tok in tokenizers.items():
            ta, tb = tok(xa[:n]), tok(xb[:n])
            m = min(ta.size, tb.size)
            toks[name].append((ta[:m], tb[:m]))
    out: dict[str, Any] = {}
    for name, seqs in toks.items():
        a = np.concatenate([ta for ta, _ in seqs])
        b = np.concatenate([tb for _, tb in seqs])
        s = np.concatenate([np.roll(tb, tb.size // 2) for _, tb in seqs])
        oa, ob = [], []
        for i, (ta, _) in enumerate(seqs):
            tb = seqs[(i + 1) % len(seqs)][1]
            m = min(ta.size, tb.size)
            oa.append(ta[:m])
            ob.append(tb[:m])
        other = same_other = float("nan")
        if len(seqs) > 1:
            oa_, ob_ = np.concatenate(oa), np.concatenate(ob)
            other, same_other = nmi(oa_, ob_), float((oa_ == ob_).mean())
        out[name] = {"nmi": round(nmi(a, b), 4), "shifted": round(nmi(a, s), 4),
                     "other": round(other, 4), "same": round(float((a == b).mean()), 4),
                     "same_shifted": round(float((a == s).mean()), 4),
                     "same_other": round(same_other, 4), "frames": int(a.size)}
    return {"pieces": len(found), "tokenizers": out}
