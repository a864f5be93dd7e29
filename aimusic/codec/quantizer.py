"""Residual vector quantizer with EMA codebooks, k-means init and dead-code replacement.

Level l quantizes what levels 0..l-1 left over. The math lives in small pure functions
(``kmeans``, ``nearest``, ``ema_update``) with direct tests; the modules hold state.
Under torch.distributed the codebook statistics are summed over processes, so every
rank keeps the same codebooks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code for each row of x [N, D] in codebook [K, D] -> [N]."""
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is the same for every code
    d = codebook.pow(2).sum(1)[None, :] - 2 * x @ codebook.t()
    return d.argmin(dim=1)


def kmeans(x: torch.Tensor, k: int, iters: int = 10, generator=None) -> torch.Tensor:
    """Centroids [k, D] of x [N, D]: k-means++ seeding, then Lloyd iterations.

    With fewer points than centroids, points are reused with a little noise; the
    dead-code replacement during training spreads them out.
    """
    n, _ = x.shape
    x = x.float()
    # k-means++ seeding: each next centroid drawn in proportion to squared distance
    first = torch.randint(n, (1,), generator=generator)
    centroids = [x[first]]
    d2 = (x - centroids[0]).pow(2).sum(1)
    for _ in range(1, min(k, n)):
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        idx = torch.multinomial(probs, 1, generator=generator)
        centroids.append(x[idx])
        d2 = torch.minimum(d2, (x - x[idx]).pow(2).sum(1))
    c = torch.cat(centroids)
    if c.shape[0] < k:  # too few points: reuse them, jittered
        extra = x[torch.randint(n, (k - c.shape[0],), generator=generator)]
        scale = x.std(0, keepdim=True).clamp_min(1e-6) * 0.01
        c = torch.cat([c, extra + scale * torch.randn(extra.shape, generator=generator)])
    for _ in range(iters):
        assign = nearest(x, c)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).float()
        moved = counts > 0
        c[moved] = sums[moved] / counts[moved, None]
    return c


