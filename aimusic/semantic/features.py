"""Frame features at the semantic token rate (one frame per ``hop`` samples).

Iteration 1 clusters hand-made features: MFCCs with deltas (the spectral envelope and its
motion: onsets, articulation) and a chroma vector (energy per pitch class: harmony and
melody, whatever the instrument). Iteration 2's transformer reads log-mel frames at four
times the token rate, stacked four to a token.

``onset_flags`` marks the tokens in which a note starts (a peak of the spectral flux):
a model with ``onsets`` adds that flag to its tokens, so they say when notes are struck as
well as which.

Frame t covers samples centred on t * hop (torch.stft with centre padding), and a signal
of T samples has T // hop frames, so tokens line up with the codec's frames: token t is
codec frames 3t..3t+2 at hop 960 vs 320.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from aimusic.dsp import hann_window, librosa_filters, mel_basis, tensor_cache


@tensor_cache
def chroma_basis(sr: int, n_fft: int) -> torch.Tensor:
    # pitch classes from A0 up; below ~55 Hz a 4096-point FFT cannot separate semitones
    fb = librosa_filters("chroma", sr=sr, n_fft=n_fft, n_chroma=12, ctroct=5.0, octwidth=2.0)
    return torch.from_numpy(fb).float()  # [12, n_fft // 2 + 1]


@tensor_cache
def _dct(n_in: int, n_out: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix [n_out, n_in] (MFCCs from log mel)."""
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    n = torch.arange(n_in, dtype=torch.float64)[None, :]
    m = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    m[0] /= math.sqrt(2.0)
    return m.float()


def power_spectrogram(x: torch.Tensor, n_fft: int, hop: int, frames: int) -> torch.Tensor:
    """|STFT|^2 [B, bins, frames], centred frames, the first ``frames`` of them."""
    if x.shape[-1] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[-1]))
    spec = torch.stft(x, n_fft, hop_length=hop, window=hann_window(n_fft).to(x.device),
                      center=True, return_complex=True)
    return spec.abs().pow(2)[..., :frames]


def deltas(f: torch.Tensor) -> torch.Tensor:
    """Centred first difference along frames of f [B, n, D] (edges repeated)."""
    padded = torch.cat([f[:, :1], f, f[:, -1:]], dim=1)
    return (padded[:, 2:] - padded[:, :-2]) / 2


def handmade(x: torch.Tensor, sr: int, hop: int, n_mfcc: int = 13, n_mels: int = 64,
             mfcc_fft: int = 2048, chroma_fft: int = 4096, orders: int = 2,
             chroma: bool = True) -> torch.Tensor:
    """x [B, T] -> [B, T // hop, (1 + orders) * n_mfcc + 12]: MFCC, its first ``orders``
    differences (deltas, delta-deltas), chroma (zeros, not computed, when ``chroma`` is
    False: a model that gives it no weight keeps its layout without its cost)."""
    x = x.float()
    frames = x.shape[-1] // hop
    mel = mel_basis(sr, mfcc_fft, n_mels).to(x.device) @ power_spectrogram(x, mfcc_fft, hop, frames)
    mfcc = (_dct(n_mels, n_mfcc).to(x.device) @ torch.log(mel + 1e-8)).transpose(1, 2)
    blocks = [mfcc]
    for _ in range(orders):
        blocks.append(deltas(blocks[-1]))
    if not chroma:
        return torch.cat([*blocks, mfcc.new_zeros(*mfcc.shape[:2], 12)], dim=-1)
    pc = chroma_basis(sr, chroma_fft).to(x.device) @ power_spectrogram(x, chroma_fft, hop, frames)
    # each frame's chroma as shares of its energy: pitch classes, not loudness
    pc = (pc / (pc.sum(1, keepdim=True) + 1e-8)).transpose(1, 2)
    return torch.cat([*blocks, pc], dim=-1)


