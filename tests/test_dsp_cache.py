"""librosa's filterbanks are kept on disk, so a run does not pay librosa's import for them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from aimusic import dsp


def test_cached_filterbanks_equal_librosa_and_skip_its_import(tmp_path: Path, monkeypatch) -> None:
    import librosa

    monkeypatch.setenv("AIMUSIC_CACHE", str(tmp_path))
    fb = dsp.librosa_filters("mel", sr=24000, n_fft=1024, n_mels=80, fmin=0.0, fmax=12000.0)
    np.testing.assert_array_equal(fb, librosa.filters.mel(sr=24000, n_fft=1024, n_mels=80,
                                                          fmin=0.0, fmax=12000.0))
    assert len(list(tmp_path.glob("librosa-mel-*.npy"))) == 1
    code = ("import sys; from aimusic.dsp import mel_basis; "
            "from aimusic.semantic.features import chroma_basis; "
            "mel_basis(24000, 1024, 80); chroma_basis(24000, 4096); "
            "print('librosa' in sys.modules)")
    env = {**os.environ, "AIMUSIC_CACHE": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert first.stdout.strip() == "True", first.stderr  # the chroma bank was not cached yet
    assert again.stdout.strip() == "False", again.stderr


def test_an_unwritable_cache_is_skipped(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("AIMUSIC_CACHE", str(blocker))
    fb = dsp.librosa_filters("mel", sr=16000, n_fft=512, n_mels=40, fmin=0.0, fmax=8000.0)
    assert fb.shape == (40, 257)


def test_constant_tensors_first_made_in_inference_mode_still_train() -> None:
    """A process that generates (inference mode) and then trains: the cached window and
    filterbank must not be inference tensors, or backward fails."""
    import torch

    from aimusic import dsp

    dsp.hann_window.cache_clear()
    dsp.mel_basis.cache_clear()
    with torch.inference_mode():
        dsp.mel_spectrogram(torch.randn(1, 4000), 24000, 512, 64)
    x = torch.randn(1, 4000, requires_grad=True)
    dsp.multiscale_mel_loss(torch.randn(1, 4000), x, 24000, (512,)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
