"""Token language models (AudioLM's three stages, or MusicGen's delay pattern).

``layouts`` lays tokens out in sequences for each stage (pure functions); ``model`` is the
transformer, sampling and model files; the sampler that runs it is ``gen.decode.Decoder``.
Training: ``windows`` draws each stage's training windows, ``loop`` is the one training
loop (the reader's too), ``train`` puts them together per stage and measures the result
beside count-based ``baselines``.
"""

from __future__ import annotations

from aimusic.lm.layouts import Vocab
from aimusic.lm.model import (
    PRESETS,
    KVCache,
    LMConfig,
    TokenLM,
    load_lm,
    next_token_loss,
    sample,
    save_lm,
)

__all__ = ["PRESETS", "KVCache", "LMConfig", "TokenLM", "Vocab", "load_lm",
           "next_token_loss", "sample", "save_lm"]
