"""Signal measures shared by training and evaluation: mel spectrograms, mel distance, SI-SDR,
code-usage entropy. ``torch.stft`` with librosa's mel filterbanks (no torchaudio)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aimusic.fileio import atomic_path


def cache_dir() -> Path:
    """Where computed constants are kept between runs: $AIMUSIC_CACHE, else
    $XDG_CACHE_HOME/aimusic, else ~/.cache/aimusic."""
    if os.environ.get("AIMUSIC_CACHE"):
        return Path(os.environ["AIMUSIC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "aimusic"


def librosa_filters(kind: str, **params: Any) -> np.ndarray:
    """``librosa.filters.<kind>(**params)``, kept on disk after the first call.

    Importing librosa takes over a second (scipy.signal and friends), which every `continue`
    and `speak` paid for two filterbanks that never change for a given librosa version. The
    file name holds the version and the parameters; a cache that cannot be written is
    skipped, never an error.
    """
    from importlib.metadata import version

    key = json.dumps([kind, version("librosa"), sorted(params.items())], default=str)
    path = cache_dir() / f"librosa-{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"
    with contextlib.suppress(OSError, ValueError):
        return np.load(path, allow_pickle=False)
    import librosa

    fb = np.asarray(getattr(librosa.filters, kind)(**params))
    with contextlib.suppress(OSError):
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, fb, allow_pickle=False)
    return fb


def tensor_cache(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``functools.lru_cache`` for constant tensors (windows, filterbanks), built outside
    inference mode: a tensor first made under ``torch.inference_mode`` (generation, eval)
    could not be used later by a training step's autograd in the same process."""
    @functools.lru_cache(maxsize=32)
    @functools.wraps(fn)
    def build(*args: Any) -> torch.Tensor:
        with torch.inference_mode(False), torch.no_grad():
            return fn(*args)

    return build


@tensor_cache
def mel_basis(sr: int, n_fft: int, n_mels: int) -> torch.Tensor:
    fb = librosa_filters("mel", sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sr / 2)
    return torch.from_numpy(fb).float()  # [n_mels, n_fft // 2 + 1]


@tensor_cache
def hann_window(n_fft: int) -> torch.Tensor:
    return torch.hann_window(n_fft)


def _stft(x: torch.Tensor | np.ndarray, n_fft: int) -> torch.Tensor:
    """Complex STFT [..., n_fft // 2 + 1, frames] of float32 ``x`` [..., T]: Hann window,
    hop n_fft // 4, centred; a signal shorter than n_fft is zero-padded first (stft's
    reflect padding needs at least n_fft // 2 samples)."""
    t = (x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))).float()
    t = torch.nn.functional.pad(t, (0, max(0, n_fft - t.shape[-1])))
    return torch.stft(t, n_fft, n_fft // 4, window=hann_window(n_fft).to(t.device), center=True,
                      return_complex=True)


def mel_spectrogram(x: torch.Tensor, sr: int, n_fft: int, n_mels: int, power: float = 1.0):
    """Mel magnitude spectrogram of ``x`` [..., T] -> [..., n_mels, frames] (hop n_fft // 4)."""
    shape = x.shape
    mag = _stft(x.reshape(-1, shape[-1]), n_fft).abs().pow(power)
    mel = mel_basis(sr, n_fft, n_mels).to(x.device) @ mag
    return mel.reshape(*shape[:-1], n_mels, mel.shape[-1])


