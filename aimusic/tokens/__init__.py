"""Token datasets: `aimusic tokenize` writes them (tokenize.py), LM training reads them (reader.py).

A token directory holds ``shard-NNNNN.safetensors`` (semantic and acoustic tokens of a
fixed group of files, concatenated), ``manifest.json`` (where each item lies) and
``errors.jsonl`` (files that could not be used, with the reason).
"""

from __future__ import annotations

from aimusic.tokens.reader import TokenDataset

__all__ = ["TokenDataset"]
