"""SEANet-style convolutional encoder and decoder (as in SoundStream and EnCodec).

Encoder: conv -> [residual units, strided conv] per ratio -> conv to the latent dimension.
Decoder mirrors it with transposed convs. Weight norm on every conv. No recurrent layer,
so the receptive field is finite: that is what lets a long file stream through fixed
chunks and give exactly the samples a whole-file pass gives.

``causal=True`` pads only on the left, so output at time t never sees input after t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class Conv(nn.Module):
    """Conv1d with 'same'-length padding (all on the left when causal), weight-normed.

    With stride s a [B, C, T] input (T a multiple of s) gives [B, C', T / s].
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(cin, cout, kernel, stride, dilation=dilation))
        pad = (kernel - 1) * dilation - (stride - 1)
        self.pad = (pad, 0) if causal else (pad - pad // 2, pad // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.pad(x, self.pad))


class ConvTranspose(nn.Module):
    """Upsampling by ``stride`` with kernel 2 * stride; [B, C, T] -> [B, C', T * stride]."""

    def __init__(self, cin: int, cout: int, stride: int, causal: bool = False) -> None:
        super().__init__()
        self.conv = weight_norm(nn.ConvTranspose1d(cin, cout, 2 * stride, stride))
        # the transposed conv makes T * s + s samples; trim s (all on the right when causal)
        self.trim = (0, stride) if causal else (stride - stride // 2, stride // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        left, right = self.trim
        return y[..., left : y.shape[-1] - right]


class ResidualUnit(nn.Module):
    """x + conv1x1(elu(conv_k,dilated(elu(x)))), with the hidden width halved."""

    def __init__(self, channels: int, dilation: int, kernel: int = 3, causal: bool = False):
        super().__init__()
        hidden = channels // 2
        self.block = nn.Sequential(
            nn.ELU(),
            Conv(channels, hidden, kernel, dilation=dilation, causal=causal),
            nn.ELU(),
            Conv(hidden, channels, 1, causal=causal),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _units(channels: int, dilations: tuple[int, ...], causal: bool) -> list[nn.Module]:
    return [ResidualUnit(channels, d, causal=causal) for d in dilations]


class Encoder(nn.Module):
    """[B, 1, T] audio -> [B, dim, T / (patch * prod(ratios))] latent frames.

    ``patch`` folds that many consecutive samples into channels first (space-to-depth),
    so every conv runs at a lower rate with more channels: on a CPU, convs of a few
    channels at 24 kHz are bound by memory traffic, not arithmetic.
    """

    def __init__(
        self,
        channels: int,
        ratios: tuple[int, ...],
        dim: int,
        dilations: tuple[int, ...] = (1, 3, 9),
        causal: bool = False,
        patch: int = 1,
    ) -> None:
        super().__init__()
        self.patch = patch
        layers: list[nn.Module] = [Conv(patch, channels, 7, causal=causal)]
        c = channels
        for r in ratios:
            layers += _units(c, dilations, causal)
            layers += [nn.ELU(), Conv(c, 2 * c, 2 * r, stride=r, causal=causal)]
            c *= 2
        layers += [nn.ELU(), Conv(c, dim, 3, causal=causal)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, T = x.shape
        if self.patch > 1:  # [B, 1, T] -> [B, patch, T / patch]
            x = x.reshape(B, T // self.patch, self.patch).transpose(1, 2)
        return self.net(x)


def frame_stft(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor,
               frames: int) -> torch.Tensor:
    """Audio [B, 1, T] -> complex STFT [B, n_fft // 2 + 1, frames], frame f centred on
    sample f * hop (x zero-padded or cut to ``frames * hop``, and zero-padded past
    ``n_fft // 2`` samples when shorter): the frames the istft head
    writes and the spectral encoder reads."""
    x = x.squeeze(1).float()
    x = nn.functional.pad(x, (0, max(0, frames * hop - x.shape[-1])))[:, :frames * hop]
    if x.shape[-1] <= n_fft // 2:  # reflect padding needs more samples than it adds
        x = nn.functional.pad(x, (0, n_fft // 2 + 1 - x.shape[-1]))
    return torch.stft(x, n_fft, hop, n_fft, window, center=True, return_complex=True)[..., :frames]


class SpectralEncoder(nn.Module):
    """[B, 1, T] audio -> [B, dim, T / hop] latent frames, read from its STFT (the istft
    head's mirror, for speech).

    The STFT (Hann window of ``n_fft = 4 * hop``, hop ``hop``, the frames the istft head
    makes) gives each frame's log magnitudes and its power-law compressed complex spectrum
    (``|X|^0.3`` with X's phase: how loud partials line up); a 1x1 conv takes them to
    ``channels``, residual units at the frame rate mix neighbouring frames, a conv makes the
    latent. The spectral envelope the words are in (the 1-4 kHz formants) is then a linear
    read of the input, where a waveform encoder must learn its own filterbank first: the
    bundled speech codec's, trained with a magnitude loss that was blind to bins predicted
    70 dB down (most of them above 2.5 kHz), holds about half of that envelope's variance
    (BENCHMARKS.md). Each frame depends on the samples
    within ``n_fft / 2`` of its centre (``window_frames`` frames on each side) and on
    the frames its convs see.
    """

    def __init__(self, dim: int, channels: int, hop: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.hop, self.n_fft = hop, 4 * hop
        self.window_frames = 2
        bins = self.n_fft // 2 + 1
        layers: list[nn.Module] = [Conv(3 * bins, channels, 1), nn.ELU(), Conv(channels, channels, 3)]
        layers += _units(channels, dilations, False)
        layers += [nn.ELU(), Conv(channels, dim, 3)]
        self.net = nn.Sequential(*layers)
        self.window: torch.Tensor
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, T] (T a multiple of hop) -> [B, 3 * bins, T / hop]: log magnitude, and the
        real and imaginary parts of the compressed spectrum."""
        spec = frame_stft(x, self.n_fft, self.hop, self.window, x.shape[-1] // self.hop)
        mag = spec.abs()
        comp = spec * (mag.clamp_min(1e-7).pow(0.3) / mag.clamp_min(1e-7))
        return torch.cat([torch.log(mag + 1e-4), comp.real, comp.imag], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.features(x))


class Decoder(nn.Module):
    """[B, dim, F] latent frames -> [B, 1, F * patch * prod(ratios)] audio."""

    def __init__(
        self,
        channels: int,
        ratios: tuple[int, ...],
        dim: int,
        dilations: tuple[int, ...] = (1, 3, 9),
        causal: bool = False,
        patch: int = 1,
    ) -> None:
        super().__init__()
        self.patch = patch
        c = channels * 2 ** len(ratios)
        layers: list[nn.Module] = [Conv(dim, c, 7, causal=causal)]
        for r in reversed(ratios):
            layers += [nn.ELU(), ConvTranspose(c, c // 2, r, causal=causal)]
            c //= 2
            layers += _units(c, dilations, causal)
        layers += [nn.ELU(), Conv(c, patch, 7, causal=causal)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, first_frame: int = 0, track: object = None) -> torch.Tensor:
        y = self.net(z)  # (first_frame, track: unused, as for every time-invariant decoder)
        if self.patch > 1:  # [B, patch, T / patch] -> [B, 1, T]
            B, P, n = y.shape
            y = y.transpose(1, 2).reshape(B, 1, n * P)
        return y


@dataclass
class PhaseTrack:
    """Where an IF head's accumulated phase stands between chunks of one signal decoded in
    turn (``SpectralDecoder`` with ``if_phase``): ``value`` [B, bins] is the accumulated
    frequency drift at absolute frame ``frame`` (None: 0). The caller sets ``next_frame``,
    where the next chunk will take over; decoding a chunk moves the track there."""

    frame: int = 0
    value: torch.Tensor | None = None
    next_frame: int | None = None


IF_RANGE = 2.0  # an IF head's frequency, in bins from each bin's centre: a partial's main lobe


class SpectralDecoder(nn.Module):
    """[B, dim, F] latent frames -> [B, 1, F * hop] audio through an inverse STFT (as in Vocos).

    Every layer runs at the frame rate: a conv and residual units, then a 1x1 conv to a log
    magnitude and a phase for each of the ``n_fft // 2 + 1`` bins of a frame, and an inverse
    STFT (Hann window of ``n_fft = 4 * hop``, hop ``hop``) makes the waveform. A formant is
    then a few output weights per frequency bin, not a filter that transposed convs must
    learn, and it is learnt in fewer steps (BENCHMARKS.md); there is no upsampling layer to
    leave a tone at its rate. A harmonic also needs its phase to advance coherently from
    frame to frame, which mel and waveform losses alone hardly teach: training compares
    ``spectrum`` with the target's STFT bin by bin, phases included
    (``codec.train.spectrum_losses``). Output sample n depends on the frames within
    ``n_fft / 2`` of it (``window_frames`` on each side, for streaming).

    A time-invariant net given a steady latent writes the same phase in every frame, and
    an inverse STFT turns that into partials on a grid of the frame rate (75 Hz): a held
    chord comes back as the nearest multiples of 75 Hz. With ``if_phase`` the net predicts
    each bin's frequency instead (within ``IF_RANGE`` bins of its centre) and the phase is
    accumulated from it frame by frame, as a phase vocoder does, referred to each frame's
    centre so that the bins of one partial add up there: a steady partial needs a steady
    latent, at any frequency. The accumulation runs over the whole signal, so chunks
    decoded one after another carry it with a ``PhaseTrack``.
    """

    def __init__(self, dim: int, channels: int, hop: int, dilations: tuple[int, ...],
                 bin_phase: bool = False, if_phase: bool = False) -> None:
        super().__init__()
        self.hop, self.n_fft = hop, 4 * hop
        self.bin_phase, self.if_phase = bin_phase, if_phase
        self.window_frames = 2
        layers: list[nn.Module] = [Conv(dim, channels, 7)]
        layers += _units(channels, dilations, False)
        layers += [nn.ELU(), Conv(channels, self.n_fft + 2, 1)]
        self.net = nn.Sequential(*layers)
        self.window: torch.Tensor
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def spectrum(self, z: torch.Tensor, first_frame: int = 0,
                 track: PhaseTrack | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent frames [B, dim, F] -> (log magnitude, phase), each [B, n_fft // 2 + 1, F]:
        the STFT the waveform is made from (training compares it with the target's own).
        ``first_frame``: the index of z's first frame in the whole signal (with
        ``bin_phase`` or ``if_phase``, chunks decoded apart then join as one pass would;
        ``if_phase`` also needs the ``track`` of the chunk before)."""
        y = self.net(z).float()
        bins = self.n_fft // 2 + 1
        log_mag = y[:, :bins].clamp(max=8.0)  # capped: e^8 ~ 3000
        return log_mag, self.phase(y[:, bins:], first_frame, track)

    def phase(self, out: torch.Tensor, first_frame: int = 0,
              track: PhaseTrack | None = None) -> torch.Tensor:
        """The net's phase outputs [B, bins, F] -> the phases [B, bins, F] of the frames
        from ``first_frame`` on: as they are, relative to each bin's steady advance
        (``bin_phase``), or accumulated from each bin's frequency (``if_phase``: ``out``
        says by how many bins, up to ``IF_RANGE`` through a tanh, it lies off the bin's
        centre)."""
        bins, F = out.shape[-2:]
        phase = out
        if self.bin_phase or self.if_phase:
            # the phase a steady sinusoid at bin k's centre has in frame t is its start phase
            # plus 2 pi k t hop / n_fft = (pi / 2) k t (kept exact: k t mod 4)
            k = torch.arange(bins, device=out.device)[:, None]
            t = torch.arange(first_frame, first_frame + F, device=out.device)[None, :]
            centre = ((k * t) % 4).float() * (math.pi / 2)
        if self.bin_phase:
            # the net predicts the rest, which is constant for such a partial, so a steady
            # tone adds up coherently across frames (at the bin's centre frequency)
            phase = phase + centre
        elif self.if_phase:
            # the net predicts each bin's frequency; a partial delta bins off the centre
            # advances (pi / 2) delta more per frame, accumulated from the track's anchor
            drift = accumulate(torch.tanh(out) * (IF_RANGE * math.pi / 2), first_frame, track)
            # phases refer to a frame's first sample, n_fft / 2 before its centre: -pi k
            phase = drift + centre - math.pi * (k % 2).float()
        return phase

    def analyze(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """Audio [B, 1, T] -> its complex STFT [B, n_fft // 2 + 1, frames] in this head's
        window, hop and frames (x zero-padded or cut to ``frames * hop``): the target that
        ``spectrum`` is trained towards, and what diagnoses put in its place."""
        return frame_stft(x, self.n_fft, self.hop, self.window, frames)

    def synthesize(self, log_mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """(log magnitude, phase) [B, bins, F] -> audio [B, 1, F * hop] (inverse STFT)."""
        spec = torch.polar(log_mag.exp(), phase)
        audio = torch.istft(spec, self.n_fft, self.hop, self.n_fft, self.window, center=True,
                            length=phase.shape[-1] * self.hop)
        return audio.unsqueeze(1)

    def forward(self, z: torch.Tensor, first_frame: int = 0,
                track: PhaseTrack | None = None) -> torch.Tensor:
        return self.synthesize(*self.spectrum(z, first_frame, track))


def accumulate(advance: torch.Tensor, first_frame: int = 0,
               track: PhaseTrack | None = None) -> torch.Tensor:
    """Per-frame phase advances [B, bins, F] -> the accumulated phase [B, bins, F]: 0 in
    the first frame (frame t holds the advances of frames 1..t), or, with a ``track``,
    ``track.value`` at absolute frame ``track.frame`` (within these frames). The track then
    moves to ``track.next_frame`` where that is set, so the next chunk goes on from there."""
    total = torch.cumsum(advance.double(), dim=-1)  # float64: a long chunk's sum stays exact
    j, value = 0, None
    if track is not None:
        j, value = track.frame - first_frame, track.value
        if not 0 <= j < advance.shape[-1]:
            raise ValueError(f"the phase track's frame {track.frame} is not among frames "
                             f"{first_frame}..{first_frame + advance.shape[-1] - 1}")
    drift = total - total[..., j:j + 1]
    if value is not None:
        drift = drift + value[..., None]
    if track is not None and track.next_frame is not None:
        n = track.next_frame - first_frame
        # kept within one turn: the chunks of a long signal never add up to a large angle
        track.value = torch.remainder(drift[..., n], 2 * math.pi).detach()
        track.frame, track.next_frame = track.next_frame, None
    return torch.remainder(drift, 2 * math.pi).float()
