"""Token language models (AudioLM's three stages, or MusicGen's delay pattern).

``layouts`` lays tokens out in sequences for each stage (pure functions); ``model`` is the
transformer, sampling, generation and model files.
"""

from __future__ import annotations

from aimusic.lm.layouts import Vocab
from aimusic.lm.model import (
    PRESETS,
    KVCache,
    LMConfig,
    TokenLM,
    generate,
    load_lm,
    next_token_loss,
    sample,
    save_lm,
)

__all__ = ["PRESETS", "KVCache", "LMConfig", "TokenLM", "Vocab", "generate", "load_lm",
           "next_token_loss", "sample", "save_lm"]
