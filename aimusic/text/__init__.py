"""Text front end for the voice models: English phonemes from espeak-ng (phonemes.py)."""

from __future__ import annotations

from aimusic.text.phonemes import (
    SYMBOLS,
    VOCAB_SIZE,
    PhonemeError,
    decode,
    encode,
    normalize_text,
    phonemize,
)

__all__ = ["SYMBOLS", "VOCAB_SIZE", "PhonemeError", "decode", "encode", "normalize_text",
           "phonemize"]