def log_mel(x: torch.Tensor, sr: int, hop: int, stack: int = 4, n_mels: int = 80) -> torch.Tensor:
    """x [B, T] -> [B, T // hop, stack * n_mels]: log-mel frames at ``stack`` times the
    token rate (window 4x their hop), grouped ``stack`` to a token."""
    x = x.float()
    frames = x.shape[-1] // hop
    sub = hop // stack
    n_fft = 4 * sub
    mel = mel_basis(sr, n_fft, n_mels).to(x.device) @ power_spectrogram(x, n_fft, sub, frames * stack)
    lm = torch.log(mel.clamp_min(1e-10) + 1e-5).transpose(1, 2)  # [B, frames*stack, n_mels]
    return lm.reshape(x.shape[0], frames, stack * n_mels)


# -- onsets ---------------------------------------------------------------------------

ONSET_HOP_SECONDS = 0.01  # the onset envelope's frames: 100/s
ONSET_FFT_SECONDS = 0.04
ONSET_MELS = 64
ONSET_WINDOW_SECONDS = 0.5  # running mean and deviation of the peak picker
ONSET_DELTA = 0.5  # a peak must rise this many running deviations above the running mean
ONSET_FLOOR = 5.0  # and above this much flux (a struck piano note: 15-100; vibrato: < 2)


def onset_hop(sr: int) -> int:
    """Samples between the onset envelope's frames."""
    return max(1, round(ONSET_HOP_SECONDS * sr))


def onset_fft(sr: int) -> int:
    """The onset envelope's window: the power of two nearest 40 ms."""
    return 1 << max(6, round(math.log2(ONSET_FFT_SECONDS * sr)))


def spectral_flux(mel: torch.Tensor) -> torch.Tensor:
    """Mel power [..., bands, frames] -> onset strength [..., frames - 1]: the rectified rise
    of log-mel from frame to frame, summed over bands; the level is normalised by each
    input's mean, so a quiet and a loud take of a passage give the same envelope. Value i
    is the rise into frame i + 1."""
    rel = mel / (mel.mean((-2, -1), keepdim=True) + 1e-10)
    return torch.relu(torch.diff(torch.log1p(1000 * rel), dim=-1)).sum(-2)


def onset_envelope(x: torch.Tensor, sr: int) -> torch.Tensor:
    """Audio [..., T] -> onset strength [..., T // hop] at ``ONSET_HOP_SECONDS`` (hop =
    that many samples): ``spectral_flux`` of a 64-band mel spectrogram."""
    hop = onset_hop(sr)
    n_fft = onset_fft(sr)
    mel = mel_basis(sr, n_fft, ONSET_MELS).to(x.device) @ power_spectrogram(
        x.float(), n_fft, hop, x.shape[-1] // hop + 1)
    return spectral_flux(mel)


def onset_flags(x: torch.Tensor, sr: int, hop: int, delta: float = ONSET_DELTA) -> torch.Tensor:
    """Audio [B, T] -> bool [B, T // hop]: True for the tokens (centred on t * hop) in which
    an onset falls. An onset is a local maximum of ``onset_envelope`` that stands ``delta``
    running deviations above its running mean (0.5 s windows) and ``ONSET_FLOOR`` above
    zero: a struck note, wherever the music's loudness sits, and not the flicker of a held
    one."""
    env = onset_envelope(x, sr)  # [B, F]
    h = onset_hop(sr)
    n = x.shape[-1] // hop
    out = torch.zeros(x.shape[0], n, dtype=torch.bool, device=x.device)
    if env.shape[-1] < 3 or n == 0:
        return out
    k = max(1, round(ONSET_WINDOW_SECONDS / ONSET_HOP_SECONDS)) | 1  # odd: centred
    pool = lambda v: F.avg_pool1d(v[:, None], k, 1, k // 2, count_include_pad=False)[:, 0]  # noqa: E731
    mean = pool(env)
    dev = (pool(env * env) - mean * mean).clamp_min(0).sqrt()
    left = F.pad(env[:, :-1], (1, 0))
    right = F.pad(env[:, 1:], (0, 1))
    peak = (env > mean + delta * dev) & (env > ONSET_FLOOR) & (env > left) & (env >= right)
    b, i = peak.nonzero(as_tuple=True)
    t = torch.div((i + 1) * h + hop // 2, hop, rounding_mode="floor")  # onset sample -> token
    keep = t < n
    out[b[keep], t[keep]] = True
    return out
