"""Residual vector quantizer: EMA codebooks, k-means init, dead-code restarts, factorized
lookups around a running center.

Level l quantizes what levels 0..l-1 left over. Each level subtracts a running center of
its input, projects the rest to a small ``codebook_dim`` (8) and finds the nearest code
there (the factorized lookup of the Descript codec); decoding adds the center back to the
code's projection into the latent. Codebooks learn by EMA from k-means initial values, and
codes nobody chose for ``dead_after`` batches restart at random batch vectors.

With ``codebook_dim`` equal to the latent's dimension there are no projections: plain
lookups in the latent, as SoundStream and EnCodec do, so each level shrinks the residual
the levels before it left and more levels decode closer to the encoder's latent (the
``small`` preset). Factorized lookups do not promise that: the projections learn only
from the decoder's loss, and a level can move the latent away.

Why not plain lookups without centering: early in a
CPU-sized run the encoder's output drifted to a constant offset 25 times its variation,
and level 0 spent itself on it (one code took every frame; usage entropy 0.01). Centering
removes the offset from what the codes must describe, and a small penalty on the latent's
mean (returned with the commitment loss) stops the drift, so the running center that
inference uses stays where training put it. (L2-normalized lookups, tried too, collapse
the same way whenever one direction dominates the centered latent.)

The math lives in small pure functions (``kmeans`` over aimusic.cluster, ``ema_update``); the
modules hold state. Under torch.distributed the codebook statistics are summed over
processes, so every rank keeps the same codebooks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from aimusic import cluster
from aimusic.cluster import nearest


def _dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def kmeans(x: torch.Tensor, k: int, iters: int = 10, generator=None) -> torch.Tensor:
    """Initial codebook [k, D] from x [N, D]: k-means (aimusic.cluster); with fewer points
    than codes, points are reused with a little noise, and the dead-code restarts during
    training spread them out."""
    x = x.float()
    c = cluster.kmeans(x, k, iters, generator)
    if c.shape[0] < k:  # too few points: reuse them, jittered
        extra = x[torch.randint(x.shape[0], (k - c.shape[0],), generator=generator)]
        scale = x.std(0, keepdim=True).clamp_min(1e-3) * 0.05
        c = torch.cat([c, extra + scale * torch.randn(extra.shape, generator=generator).to(x.device)])
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
    """One level: subtract the center, project ``dim`` -> ``codebook_dim``, nearest of
    ``size`` EMA codes, project back and add the center. Codes nobody chose in
    ``dead_after`` batches restart."""

    embed: torch.Tensor  # [size, codebook_dim], EMA means of projected vectors
    cluster_size: torch.Tensor  # [size] EMA usage
    embed_sum: torch.Tensor  # [size, codebook_dim]
    unused: torch.Tensor  # [size] batches since each code was last chosen
    initted: torch.Tensor
    center: torch.Tensor  # [dim] running mean of this level's input
    seen: torch.Tensor  # batches the running mean has seen

    def __init__(self, dim: int, size: int, codebook_dim: int = 8, decay: float = 0.99,
                 dead_after: int = 20) -> None:
        super().__init__()
        self.size, self.decay, self.dead_after = size, decay, dead_after
        self.in_proj: nn.Module
        self.out_proj: nn.Module
        if codebook_dim >= dim:  # plain lookups in the latent itself (SoundStream, EnCodec)
            self.in_proj = self.out_proj = nn.Identity()
            codebook_dim = dim
        else:
            self.in_proj = weight_norm(nn.Linear(dim, codebook_dim))
            self.out_proj = weight_norm(nn.Linear(codebook_dim, dim))
        self.register_buffer("embed", torch.randn(size, codebook_dim))
        self.register_buffer("cluster_size", torch.zeros(size))
        self.register_buffer("embed_sum", torch.zeros(size, codebook_dim))
        self.register_buffer("unused", torch.zeros(size, dtype=torch.long))
        self.register_buffer("initted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def track_center(self, x: torch.Tensor, momentum: float = 0.05) -> None:
        """Fold the batch mean of x [N, dim] (over all ranks under DDP) into the running
        center (a plain average at first, then an EMA)."""
        s = torch.cat([x.sum(0), x.new_tensor([x.shape[0]])]).float()
        if _dist():
            dist.all_reduce(s)
        mean = s[:-1] / s[-1].clamp_min(1)
        self.center.lerp_(mean, max(momentum, 1.0 / (int(self.seen) + 1)))
        self.seen.add_(1)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, dim] -> [N, codebook_dim]: its deviation from the center, projected."""
        return self.in_proj(x - self.center)

    def lookup(self, xn: torch.Tensor) -> torch.Tensor:
        """Projected vectors [N, codebook_dim] -> codes [N] (the nearest code)."""
        return nearest(xn, self.embed)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [...] -> vectors [..., dim]: the center plus the code's projection."""
        return self.center + self.out_proj(self.embed[codes])

    @torch.no_grad()
    def init_from(self, xn: torch.Tensor) -> None:
        """k-means initialisation from the first batch (rank 0's, shared with the others)."""
        c = kmeans(xn, self.size)
        if _dist():
            dist.broadcast(c, 0)
        per_code = max(1.0, xn.shape[0] / self.size)
        self.embed.copy_(c)
        self.embed_sum.copy_(c * per_code)
        self.cluster_size.fill_(per_code)
        self.initted.fill_(True)

    @torch.no_grad()
    def seed_statistics(self, per_code: float) -> None:
        """EMA statistics for codebooks loaded from a model file (which keeps only the codes):
        each code as if chosen ``per_code`` times, so training goes on from these codes."""
        self.cluster_size.fill_(per_code)
        self.embed_sum.copy_(self.embed * per_code)
        self.unused.zero_()
        self.initted.fill_(True)

    @torch.no_grad()
    def update(self, xn: torch.Tensor, codes: torch.Tensor) -> None:
        """EMA step from projected vectors xn [N, d] and their codes; restart dead codes."""
        counts = torch.bincount(codes, minlength=self.size).float()
        sums = torch.zeros_like(self.embed).index_add_(0, codes, xn.float())
        if _dist():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.embed.copy_(ema_update(self.cluster_size, self.embed_sum, counts, sums, self.decay))
        self.unused.add_(1).masked_fill_(counts > 0, 0)
        self.replace_dead(xn)

    @torch.no_grad()
    def replace_dead(self, xn: torch.Tensor) -> int:
        """Codes unused for ``dead_after`` batches restart at random vectors of this batch."""
        dead = self.unused >= self.dead_after
        n_dead = int(dead.sum())
        if n_dead == 0 or xn.shape[0] == 0:
            return 0
        pick = xn[torch.randint(xn.shape[0], (n_dead,), device=xn.device)].float()
        if _dist():
            dist.broadcast(pick, 0)
        mean = self.cluster_size.mean()
        self.embed[dead] = pick
        self.embed_sum[dead] = pick * mean
        self.cluster_size[dead] = mean
        self.unused[dead] = 0
        return n_dead


