"""Shared fixtures: synthetic signals, a real rendered clip, tiny trained codecs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from aimusic.audio import save_audio

SR = 24000
# one thread: OpenMP's spinning makes two threads many times slower when the other core is busy
torch.set_num_threads(1)
# computed constants (filterbanks, judged recordings) go to a folder of this run, not ~/.cache
os.environ["AIMUSIC_CACHE"] = tempfile.mkdtemp(prefix="aimusic-test-cache-")


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def melody(seconds: float, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Notes with harmonics and envelopes: a music-like synthetic signal."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * sr), dtype=np.float32)
    note = int(0.25 * sr)
    for start in range(0, out.size - note + 1, note):
        f = 220 * 2 ** (rng.integers(0, 24) / 12)
        t = np.arange(note) / sr
        env = np.exp(-4 * t)
        out[start : start + note] = env * sum(
            0.3 / h * np.sin(2 * np.pi * f * h * t) for h in (1, 2, 3)
        )
    return out


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synth")
    for i in range(4):
        save_audio(d / f"m{i}.wav", melody(4.0, seed=i), SR)
    return d


def _find_real_clip() -> Path | None:
    """A real recording from Debian's soundtrack packages, if installed."""
    for root in ("/usr/share/hyperrogue/music",):
        p = Path(root)
        if p.is_dir():
            files = sorted(p.glob("*.ogg"))
            if files:
                return files[0]
    return None


@pytest.fixture(scope="session")
def real_clip(tmp_path_factory) -> Path:
    """Three seconds of real recorded music from a Debian soundtrack package."""
    from aimusic.audio import load_audio

    out = tmp_path_factory.mktemp("real") / "clip.wav"
    src = _find_real_clip()
    if src is not None:
        save_audio(out, load_audio(src, SR, offset=30.0, duration=3.0), SR)
        return out
    pytest.skip("no real music available: apt-get install hyperrogue-music")


def load_example(name: str, folder: str = "examples"):
    """FOLDER/NAME.py (examples/ or research/) as module NAME, loaded once per session:
    worker processes pickle its functions by module name, so every test must share one
    module object."""
    import importlib.util
    import sys

    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