def mels_for(n_fft: int) -> int:
    """Mel bands per window size: enough to resolve, never more than the FFT has bins."""
    return max(4, min(80, n_fft // 8))


def multiscale_mel_loss(
    ref: torch.Tensor, est: torch.Tensor, sr: int, windows: tuple[int, ...]
) -> torch.Tensor:
    """Training reconstruction loss: per window, L1 of log mel plus L1 of mel magnitude."""
    total = ref.new_zeros(())
    for w in windows:
        m_ref = mel_spectrogram(ref, sr, w, mels_for(w))
        m_est = mel_spectrogram(est, sr, w, mels_for(w))
        total = total + (m_ref.clamp_min(1e-5).log() - m_est.clamp_min(1e-5).log()).abs().mean()
        total = total + (m_ref - m_est).abs().mean()
    return total / len(windows)


EVAL_WINDOWS = (512, 1024, 2048)


@torch.no_grad()
def mel_distance(ref: torch.Tensor | np.ndarray, est: torch.Tensor | np.ndarray, sr: int) -> float:
    """Evaluation metric: mean |log10 mel(ref) - log10 mel(est)| over windows 512/1024/2048,
    80 mel bands. 0 is identical; lower is better. Inputs are 1-D signals of equal length."""
    r = torch.as_tensor(ref, dtype=torch.float32)
    e = torch.as_tensor(est, dtype=torch.float32)
    n = min(r.shape[-1], e.shape[-1])
    r, e = r[..., :n], e[..., :n]
    dists = []
    for w in EVAL_WINDOWS:
        a = mel_spectrogram(r, sr, w, 80).clamp_min(1e-5).log10()
        b = mel_spectrogram(e, sr, w, 80).clamp_min(1e-5).log10()
        dists.append((a - b).abs().mean().item())
    return float(np.mean(dists))


def si_sdr(ref: torch.Tensor | np.ndarray, est: torch.Tensor | np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (higher is better)."""
    r = np.asarray(ref, dtype=np.float64)
    e = np.asarray(est, dtype=np.float64)
    n = min(r.shape[-1], e.shape[-1])
    r, e = r[:n] - r[:n].mean(), e[:n] - e[:n].mean()
    alpha = float(np.dot(e, r) / (np.dot(r, r) + 1e-12))
    target = alpha * r
    noise = e - target
    return 10 * math.log10((np.dot(target, target) + 1e-12) / (np.dot(noise, noise) + 1e-12))


def normalized_entropy(codes: torch.Tensor | np.ndarray, num_codes: int) -> float:
    """Entropy of the code histogram divided by log(num_codes): 1 is uniform use, 0 one code."""
    c = torch.as_tensor(codes).reshape(-1).long()
    if c.numel() == 0:
        return 0.0
    p = torch.bincount(c, minlength=num_codes).double()
    p = p[p > 0] / c.numel()
    return float(-(p * p.log()).sum() / math.log(num_codes))


# Prompt EQ: the codec colours each voice (its decoder's magnitudes smear the formants
# towards its training voices'), the same way in a prompt and in what follows it. The
# recorded prompt and the codec's rendering of it show by how much, frame by frame: each
# frame rendered next is corrected as the prompt frames it renders most like were.
EQ_NEAREST = 4  # prompt frames whose corrections a new frame takes (their mean)
EQ_SMOOTH_HZ = 100.0  # corrections averaged over frequency: wider than a harmonic's spacing
EQ_LIMIT_DB = 13.0  # most a bin is raised or lowered (e^1.5)
EQ_ACTIVE_DB = 30.0  # prompt frames within this of its loudest make the corrections
EQ_MELS = 40  # frames are compared by their mel bands' shape (level removed)
EQ_SECONDS = 15.0  # most of a prompt (its last seconds) the corrections are measured on


def smooth_bins(x: torch.Tensor, width: int) -> torch.Tensor:
    """``x`` [..., bins, F] with each frame averaged over ``width`` neighbouring bins (odd;
    fewer at the edges): over more than a harmonic's spacing it keeps the envelope alone."""
    shape = x.shape
    rows = x.reshape(-1, shape[-2], shape[-1]).transpose(1, 2).reshape(-1, 1, shape[-2])
    rows = torch.nn.functional.avg_pool1d(rows, width, 1, width // 2, count_include_pad=False)
    return rows.reshape(-1, shape[-1], shape[-2]).transpose(1, 2).reshape(shape)


ENVELOPE_HZ = 150.0  # wider than a voice's harmonic spacing: averaging over it leaves the formants


def log_envelope(mag: torch.Tensor, sr: int, n_fft: int, hz: float = ENVELOPE_HZ) -> torch.Tensor:
    """STFT magnitudes [..., bins, F] -> the log of their spectral envelope (log magnitude of
    the power averaged over ``hz`` of neighbouring bins): formants without harmonics."""
    width = max(1, round(hz * n_fft / sr)) | 1
    return smooth_bins(mag.pow(2), width).clamp_min(1e-10).log() / 2


def _log(spec: torch.Tensor) -> torch.Tensor:
    return spec.abs().clamp_min(1e-5).log()


def _frame_shapes(log_mag: torch.Tensor, sr: int, n_fft: int) -> torch.Tensor:
    """Log magnitudes [bins, F] -> each frame's mel shape [F, EQ_MELS], unit length."""
    m = (mel_basis(sr, n_fft, EQ_MELS) @ log_mag.exp()).clamp_min(1e-5).log()
    return torch.nn.functional.normalize((m - m.mean(0, keepdim=True)).T, dim=1)


@dataclass
class PromptEQ:
    """``prompt_eq``'s corrections: for each active prompt frame, the shape of its rendering
    (``keys`` [P, EQ_MELS], unit length) and what the recording had more or less of there
    (``diffs`` [bins, P], log magnitude, smoothed over frequency)."""

    sr: int
    n_fft: int
    keys: torch.Tensor
    diffs: torch.Tensor
    nearest: int = EQ_NEAREST

    def gains(self, log_mag: torch.Tensor) -> torch.Tensor:
        """Log-magnitude gains [bins, F] for a rendering's frames [bins, F]: the mean
        correction of each frame's ``nearest`` prompt frames (cosine of the mel shapes),
        within ``EQ_LIMIT_DB``."""
        k = min(self.nearest, self.keys.shape[0])
        near = (_frame_shapes(log_mag, self.sr, self.n_fft) @ self.keys.T).topk(k, dim=1).indices
        limit = EQ_LIMIT_DB / 20 * math.log(10)
        return self.diffs[:, near].mean(-1).clamp(-limit, limit)


@torch.no_grad()
def prompt_eq(recorded: np.ndarray, rendered: np.ndarray, sr: int, n_fft: int,
              nearest: int = EQ_NEAREST) -> PromptEQ:
    """The corrections that bring ``rendered`` to ``recorded`` (two renderings of the same
    samples: a prompt and its codec round trip), frame by frame; ``equalize`` applies them
    to what the codec renders next. ``nearest`` at least the prompt's frames: one
    correction for every frame, the mean difference of the long-term spectra."""
    n = min(recorded.size, rendered.size)
    a, b = _log(_stft(recorded[:n], n_fft)), _log(_stft(rendered[:n], n_fft))
    energy = torch.logsumexp(2 * a, 0)  # [frames], log power
    active = energy >= energy.max() - EQ_ACTIVE_DB / 10 * math.log(10)
    width = max(1, round(EQ_SMOOTH_HZ / (sr / n_fft))) | 1
    diffs = smooth_bins(a[:, active] - b[:, active], width)
    return PromptEQ(sr, n_fft, _frame_shapes(b[:, active], sr, n_fft), diffs, nearest)


@torch.no_grad()
def equalize(x: np.ndarray, eq: PromptEQ) -> np.ndarray:
    """``x`` with each STFT frame's magnitudes scaled by ``eq``'s gains for it, its phases
    kept (``prompt_eq``'s window and hop); same length."""
    if x.size == 0:
        return x
    spec = _stft(x, eq.n_fft)
    spec = spec * eq.gains(_log(spec)).exp()
    y = torch.istft(spec, eq.n_fft, eq.n_fft // 4, window=hann_window(eq.n_fft), center=True,
                    length=max(x.size, eq.n_fft))
    return y[:x.size].numpy().astype(np.float32)
