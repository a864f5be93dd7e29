"""aimusic: neural audio codec, semantic tokens and token language models for music and voice."""

__version__ = "0.1.0"
