"""Everything that exists only for speech: the reading LM and ``speak`` (``tts``), keeping a
speaker's voice in what the chain renders after their prompt (``prompt``), and judging
voices with independent judges (``judges``: resemblyzer, pocketsphinx, jiwer, the optional
extra ``pip install 'aimusic[eval]'``; ``evaluate``: ``aimusic eval voice``). It builds on
the music pipeline (``gen``), which imports nothing from it."""

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