def ema_update(
    cluster_size: torch.Tensor,
    embed_sum: torch.Tensor,
    counts: torch.Tensor,
    sums: torch.Tensor,
    decay: float,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Update EMA statistics in place and return the new codebook [K, D].

    counts [K] and sums [K, D] are this batch's assignment counts and vector sums.
    Laplace smoothing keeps unused codes from dividing by zero.
    """
    cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
    embed_sum.mul_(decay).add_(sums, alpha=1 - decay)
    n = cluster_size.sum()
    smoothed = (cluster_size + eps) / (n + cluster_size.numel() * eps) * n
    return embed_sum / smoothed[:, None]


class VectorQuantizer(nn.Module):
    """One codebook of ``size`` entries of dimension ``dim``.

    A code is dead when its EMA usage falls below ``dead_fraction`` of the average code's:
    relative, so the rule means the same for any batch size.
    """

    embed: torch.Tensor  # [size, dim]
    cluster_size: torch.Tensor  # [size] EMA usage
    embed_sum: torch.Tensor  # [size, dim] EMA of assigned vectors' sums
    initted: torch.Tensor

    def __init__(self, dim: int, size: int, decay: float = 0.99, dead_fraction: float = 0.05):
        super().__init__()
        self.size, self.decay, self.dead_fraction = size, decay, dead_fraction
        self.register_buffer("embed", torch.randn(size, dim))
        self.register_buffer("cluster_size", torch.zeros(size))
        self.register_buffer("embed_sum", torch.zeros(size, dim))
        self.register_buffer("initted", torch.zeros((), dtype=torch.bool))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, D] -> codes [N]."""
        return nearest(x, self.embed)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.embed[codes]

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """k-means initialisation from the first batch (rank 0's, shared with the others)."""
        c = kmeans(x, self.size)
        if _dist():
            dist.broadcast(c, 0)
        per_code = x.shape[0] / self.size  # the usage every code would have if all were equal
        self.embed.copy_(c)
        self.embed_sum.copy_(c * per_code)
        self.cluster_size.fill_(per_code)
        self.initted.fill_(True)

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        """EMA step from vectors x [N, D] and their codes, then replace dead codes."""
        counts = torch.bincount(codes, minlength=self.size).float()
        sums = torch.zeros_like(self.embed).index_add_(0, codes, x.float())
        if _dist():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.embed.copy_(ema_update(self.cluster_size, self.embed_sum, counts, sums, self.decay))
        self.replace_dead(x)

    @torch.no_grad()
    def replace_dead(self, x: torch.Tensor) -> int:
        """Codes whose EMA usage fell under the threshold restart at random batch vectors."""
        mean = self.cluster_size.mean()
        dead = self.cluster_size < self.dead_fraction * mean
        n_dead = int(dead.sum())
        if n_dead == 0 or x.shape[0] == 0:
            return 0
        pick = x[torch.randint(x.shape[0], (n_dead,), device=x.device)].float()
        if _dist():
            dist.broadcast(pick, 0)
        self.embed[dead] = pick
        self.embed_sum[dead] = pick * mean
        self.cluster_size[dead] = mean
        return n_dead


class ResidualVQ(nn.Module):
    """``levels`` quantizers in sequence. Latents are [B, D, F]; codes are [B, K, F]."""

    def __init__(self, dim: int, levels: int, size: int, decay: float = 0.99):
        super().__init__()
        self.levels = levels
        self.layers = nn.ModuleList(VectorQuantizer(dim, size, decay) for _ in range(levels))

    def vq(self, level: int) -> VectorQuantizer:
        return self.layers[level]  # type: ignore[return-value]

    def forward(
        self, z: torch.Tensor, n_levels: torch.Tensor | int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize z [B, D, F] with ``n_levels`` per item ([B] tensor or int; all if None).

        Returns (quantized [B, D, F] with straight-through gradient, codes [B, K, F],
        commitment loss). In training mode the codebooks learn (k-means init, EMA).
        Levels an item does not use contribute nothing and are not learned from.
        """
        B, D, F = z.shape
        if n_levels is None:
            n_levels = self.levels
        if isinstance(n_levels, int):
            n_levels = torch.full((B,), n_levels, device=z.device)
        x = z.detach().transpose(1, 2).reshape(B * F, D).float()  # [B*F, D]
        per_row = n_levels.repeat_interleave(F)  # [B*F]
        residual = x
        quantized = torch.zeros_like(x)
        codes = []
        for level in range(self.levels):
            vq = self.vq(level)
            active = per_row > level
            if self.training and not bool(vq.initted):
                vq.init_from(residual[active] if active.any() else residual)
            c = vq.encode(residual)
            q = vq.decode(c)
            if self.training and active.any():
                vq.update(residual[active], c[active])
                q = vq.decode(c)
            mask = active[:, None].to(q.dtype)
            quantized = quantized + q * mask
            residual = residual - q * mask
            codes.append(c.reshape(B, F))
        q_out = quantized.reshape(B, F, D).transpose(1, 2).to(z.dtype)
        commit = (z - q_out).pow(2).mean()
        return z + (q_out - z).detach(), torch.stack(codes, 1), commit

    @torch.no_grad()
    def encode(self, z: torch.Tensor, n_levels: int) -> torch.Tensor:
        """z [B, D, F] -> codes [B, n_levels, F]."""
        B, D, F = z.shape
        residual = z.transpose(1, 2).reshape(B * F, D).float()
        codes = []
        for level in range(n_levels):
            c = self.vq(level).encode(residual)
            residual = residual - self.vq(level).decode(c)
            codes.append(c.reshape(B, F))
        return torch.stack(codes, 1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, F] (any K <= levels) -> quantized latents [B, D, F]."""
        B, K, F = codes.shape
        q = self.vq(0).decode(codes[:, 0])  # [B, F, D]
        for k in range(1, K):
            q = q + self.vq(k).decode(codes[:, k])
        return q.transpose(1, 2)
