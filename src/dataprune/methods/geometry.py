"""Geometry-based selection on the surrogate's penultimate-layer embeddings, per class.

The embedding of a sample is the input of the classifier head at the last checkpoint
(eval mode). Greedy selectors (herding, k-center) return their selection order as a score:
within each class, the first sample picked scores 1 and the last ``1/n_c``, so keeping
the top scores of a class keeps a prefix of its greedy selection (use
``policy="class_balanced"``). Every score is float64 (N,), **higher = keep**.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import get_targets, iter_batches
from ..grads import find_classifier
from ..grads.lastlayer import project
from ..trajectory import as_checkpoints, load_state
from ..utils import model_dtype, resolve_device
from .common import example_batch, orient, prepare_model


@torch.no_grad()
def embeddings(model, checkpoints, dataset, *, batch_size: int = 512, device=None,
               num_workers: int = 0, dims: int | None = None, dtype=torch.float64) -> torch.Tensor:
    """Penultimate features (N, D), ``dtype`` (float64) on the CPU, at the last checkpoint. With ``dims``
    and D > dims: projected to ``dims`` columns by a fixed Gaussian random matrix (seed 0, scaled by
    1/sqrt(dims)), which keeps distances within a few per cent (Johnson-Lindenstrauss) at a fraction of
    the memory (ImageNet, ResNet-50: 1.28M x 2048 -> x 128)."""
    device = resolve_device(device)
    work = prepare_model(model, device)
    ck = as_checkpoints(checkpoints)[-1]
    load_state(work, ck.state, what=f"checkpoint at epoch {ck.epoch}")
    _, head = find_classifier(work, example_batch(dataset, device, model_dtype(work)))
    feats = []
    proj = []

    def keep(m, inp, out):
        feats.append(project(inp[0].reshape(inp[0].shape[0], -1), dims, proj).to(dtype).cpu())

    handle = head.register_forward_hook(keep)
    try:
        for _, x, _ in iter_batches(dataset, np.arange(len(dataset)), batch_size, num_workers=num_workers,
                                    device=device, dtype=model_dtype(work)):
            work(x)
    finally:
        handle.remove()
    return torch.cat(feats)


def _per_class(labels, fn, n):
    out = np.zeros(n)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out[idx] = fn(idx)
    return out


def _order_to_score(order: np.ndarray, size: int) -> np.ndarray:
    score = np.empty(size)
    score[order] = 1.0 - np.arange(size) / size
    return score


def herding_order(x: torch.Tensor) -> np.ndarray:
    """Greedy herding (Welling 2009; Chen et al. 2010): each step adds the sample that brings the
    running mean of the selected embeddings closest to the mean of all of them."""
    n = x.shape[0]
    mu = x.mean(0)
    total = torch.zeros_like(mu)
    free = torch.ones(n, dtype=torch.bool)
    order = []
    for t in range(1, n + 1):
        # || mu - (total + x_j) / t ||  for every candidate j
        dist = torch.linalg.vector_norm(mu - (total + x) / t, dim=1)
        dist[~free] = torch.inf
        j = int(torch.argmin(dist))
        order.append(j)
        free[j] = False
        total += x[j]
    return np.asarray(order)


def kcenter_order(x: torch.Tensor) -> np.ndarray:
    """Greedy k-center (Sener & Savarese, ICLR 2018): start at the sample nearest the mean, then
    repeatedly add the sample farthest from everything selected so far."""
    n = x.shape[0]
    first = int(torch.argmin(torch.linalg.vector_norm(x - x.mean(0), dim=1)))
    mind = torch.linalg.vector_norm(x - x[first], dim=1)
    order = [first]
    mind[first] = -1
    for _ in range(n - 1):
        j = int(torch.argmax(mind))
        order.append(j)
        mind = torch.minimum(mind, torch.linalg.vector_norm(x - x[j], dim=1))
        mind[order] = -1
    return np.asarray(order)


def _features(model, checkpoints, dataset, batch_size, device, num_workers, features):
    if features is not None:
        feats = torch.as_tensor(np.asarray(features), dtype=torch.float64)
        if feats.shape[0] != len(dataset):
            raise ValueError(f"features has {feats.shape[0]} rows but the dataset has {len(dataset)} samples")
        return feats
    return embeddings(model, checkpoints, dataset, batch_size=batch_size, device=device, num_workers=num_workers)


def herding_score(model, checkpoints, dataset, *, features=None, batch_size: int = 512, device=None,
                  num_workers: int = 0) -> np.ndarray:
    """Herding selection order within each class, as a score in (0, 1]; higher = picked earlier = keep.

    ``features`` (N, D) replaces the surrogate's embeddings when given.
    """
    x = _features(model, checkpoints, dataset, batch_size, device, num_workers, features)
    labels = get_targets(dataset)
    return _per_class(labels, lambda idx: _order_to_score(herding_order(x[idx]), len(idx)), len(labels))


def kcenter_score(model, checkpoints, dataset, *, features=None, batch_size: int = 512, device=None,
                  num_workers: int = 0) -> np.ndarray:
    """k-Center greedy selection order within each class, as a score in (0, 1]; higher = keep."""
    x = _features(model, checkpoints, dataset, batch_size, device, num_workers, features)
    labels = get_targets(dataset)
    return _per_class(labels, lambda idx: _order_to_score(kcenter_order(x[idx]), len(idx)), len(labels))


def moderate_score(model, checkpoints, dataset, *, features=None, batch_size: int = 512, device=None,
                   num_workers: int = 0) -> np.ndarray:
    """Moderate-DS (Xia et al., ICLR 2023): keep samples at a moderate distance from their class.

    The distance of each sample to its class's mean embedding; the score is
    ``-|d - median_c(d)|``, so keeping the top scores keeps the band around the median
    distance, neither the most typical nor the most atypical samples.
    """
    x = _features(model, checkpoints, dataset, batch_size, device, num_workers, features)
    labels = get_targets(dataset)

    def band(idx):
        d = torch.linalg.vector_norm(x[idx] - x[idx].mean(0), dim=1).numpy()
        return -np.abs(d - np.median(d))

    return _per_class(labels, band, len(labels))


def kmeans(x: torch.Tensor, k: int, seed: int = 0, iters: int = 50) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding; returns the centroids (k, D)."""
    n = x.shape[0]
    k = min(k, n)
    g = torch.Generator().manual_seed(seed)
    centers = [x[int(torch.randint(n, (1,), generator=g))]]
    for _ in range(1, k):
        d2 = torch.cdist(x, torch.stack(centers)).min(1).values ** 2
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full((n,), 1.0 / n, dtype=x.dtype)
        centers.append(x[int(torch.multinomial(probs, 1, generator=g))])
    c = torch.stack(centers)
    for _ in range(iters):
        assign = torch.cdist(x, c).argmin(1)
        new = torch.stack([x[assign == j].mean(0) if (assign == j).any() else c[j] for j in range(k)])
        if torch.allclose(new, c):
            break
        c = new
    return c


def ssp_score(model, checkpoints, dataset, *, clusters: int = 1, keep: str = "hard", seed: int = 0,
              features=None, batch_size: int = 512, device=None, num_workers: int = 0) -> np.ndarray:
    """Prototypicality as in Sorscher et al. (NeurIPS 2022), per class: the distance of each sample's
    embedding to the nearest of ``clusters`` k-means centroids of its class.

    Far from every prototype = hard = kept first (``keep="hard"``, the paper's rule when
    data are plentiful); ``keep="easy"`` keeps the most prototypical samples (the paper's
    rule for small budgets).
    """
    x = _features(model, checkpoints, dataset, batch_size, device, num_workers, features)
    labels = get_targets(dataset)

    def dist(idx):
        c = kmeans(x[idx], clusters, seed=seed + int(labels[idx[0]]))
        return torch.cdist(x[idx], c).min(1).values.numpy()

    return orient(_per_class(labels, dist, len(labels)), keep)
