"""Last-layer gradients in closed form: one forward pass per checkpoint.

For a classifier head ``z = W a + b`` the per-sample gradient is ``g_i = delta_i [a_i, 1]^T``
with ``delta_i = dloss/dz`` (``softmax(z_i) - onehot(y_i)`` for cross-entropy). So

* the gradient sum is ``sum_i delta_i [a_i, 1]^T`` (C x (D+1));
* ``||g_i||^2 = ||delta_i||^2 (||a_i||^2 + 1)``;
* ``g_i . V = delta_i^T V [a_i, 1]``.

The features ``a_i`` and ``delta_i`` of all samples are kept (N x (D + C) numbers) when they
fit in ``cache_mb``, so the dots need no second pass; otherwise the forward is run twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import iter_batches
from ..utils import model_dtype, progress_bar
from .engine import cross_entropy

# Default memory budget of the last-layer feature cache (MB): one constant for every caller.
CACHE_MB = 256


@dataclass
class LastLayerTerms:
    """Per-group mean-gradient norms and per-sample terms of a classifier head over ``dataset[indices]``.

    ``gbar_sq`` (G,) each group's squared mean-gradient norm over the selected parameters (weight, bias);
    ``counts`` (G,) samples with a finite loss per group; ``sq``/``dot`` (n,) float64 aligned
    with ``indices`` (``dot`` against the group *mean* gradient; NaN where the loss is not
    finite); ``loss`` (n,); ``probs`` (n, C) float32 softmax outputs when asked for; ``features`` (n, D')
    float32 head inputs (projected to at most ``feature_dims`` columns) when asked for; ``bad`` the dataset
    positions whose loss was not finite.
    """

    gbar_sq: np.ndarray
    counts: np.ndarray
    sq: np.ndarray | None
    dot: np.ndarray | None
    loss: np.ndarray
    probs: np.ndarray | None = None
    bad: list = field(default_factory=list)
    features: np.ndarray | None = None


def project(a: torch.Tensor, dims: int | None, cache: list) -> torch.Tensor:
    """``a`` (B, D), or with ``dims`` and D > dims its projection onto ``dims`` columns by a fixed Gaussian
    random matrix (seed 0, scaled by 1/sqrt(dims)); ``cache``, a list, keeps the matrix between batches. The one
    projection of penultimate features, wherever they are read (:func:`dataprune.methods.geometry.embeddings`,
    the head-scoring pass)."""
    if dims is None or a.shape[1] <= dims:
        return a
    if not cache:
        g = torch.Generator().manual_seed(0)
        cache.append((torch.randn(a.shape[1], dims, generator=g, dtype=torch.float64) / dims ** 0.5)
                     .to(device=a.device, dtype=a.dtype))
    return a @ cache[0]


def _head_pass(model, head: nn.Linear, dataset, indices, loss_fn, batch_size, device, num_workers,
               progress, desc):
    """Yield ``(idx, a (B, D), delta (B, C), losses (B,), logits (B, C))`` per batch, no autograd
    through the body."""
    captured = {}
    handle = head.register_forward_hook(lambda m, inp, out: captured.__setitem__("a", inp[0]))
    bar = progress_bar(total=len(indices), desc=desc, enabled=progress, unit="img")
    try:
        for idx, x, y in iter_batches(dataset, indices, batch_size, num_workers=num_workers, device=device,
                                      dtype=model_dtype(model)):
            with torch.no_grad():
                logits = model(x)
            a = captured.pop("a")
            if a.dim() != 2:
                raise ValueError(f"the classifier's input has shape {tuple(a.shape)}; the closed-form "
                                 "last-layer mode needs (B, D). Use params=[names of the head] instead.")
            if loss_fn is cross_entropy:
                losses = F.cross_entropy(logits, y, reduction="none")
                delta = torch.softmax(logits, 1)
                delta[torch.arange(len(y), device=delta.device), y] -= 1
            else:
                z = logits.detach().requires_grad_(True)
                with torch.enable_grad():
                    losses = loss_fn(z, y)
                    (delta,) = torch.autograd.grad(losses.sum(), z)
                losses = losses.detach()
            bar.update(len(idx))
            yield idx, a, delta, losses, logits
    finally:
        handle.remove()
        bar.close()


def last_layer_terms(model: nn.Module, head: nn.Linear, dataset, indices, *, names=("weight", "bias"),
                     loss_fn=cross_entropy, groups: np.ndarray | None = None, num_groups: int = 1,
                     need_sq: bool = True, need_dot: bool = True, need_probs: bool = False,
                     batch_size: int = 256, device=None, dtype=torch.float64, cache_mb: float = CACHE_MB,
                     num_workers: int = 0, progress: bool = False, reduce_fn=None,
                     desc: str = "last layer", feature_dims: int | None = None) -> LastLayerTerms:
    """Gradient sums and per-sample terms of the head ``head`` over ``dataset[indices]``.

    The per-sample gradient over the selected head parameters is ``delta_i f_i^T`` with the
    feature row ``f_i = [a_i, 1]`` (weight and bias), ``a_i`` (weight only) or ``[1]`` (bias
    only). ``reduce_fn(list_of_tensors)`` sums tensors across processes (distributed scoring).
    ``feature_dims``: also keep each sample's head input ``a_i`` (its penultimate features, projected to at
    most this many columns by :func:`project`), which the pass computes anyway.
    Returns a :class:`LastLayerTerms`.
    """
    use_bias = "bias" in names and head.bias is not None
    use_weight = "weight" in names
    if not (use_bias or use_weight):
        raise ValueError(f"no parameter of the classifier head is selected (names {names})")
    n = len(indices)
    c, d = head.out_features, head.in_features
    width = (d if use_weight else 0) + (1 if use_bias else 0)
    g_all = torch.zeros(num_groups, c, width, dtype=dtype, device=device)
    counts = torch.zeros(num_groups, dtype=dtype, device=device)
    sq_out = np.full(n, np.nan) if need_sq else None
    probs_out = np.full((n, c), np.nan, dtype=np.float32) if need_probs else None
    loss_out = np.full(n, np.nan)
    feats_out, proj = None, []
    bad = []
    itemsize = torch.finfo(head.weight.dtype).bits // 8
    fits = n * (width + c) * itemsize <= cache_mb * 2**20
    # The cache is two preallocated N-row buffers (one allocation each, outside the heap where
    # per-batch temporaries come and go), not a list of per-batch tensors: the latter fragments
    # the allocator and made the peak RSS grow far beyond the cache's own size.
    cache = {} if fits and need_dot else None
    pos = 0

    def features(a):
        # (B, width): [a, 1], a, or [1], matching the column layout of g_all.
        cols = ([a] if use_weight else []) + ([torch.ones_like(a[:, :1])] if use_bias else [])
        return torch.cat(cols, 1) if len(cols) > 1 else cols[0]

    for idx, a, delta, losses, logits in _head_pass(model, head, dataset, indices, loss_fn, batch_size, device,
                                                    num_workers, progress, desc):
        b = len(idx)
        rows = np.arange(pos, pos + b)
        pos += b
        if feature_dims is not None:
            f = project(a, feature_dims, proj).float().cpu().numpy()
            if feats_out is None:
                feats_out = np.zeros((n, f.shape[1]), dtype=np.float32)
            feats_out[rows] = f
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            bad += idx[~finite.cpu().numpy()].tolist()
            delta = torch.where(finite.unsqueeze(1), delta, torch.zeros_like(delta))
            a = torch.where(finite.unsqueeze(1), a, torch.zeros_like(a))
        at = features(a)
        gid = torch.zeros(b, dtype=torch.long, device=a.device) if groups is None else \
            torch.from_numpy(groups[idx]).to(a.device)
        # Sum of delta_i f_i^T per group, as one GEMM: (C, B) @ (B, width) per group.
        for g in torch.unique(gid[finite]):
            sel = (gid == g) & finite
            g_all[int(g)] += (delta[sel].t() @ at[sel]).to(dtype)
            counts[int(g)] += int(sel.sum())
        if need_sq:
            s = (delta * delta).sum(1) * (at * at).sum(1)
            s = torch.where(finite, s, torch.full_like(s, float("nan")))
            sq_out[rows] = s.double().cpu().numpy()
        if need_probs:
            probs_out[rows] = torch.softmax(logits.float(), 1).cpu().numpy()
        loss_out[rows] = torch.where(finite, losses, torch.full_like(losses, float("nan"))).double().cpu().numpy()
        if cache is not None:
            if not cache:
                cache.update(at=at.new_empty((n, at.shape[1])), delta=delta.new_empty((n, delta.shape[1])),
                             gid=gid.new_zeros(n), finite=finite.new_ones(n))
            sl = slice(rows[0], rows[-1] + 1)
            cache["at"][sl] = at
            cache["delta"][sl] = delta
            cache["gid"][sl] = gid
            cache["finite"][sl] = finite
    if reduce_fn is not None:
        reduce_fn([g_all, counts])
    # Each group's squared mean-gradient norm, one group at a time in float64 on the host (per parameter as the
    # general path sums it), then the sums divided in place into the means: one (G, C, width) array, not two (at
    # ImageNet-1k 1,000 x 1,000 x 2,049 float64 = 16 GB each).
    count_np = counts.cpu().numpy()
    gbar_sq = np.zeros(len(count_np))
    for g in range(len(count_np)):
        total = g_all[g].double().cpu().numpy()
        parts = ([total[:, :d]] if use_weight else []) + ([total[:, width - 1]] if use_bias else [])
        gbar_sq[g] = sum(float(((part / max(count_np[g], 1)).reshape(-1) ** 2).sum()) for part in parts)
    means = g_all.div_(counts.clamp_min(1).view(-1, 1, 1))
    dot_out = None
    if need_dot:
        dot_out = np.full(n, np.nan)
        batches = _from_cache(cache, batch_size) if cache else _recompute(model, head, dataset, indices, loss_fn,
                                                                           batch_size, device, num_workers, progress,
                                                                           groups, features)
        for rows, at, delta, gid, finite in batches:
            dt = torch.zeros(len(rows), dtype=at.dtype, device=at.device)
            for g in torch.unique(gid):
                sel = gid == g
                m = means[int(g)].to(at.dtype)  # (C, width)
                dt[sel] = ((at[sel] @ m.t()) * delta[sel]).sum(1)
            dt = torch.where(finite, dt, torch.full_like(dt, float("nan")))
            dot_out[rows] = dt.double().cpu().numpy()
    return LastLayerTerms(gbar_sq, count_np.round().astype(np.int64), sq_out, dot_out, loss_out,
                          probs_out, sorted(bad), feats_out)


def _from_cache(cache, batch_size):
    n = len(cache["at"])
    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))
        yield np.arange(sl.start, sl.stop), cache["at"][sl], cache["delta"][sl], cache["gid"][sl], cache["finite"][sl]


def _recompute(model, head, dataset, indices, loss_fn, batch_size, device, num_workers, progress, groups,
               features):
    pos = 0
    for idx, a, delta, losses, _ in _head_pass(model, head, dataset, indices, loss_fn, batch_size, device,
                                               num_workers, progress, "last layer (2nd pass)"):
        b = len(idx)
        finite = torch.isfinite(losses)
        at = features(torch.where(finite.unsqueeze(1), a, torch.zeros_like(a)))
        delta = torch.where(finite.unsqueeze(1), delta, torch.zeros_like(delta))
        gid = torch.zeros(b, dtype=torch.long, device=a.device) if groups is None else \
            torch.from_numpy(groups[idx]).to(a.device)
        yield np.arange(pos, pos + b), at, delta, gid, finite
        pos += b
