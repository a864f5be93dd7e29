"""k-means in torch, shared by the codec's codebook initialisation and the semantic tokenizer.

Pure functions over tensors: ``nearest`` (assignment), ``kmeans_pp`` (seeding in
proportion to squared distance), ``kmeans`` (seeding then Lloyd iterations, for a batch
that fits at once) and ``minibatch_kmeans`` (Sculley's web-scale k-means: per-centroid
learning rates 1/count, for more frames than one pass should hold). Every random draw
takes a ``torch.Generator`` so results repeat.
"""

from __future__ import annotations

import torch


def nearest(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Index of the nearest centroid for each row of x [N, D] in centroids [K, D] -> [N]."""
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is the same for every centroid
    c2 = centroids.pow(2).sum(1)[None, :]
    if x.shape[0] <= chunk:
        return (c2 - 2 * x @ centroids.t()).argmin(dim=1)
    return torch.cat([(c2 - 2 * x[i: i + chunk] @ centroids.t()).argmin(dim=1)
                      for i in range(0, x.shape[0], chunk)])


def kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k-means++ seeds: min(k, N) rows of x [N, D], each next one drawn with probability
    proportional to its squared distance from the seeds so far."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    seeds = [first]
    d2 = (x - x[first]).pow(2).sum(1)
    for _ in range(1, min(k, n)):
        total = d2.sum()
        probs = d2 / total if total > 0 else torch.full_like(d2, 1.0 / n)
        idx = int(torch.multinomial(probs.cpu(), 1, generator=generator))
        seeds.append(idx)
        d2 = torch.minimum(d2, (x - x[idx]).pow(2).sum(1))
    return x[seeds].clone()


def lloyd(x: torch.Tensor, centroids: torch.Tensor, iters: int) -> torch.Tensor:
    """Lloyd iterations from ``centroids``; a centroid that loses all its points stays put."""
    c = centroids.clone()
    for _ in range(iters):
        assign = nearest(x, c)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=c.shape[0]).to(x.dtype)
        moved = counts > 0
        c[moved] = sums[moved] / counts[moved, None]
    return c


def kmeans(x: torch.Tensor, k: int, iters: int = 10, generator: torch.Generator | None = None
           ) -> torch.Tensor:
    """Centroids [min(k, N), D] of x [N, D]: k-means++ seeding, then Lloyd iterations."""
    x = x.float()
    return lloyd(x, kmeans_pp(x, k, generator), iters)


def minibatch_kmeans(
    x: torch.Tensor,
    k: int,
    steps: int = 200,
    batch: int = 4096,
    init_points: int = 20_000,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mini-batch k-means of x [N, D] -> [k, D].

    k-means++ on a random subset of ``init_points`` rows, then ``steps`` batches: each
    batch row pulls its nearest centroid towards it with rate 1/(times that centroid was
    picked), so a centroid's value is the running mean of its points. A centroid still
    unpicked at the end is moved to the batch row farthest from its centroid, so none is
    wasted.
    """
    x = x.float()
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means needs at least k={k} points, got {n}")
    sub = x[torch.randperm(n, generator=generator)[: max(init_points, k)]]
    c = kmeans_pp(sub, k, generator)
    counts = torch.zeros(k, dtype=x.dtype)
    for _ in range(steps):
        b = x[torch.randint(n, (min(batch, n),), generator=generator)]
        assign = nearest(b, c)
        picked = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(c).index_add_(0, assign, b)
        counts += picked
        hit = picked > 0
        # c <- c + (sum_b - picked * c) / counts: the exact running mean of all points seen
        c[hit] += (sums[hit] - picked[hit, None] * c[hit]) / counts[hit, None]
    dead = (counts == 0).nonzero().flatten()
    if dead.numel():
        b = x[torch.randint(n, (min(batch, n),), generator=generator)]
        far = (b - c[nearest(b, c)]).pow(2).sum(1).argsort(descending=True)
        c[dead] = b[far[: dead.numel()]]
    return c
