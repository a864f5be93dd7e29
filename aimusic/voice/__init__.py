"""Voice evaluation: independent judges (resemblyzer, pocketsphinx, jiwer; the optional extra
``pip install 'aimusic[eval]'``) and ``aimusic eval voice`` (:mod:`aimusic.voice.evaluate`)."""

from aimusic.voice.judges import (
    JudgeMissing,
    check_judges,
    cosine,
    normalize_text,
    speaker_embedding,
    transcribe,
    wer,
)

__all__ = ["JudgeMissing", "check_judges", "cosine", "normalize_text", "speaker_embedding",
           "transcribe", "wer"]
