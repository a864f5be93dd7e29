"""Multi-scale STFT discriminator (as in EnCodec): one 2-D conv net per STFT resolution,
reading the real and imaginary parts. Returns logits and feature maps for the hinge and
feature-matching losses."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class STFTDiscriminator(nn.Module):
    window: torch.Tensor

    def __init__(self, n_fft: int, channels: int = 32) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        c = channels
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(2, c, (3, 9), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), dilation=(2, 1), padding=(2, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), dilation=(4, 1), padding=(4, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
        ])
        self.out = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x [B, 1, T] -> (logits [B, 1, frames, bins'], feature maps)."""
        spec = torch.stft(x.squeeze(1).float(), self.n_fft, self.n_fft // 4,
                          window=self.window, return_complex=True)
        h = torch.stack([spec.real, spec.imag], 1).transpose(2, 3)  # [B, 2, frames, bins]
        feats = []
        for conv in self.convs:
            h = nn.functional.leaky_relu(conv(h), 0.2)
            feats.append(h)
        return self.out(h), feats


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, n_ffts: tuple[int, ...] = (2048, 1024, 512), channels: int = 32):
        super().__init__()
        self.discs = nn.ModuleList(STFTDiscriminator(n, channels) for n in n_ffts)

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [d(x) for d in self.discs]


def hinge_d_loss(real: list, fake: list) -> torch.Tensor:
    """Discriminator hinge loss averaged over scales."""
    loss = torch.zeros(())
    for r, f in zip(real, fake):
        loss = loss + torch.relu(1 - r[0]).mean() + torch.relu(1 + f[0]).mean()
    return loss / len(real)


def hinge_g_loss(fake: list) -> torch.Tensor:
    loss = torch.zeros(())
    for f in fake:
        loss = loss + torch.relu(1 - f[0]).mean()
    return loss / len(fake)


def feature_matching_loss(real: list, fake: list) -> torch.Tensor:
    """L1 between feature maps of real and generated audio, relative to the real maps' scale."""
    total, n = torch.zeros(()), 0
    for (_, fr), (_, ff) in zip(real, fake):
        for a, b in zip(fr, ff):
            total = total + (a.detach() - b).abs().mean() / (a.detach().abs().mean() + 1e-5)
            n += 1
    return total / n
