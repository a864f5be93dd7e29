"""Reading a token directory: whole items and random aligned windows, never the whole corpus.

Shards are opened lazily with ``safetensors.safe_open`` (a memory map) and sliced, so a
window reads only its own rows. Semantic token ``j`` of an item covers acoustic frames
``[3j, 3j + 3)`` (``frames_per_token`` in the manifest); a window of ``n`` semantic tokens
starting at ``s`` comes with acoustic frames ``[3s, 3s + 3n)``.

The manifest and every shard carry the hashes of the codec and semantic model that made
them; a dataset opened with the hashes of the models in use refuses tokens from others.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aimusic.errors import AimusicError, ArtifactError
from aimusic.tokens.shards import MANIFEST, check_format, shard_name


class TokenDataset:
    """Items of a token directory; ``window`` draws aligned semantic + acoustic windows.

    ``codec_hash`` / ``semantic_hash`` (16 hex digits, a loaded model's ``source_hash``)
    are the models in use: tokens made by other models are refused. ``None`` skips that
    check.
    """

    def __init__(self, root: str | os.PathLike, codec_hash: str | None = None,
                 semantic_hash: str | None = None) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.exists():
            raise ArtifactError(self.root, "no manifest.json: make one with `aimusic tokenize "
                                           "AUDIO_DIR -o DIR` (after split runs, `aimusic "
                                           "tokenize-merge DIR`)")
        m = json.loads(path.read_text())
        check_format(m.get("format", "?"), path)
        self.manifest = m
        self.depends: dict[str, str] = dict(m["depends"])
        for role, want in (("codec", codec_hash), ("semantic", semantic_hash)):
            have = self.depends.get(role)
            if want is not None and have != want:
                raise ArtifactError(path, f"these tokens were made with the {role} model {have}, "
                                          f"not the one in use ({want}); run `aimusic tokenize` "
                                          f"again with this {role} model")
        self.frames_per_token = int(m["frames_per_token"])
        self.levels = int(m["levels"])
        self.sources = [it["source"] for it in m["items"]]
        cols = ("shard", "semantic_offset", "semantic_length", "acoustic_offset", "acoustic_length")
        table = np.array([[it[c] for c in cols] for it in m["items"]], dtype=np.int64)
        # [items, 5]: shard, semantic offset, length, acoustic offset, length
        self._table = table.reshape(-1, len(cols))
        self._shards: dict[int, Any] = {}  # open safe_open handles, by shard index
        self._weights: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self._table.shape[0]

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen shards themselves
        return {**self.__dict__, "_shards": {}}

    @property
    def semantic_lengths(self) -> np.ndarray:
        return self._table[:, 2]

    def _shard(self, k: int) -> Any:
        """The open shard k; checked once against the manifest's models."""
        if k not in self._shards:
            from safetensors import safe_open

            path = self.root / shard_name(k)
            if not path.exists():
                raise ArtifactError(path, "shard listed in manifest.json is missing")
            try:
                f = safe_open(str(path), framework="pt")
                meta = f.metadata() or {}
            except Exception as e:
                raise ArtifactError(path, f"unreadable shard ({e})") from None
            check_format(meta.get("format", "?"), path)
            made_by = json.loads(meta.get("depends", "{}"))
            if made_by != self.depends:
                raise ArtifactError(path, f"shard made with models {made_by}, but manifest.json "
                                          f"says {self.depends}; tokenize again into a clean "
                                          "directory")
            self._shards[k] = f
        return self._shards[k]

    def slice(self, i: int, start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Semantic tokens [n] from ``start`` of item i, and their acoustic frames [levels, 3n]."""
        shard, s_off, s_len, a_off, a_len = (int(v) for v in self._table[i])
        fpt = self.frames_per_token
        if start < 0 or n < 0 or start + n > s_len:
            raise IndexError(f"tokens [{start}, {start + n}) outside item {i} ({s_len} tokens)")
        f = self._shard(shard)
        sem = f.get_slice("semantic")[s_off + start : s_off + start + n]
        ac = f.get_slice("acoustic")[:, a_off + fpt * start : a_off + fpt * (start + n)]
        return sem.long(), ac.long()

    def item(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item i whole: semantic [n] and acoustic [levels, frames] (frames >= 3n)."""
        shard, s_off, s_len, a_off, a_len = (int(v) for v in self._table[i])
        f = self._shard(shard)
        return (f.get_slice("semantic")[s_off : s_off + s_len].long(),
                f.get_slice("acoustic")[:, a_off : a_off + a_len].long())

    def draw(self, n: int, rng: np.random.Generator) -> tuple[int, int]:
        """(item, start) of a window of n tokens, uniform over all windows of the corpus."""
        if self._weights is None or self._weights[0] != n:
            w = np.maximum(0, self.semantic_lengths - n + 1)
            if w.sum() == 0:
                longest = int(self.semantic_lengths.max()) if len(self) else 0
                raise AimusicError(f"{self.root}: no item has {n} semantic tokens "
                                   f"(the longest has {longest})")
            self._weights = (n, np.cumsum(w))
        cum = self._weights[1]
        r = int(rng.integers(0, int(cum[-1])))
        i = int(np.searchsorted(cum, r, side="right"))
        return i, r - (int(cum[i - 1]) if i else 0)

    def window(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A random window: semantic [n] and the aligned acoustic frames [levels, 3n]."""
        return self.slice(*self.draw(n, rng), n)

    def batch(self, size: int, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` random windows stacked: semantic [B, n], acoustic [B, levels, 3n]."""
        sems, acs = zip(*(self.window(n, rng) for _ in range(size)))
        return torch.stack(sems), torch.stack(acs)
