"""Does a continuation keep the prompt's key, tempo and sound? Agreement measures and the
coherence score of ``aimusic eval continuation``.

Each measure compares a prompt with a continuation and gives a number that is high when
they agree. Three cover what the prompt sets (harmony, rhythm, timbre); a fourth
(repetition) catches the trivial way to agree with a prompt, copying it:

- harmony: Pearson correlation of the two pitch-class profiles (energy-weighted mean
  chroma, with the filterbank equalised so white noise is flat). Correlation, not cosine:
  every chroma is positive, so the cosine of any two is high (mean-chroma cosine gives
  loudness-matched noise three quarters of the truth's score). A profile is a key: moving
  it by 3 semitones leaves about half of a major scale's notes in place, correlation ~0.
- rhythm: Pearson correlation of the autocorrelations of the two onset-strength envelopes
  (spectral flux of log-mel, 100 frames/s) over lags 0.15-2 s: the periodicities the beat
  and its subdivisions make, with no beat tracker (a tempo estimate from a few seconds is
  fragile and scores noise and silence above real music). Stretching time by 1.3x moves
  every peak.
- timbre: Pearson correlation of the two mean log-mel spectra (dB): the long-term
  spectral envelope, tilt included (loudness does not count: correlation ignores offsets).
- repetition: how much of the continuation is found in the prompt: for each 1 s window of
  the continuation, the best cosine (mean removed) against every 1 s window of the prompt,
  averaged. Music repeats itself, so the truth scores well above an unrelated clip; a loop
  of the prompt scores ~1.

Scoring a continuation against the truth. Agreeing with the prompt *more* than the true
continuation does is not better: a copy of the prompt agrees perfectly. So the generated
agreement is reflected about the truth's, ``a' = a if a <= a_true else 2 a_true - a``, and

    coherence = (mean a' - mean a_floor) / (mean a_true - mean a_floor)

per measure, means over clips (per-clip floors and ceilings are too noisy to divide by),
where the floor is a segment of other clips. 1 is as coherent as the truth, 0 as an
unrelated clip; below 0 is worse than an unrelated clip (noise's timbre). The overall score
is the mean of the four, each clipped to [0, 1] so that one measure far below the floor
does not swamp the others. Silent segments agree with nothing (every measure 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from aimusic.dsp import mel_basis, tensor_cache
from aimusic.semantic.features import chroma_basis, power_spectrogram, spectral_flux

MEASURES = ("harmony", "rhythm", "timbre", "repetition")
SILENT_DB = -60.0

# analysis settings (any sample rate; a 24 kHz signal uses these sizes as they are)
CHROMA_FFT = 4096
HOP_SECONDS = 0.01  # onset envelope and log-mel frames: 100/s
MEL_FFT_SECONDS = 0.04
N_MELS = 64
LAGS = (0.15, 2.0)  # rhythm: autocorrelation lags, seconds
REPEAT_WINDOW = 1.0  # seconds per repetition window
REPEAT_STEP = 0.25  # continuation windows start every this many seconds


@tensor_cache
def _chroma_fb(sr: int, n_fft: int) -> torch.Tensor:
    """The semantic features' chroma filterbank, each pitch class scaled to respond equally
    to white noise (so noise is flat)."""
    fb = chroma_basis(sr, n_fft)
    return fb / fb.sum(1, keepdim=True)


def _stft_power(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """|STFT|^2 [bins, frames] of every centred frame."""
    return power_spectrogram(x, n_fft, hop, x.shape[-1] // hop + 1)


@dataclass
class Features:
    """What the measures compare, for one segment; ``silent`` segments agree with nothing."""

    silent: bool
    chroma: np.ndarray  # [12] pitch-class profile
    acf: np.ndarray  # [lags] onset autocorrelation
    timbre: np.ndarray  # [N_MELS] mean log-mel, dB
    frames: np.ndarray  # [N_MELS, frames] log-mel at 100 frames/s (repetition)
    seconds: float


def features(x: np.ndarray, sr: int) -> Features:
    """Features of a mono float signal."""
    x = np.asarray(x, dtype=np.float32)
    seconds = x.size / sr
    level = 10 * math.log10(float(np.mean(x.astype(np.float64) ** 2)) + 1e-20) if x.size else -200.0
    t = torch.from_numpy(x)
    hop = max(1, round(HOP_SECONDS * sr))
    n_fft = 1 << max(6, round(math.log2(MEL_FFT_SECONDS * sr)))
    with torch.no_grad():
        chroma = (_chroma_fb(sr, CHROMA_FFT) @ _stft_power(t, CHROMA_FFT, CHROMA_FFT // 4)).sum(-1)
        mel = mel_basis(sr, n_fft, N_MELS) @ _stft_power(t, n_fft, hop)  # [mels, frames]
        db = 10 * torch.log10(mel + 1e-10)
        # onset strength: rectified rise of log-mel, summed over bands, local mean removed
        flux = spectral_flux(mel)
        k = max(1, round(0.5 / HOP_SECONDS))
        if flux.numel() > k:
            flux = flux - torch.nn.functional.avg_pool1d(flux[None, None], k, 1, k // 2,
                                                         count_include_pad=False)[0, 0, :flux.numel()]
        acf = _acf(flux.double().numpy(), round(LAGS[0] / HOP_SECONDS), round(LAGS[1] / HOP_SECONDS))
    return Features(silent=level < SILENT_DB, chroma=chroma.double().numpy(), acf=acf,
                    timbre=db.mean(1).double().numpy(), frames=db.double().numpy(),
                    seconds=seconds)


def _acf(o: np.ndarray, lo: int, hi: int) -> np.ndarray:
    o = o - o.mean()
    n = o.size
    if n <= lo:
        return np.zeros(hi - lo)
    spec = np.fft.rfft(o, 2 * n)
    r = np.fft.irfft(spec * np.conj(spec))[:n]
    r = r / (r[0] + 1e-12) / (1 - np.arange(n) / n)  # unbiased: long lags count as much
    out = np.zeros(hi - lo)
    m = min(hi, n - 1) - lo
    if m > 0:
        out[:m] = r[lo:lo + m]
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    d = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / d if d > 1e-12 else 0.0


def _repetition(p: np.ndarray, c: np.ndarray) -> float:
    """Mean over continuation windows of the best cosine against any prompt window."""
    w = max(1, round(REPEAT_WINDOW / HOP_SECONDS))
    step = max(1, round(REPEAT_STEP / HOP_SECONDS))
    if p.shape[1] < w or c.shape[1] < w:
        return 0.0

    def windows(x: np.ndarray, stride: int) -> np.ndarray:
        idx = np.arange(0, x.shape[1] - w + 1, stride)
        v = np.stack([x[:, i:i + w].ravel() for i in idx])
        v = v - v.mean(1, keepdims=True)
        return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-9)

    pw = windows(p, 2)  # every 20 ms: a loop's windows line up with the prompt's
    cw = windows(c, step)
    return float((cw @ pw.T).max(1).mean())


def agreement(prompt: Features, cont: Features) -> dict[str, float]:
    """The four measures for one prompt and one continuation."""
    if prompt.silent or cont.silent:
        return {m: 0.0 for m in MEASURES}
    return {"harmony": _pearson(prompt.chroma, cont.chroma),
            "rhythm": _pearson(prompt.acf, cont.acf),
            "timbre": _pearson(prompt.timbre, cont.timbre),
            "repetition": _repetition(prompt.frames, cont.frames)}


def reflect(a: float, truth: float) -> float:
    """Agreement beyond the truth's counts as a shortfall of the same size."""
    return a if a <= truth else 2 * truth - a


def coherence(candidate: list[dict[str, float]], truth: list[dict[str, float]],
              floor: list[dict[str, float]], reflected: bool = True) -> dict[str, float]:
    """Per measure and ``overall``: (mean reflected candidate - mean floor) /
    (mean truth - mean floor), over clips; overall is the mean of the measures clipped to
    [0, 1]. ``reflected=False`` scores agreement as it is (the floor row itself: 0). NaN for
    a measure whose truth does not beat its floor (the measure says
    nothing on these clips)."""
    if not (len(candidate) == len(truth) == len(floor)) or not truth:
        raise ValueError("coherence needs one candidate, truth and floor agreement per clip")
    out = {}
    for m in MEASURES:
        t = float(np.mean([d[m] for d in truth]))
        f = float(np.mean([d[m] for d in floor]))
        c = float(np.mean([reflect(g[m], tr[m]) if reflected else g[m]
                           for g, tr in zip(candidate, truth)]))
        out[m] = (c - f) / (t - f) if t - f > 1e-6 else float("nan")
    vals = [min(1.0, max(0.0, out[m])) for m in MEASURES if not math.isnan(out[m])]
    out["overall"] = float(np.mean(vals)) if vals else float("nan")
    return out