class ResidualVQ(nn.Module):
    """``levels`` quantizers in sequence. Latents are [B, D, F]; codes are [B, K, F]."""

    def __init__(self, dim: int, levels: int, size: int, codebook_dim: int = 8,
                 decay: float = 0.99) -> None:
        super().__init__()
        self.levels = levels
        self.layers = nn.ModuleList(
            VectorQuantizer(dim, size, codebook_dim, decay) for _ in range(levels))

    def vq(self, level: int) -> VectorQuantizer:
        return self.layers[level]  # type: ignore[return-value]

    def forward(
        self, z: torch.Tensor, n_levels: torch.Tensor | int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize z [B, D, F] with ``n_levels`` per item ([B] tensor or int; all if None).

        Returns (quantized [B, D, F] with straight-through gradients, codes [B, K, F],
        commitment loss). In training mode the codebooks learn (k-means init, EMA).
        Levels an item does not use contribute nothing and are not learned from.
        """
        B, D, F_ = z.shape
        if n_levels is None:
            n_levels = self.levels
        if isinstance(n_levels, int):
            n_levels = torch.full((B,), n_levels, device=z.device)
        per_row = n_levels.repeat_interleave(F_)  # [B*F]
        residual = z.transpose(1, 2).reshape(B * F_, D).float()
        quantized = torch.zeros_like(residual)
        commit = residual.new_zeros(())
        codes = []
        for level in range(self.levels):
            vq = self.vq(level)
            active = per_row > level
            if self.training:
                vq.track_center(residual.detach()[active] if active.any() else residual.detach())
            xn = vq.project(residual)
            if self.training and not bool(vq.initted):
                vq.init_from(xn.detach()[active] if active.any() else xn.detach())
            c = vq.lookup(xn.detach())
            if self.training and active.any():
                vq.update(xn.detach()[active], c[active])
                c = vq.lookup(xn.detach())
            cn = vq.embed[c]
            mask = active[:, None].float()
            commit = commit + ((xn - cn).pow(2) * mask).sum() / mask.sum().clamp_min(1)
            q = (vq.center + vq.out_proj(xn + (cn - xn).detach())) * mask  # straight-through
            quantized = quantized + q
            residual = residual - q
            codes.append(c.reshape(B, F_))
        out = quantized.reshape(B, F_, D).transpose(1, 2).to(z.dtype)
        # Nothing else acts on the latent's mean (centering hides it from the codes), so it
        # drifts as a side effect of learning and the running center lags behind. Keep it
        # near zero.
        offset = z.float().mean(dim=(0, 2)).pow(2).mean()
        return out, torch.stack(codes, 1), commit / self.levels + offset

    @torch.no_grad()
    def encode(self, z: torch.Tensor, n_levels: int) -> torch.Tensor:
        """z [B, D, F] -> codes [B, n_levels, F]."""
        B, D, F_ = z.shape
        residual = z.transpose(1, 2).reshape(B * F_, D).float()
        codes = []
        for level in range(n_levels):
            vq = self.vq(level)
            c = vq.lookup(vq.project(residual))
            residual = residual - vq.decode(c)
            codes.append(c.reshape(B, F_))
        return torch.stack(codes, 1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, F] (any K <= levels) -> quantized latents [B, D, F]."""
        B, K, F_ = codes.shape
        q = self.vq(0).decode(codes[:, 0])  # [B, F, D]
        for k in range(1, K):
            q = q + self.vq(k).decode(codes[:, k])
        return q.transpose(1, 2)
