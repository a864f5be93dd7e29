"""The ``aimusic`` command line: thin Typer commands over library functions, grouped as
music (``music.py``), voice (``voice.py``) and evaluation (``evaluate.py``); ``common.py``
holds the apps, global options, error handling and shared options.

Each command parses its options, calls library functions, and prints where its artifacts
went. Torch is imported only by commands that use it, so ``--help`` answers at once.
"""

from aimusic.cli import evaluate, music, voice  # noqa: F401  (each registers its commands)
from aimusic.cli.common import app, main

__all__ = ["app", "main"]
