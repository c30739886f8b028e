"""Batched gradient computations over a dataset at fixed weights.

* :func:`gradient_sum` -- sum (or per-group sums) of per-sample gradients, one ordinary
  backward pass per batch;
* :func:`per_sample_terms` -- per-sample ``||g_i||^2`` and ``g_i . v`` for a fixed ``v``
  (or a per-group ``v``), and optionally the gradient sum in the same pass, streaming
  over batches: memory never grows with N beyond the N-length outputs.

Backends: ``"hooks"`` (per-layer kernels, the default), ``"functorch"`` (vmap over the
whole model, materialising a chunk x P gradient matrix; works for any model) and, for
dots only, ``"jvp"`` (forward-mode: one forward pass with tangent v gives g_i . v).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import iter_batches
from ..utils import model_dtype, progress_bar
from .base import row_chunks
from .capture import LayerCapture, ParamSelection, _Record

BACKENDS = ("hooks", "functorch", "jvp")


class NonFiniteLossWarning(UserWarning):
    """Some samples have a NaN or infinite loss; they are left out of gradient sums."""


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy, shape ``(B,)``: the default loss."""
    return F.cross_entropy(logits, targets, reduction="none")


def _group_ids(groups, idx, device, b):
    if groups is None:
        return torch.zeros(b, dtype=torch.long, device=device)
    return torch.from_numpy(np.asarray(groups[idx], dtype=np.int64)).to(device)


def gradient_sum(model: nn.Module, dataset, indices, selection: ParamSelection, *, loss_fn=cross_entropy,
                 batch_size: int = 256, device=None, groups: np.ndarray | None = None, num_groups: int = 1,
                 dtype=torch.float64, num_workers: int = 0, progress: bool = False, desc: str = "mean grad"):
    """Sum of per-sample gradients over ``dataset[indices]`` by ordinary backward passes.

    Returns ``(sums, counts, bad)``: ``sums`` maps each selected parameter name to a
    tensor ``(num_groups, *shape)`` in ``dtype``; ``counts`` is ``(num_groups,)`` int;
    ``bad`` lists dataset positions whose loss was not finite (excluded).
    With ``groups`` (one group id per *dataset* position, e.g. the label), each
    sample's gradient goes to its group's sum; batches are cheapest when ``indices`` is
    sorted by group.
    """
    sums = {n: torch.zeros((num_groups,) + tuple(p.shape), dtype=dtype, device=device)
            for n, p in zip(selection.names, selection.params, strict=True)}
    counts = np.zeros(num_groups, dtype=np.int64)
    bad = []
    bar = progress_bar(total=len(indices), desc=desc, enabled=progress, unit="img")
    for idx, x, y in iter_batches(dataset, indices, batch_size, num_workers=num_workers, device=device,
                                  dtype=model_dtype(model)):
        b = len(idx)
        with torch.enable_grad():
            losses = loss_fn(model(x), y)
            finite = torch.isfinite(losses.detach())
            if not bool(finite.all()):
                bad += idx[~finite.cpu().numpy()].tolist()
                if not bool(finite.any()):
                    bar.update(b)
                    continue
                # Re-run the finite rows so that no NaN flows back through the graph.
                keep = finite.nonzero().squeeze(1)
                x, y, idx = x[keep], y[keep], idx[keep.cpu().numpy()]
                losses = loss_fn(model(x), y)
            g_ids = np.zeros(len(idx), dtype=np.int64) if groups is None else groups[idx]
            present = np.unique(g_ids)
            for gid in present:
                sel = g_ids == gid
                part = losses.sum() if len(present) == 1 else losses[torch.from_numpy(sel).to(losses.device)].sum()
                grads = torch.autograd.grad(part, selection.params, allow_unused=True,
                                            retain_graph=len(present) > 1)
                for n, g in zip(selection.names, grads, strict=True):
                    if g is not None:
                        sums[n][gid] += g.to(dtype)
                counts[gid] += int(sel.sum())
        bar.update(b)
    bar.close()
    return sums, counts, bad


def _functorch_grads(model, selection, x, y, loss_fn):
    """Per-sample gradients (B, P) of the selected parameters by vmap, in chunks (a generator)."""
    from torch.func import functional_call, grad, vmap

    params = {n: p.detach() for n, p in zip(selection.names, selection.params, strict=True)}
    buffers = dict(model.named_buffers())

    def loss_one(p, xi, yi):
        out = functional_call(model, {**p, **buffers}, (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0)).sum()

    per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))
    for rows in row_chunks(x.shape[0], selection.num_params):
        g = per_sample(params, x[rows], y[rows])
        yield rows, torch.cat([g[n].reshape(g[n].shape[0], -1) for n in selection.names], 1)


def _jvp_dots(model, selection, x, y, loss_fn, vecs):
    """``g_i . v`` for the batch by one forward-mode pass (tangent v on the selected params)."""
    from torch.func import functional_call, jvp

    params = {n: p.detach() for n, p in zip(selection.names, selection.params, strict=True)}
    tangents = {n: vecs[n].to(params[n].dtype) for n in selection.names}
    buffers = dict(model.named_buffers())

    def f(p):
        return loss_fn(functional_call(model, {**p, **buffers}, (x,)), y)

    _, dots = jvp(f, (params,), (tangents,))
    return dots


@dataclass
class SampleTerms:
    """One streaming pass's per-sample results, aligned with the ``indices`` it was given.

    ``sq`` and ``dot`` are (n,) float64 (or None when not asked for); a position whose loss was not
    finite holds NaN there and is listed (as a dataset position) in ``bad``. ``loss`` is (n,).
    ``layer_dot_sums`` maps each module to the sum over samples of its share of the dots and of
    their absolute values (hooks backend: checks that per-sample gradients add up).
    """

    sq: np.ndarray | None
    dot: np.ndarray | None
    loss: np.ndarray
    bad: list = field(default_factory=list)
    layer_dot_sums: dict = field(default_factory=dict)
    probs: np.ndarray | None = None     # (n, C) float32 softmax outputs of the same forward pass, if asked


class _Accumulator:
    """Collects one pass's per-sample outputs, aligned with ``indices``."""

    def __init__(self, n, need_sq, need_dot, need_probs=False):
        self.n = n
        self.sq = np.full(n, np.nan) if need_sq else None
        self.dot = np.full(n, np.nan) if need_dot else None
        self.loss = np.full(n, np.nan)
        self.need_probs = need_probs
        self.probs = None
        self.layer_sums: dict = {}
        self.bad: list[int] = []

    def store_probs(self, rows: np.ndarray, logits):
        if not self.need_probs:
            return
        if self.probs is None:
            self.probs = np.full((self.n, logits.shape[1]), np.nan, dtype=np.float32)
        self.probs[rows] = torch.softmax(logits.detach().float(), 1).cpu().numpy()

    def store(self, rows: np.ndarray, sq, dot, losses):
        if self.sq is not None and sq is not None:
            self.sq[rows] = sq.detach().double().cpu().numpy()
        if self.dot is not None and dot is not None:
            self.dot[rows] = dot.detach().double().cpu().numpy()
        self.loss[rows] = losses.detach().double().cpu().numpy()

    def add_layer_sums(self, lsums):
        for m, (signed, absolute) in lsums.items():
            old = self.layer_sums.get(m, (0.0, 0.0))
            self.layer_sums[m] = (old[0] + float(signed), old[1] + float(absolute))


def per_sample_terms(model: nn.Module, dataset, indices, selection: ParamSelection, *,
                     vectors: dict | None = None, groups: np.ndarray | None = None,
                     need_sq: bool = True, need_dot: bool = True, loss_fn=cross_entropy,
                     batch_size: int = 256, device=None, backend: str = "hooks", num_workers: int = 0,
                     progress: bool = False, desc: str = "per-sample", kernels: dict | None = None,
                     need_probs: bool = False) -> SampleTerms:
    """Per-sample squared gradient norms and dot products with ``vectors``, streaming over batches.

    Parameters
    ----------
    vectors : dict name -> tensor ``(G, *param.shape)``
        The fixed vector(s) ``v``. With ``groups`` (group id per dataset position) sample
        i is dotted with ``v[groups[i]]``; otherwise with ``v[0]``.

    kernels : dict, optional
        Per-call overrides of the kernel registry, ``{module type: kernel}``.
    need_probs : bool
        Also keep the softmax of the pass's own logits (``probs``, (n, C) float32): the
        surrogate's predictions at these weights, at no extra forward pass.

    Returns
    -------
    :class:`SampleTerms`
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "jvp" and need_sq:
        raise ValueError("backend='jvp' computes dot products only; squared norms need 'hooks' or 'functorch'")
    acc = _Accumulator(len(indices), need_sq, need_dot, need_probs)
    flat_vecs = None
    if need_dot and backend == "functorch":
        flat_vecs = torch.cat([vectors[nm].reshape(vectors[nm].shape[0], -1) for nm in selection.names], 1)
    pos = 0
    bar = progress_bar(total=len(indices), desc=desc, enabled=progress, unit="img")
    capture = LayerCapture(model, selection, kernels=kernels) if backend == "hooks" else None
    try:
        if capture is not None:
            capture.__enter__()
        for idx, x, y in iter_batches(dataset, indices, batch_size, num_workers=num_workers, device=device,
                                      dtype=model_dtype(model)):
            b = len(idx)
            rows = np.arange(pos, pos + b)
            pos += b
            g_ids = _group_ids(groups, idx, x.device, b)
            if backend == "hooks":
                losses, logits = capture.forward_backward(x, y, loss_fn)
                acc.store_probs(rows, logits)
                finite = torch.isfinite(losses)
                if not bool(finite.all()):
                    # Re-run the finite rows only, so that no NaN reaches a kernel.
                    acc.bad += idx[~finite.cpu().numpy()].tolist()
                    keep = finite.nonzero().squeeze(1)
                    rows, x, y, g_ids = rows[keep.cpu().numpy()], x[keep], y[keep], g_ids[keep]
                    losses = capture.forward_backward(x, y, loss_fn)[0] if len(keep) else losses[:0]
                if len(rows):
                    _hook_batch(capture, acc, rows, losses, vectors, g_ids, need_sq, need_dot)
                capture.records.clear()
            else:
                with torch.no_grad():
                    logits = model(x)
                    losses = loss_fn(logits, y)
                acc.store_probs(rows, logits)
                finite = torch.isfinite(losses)
                if not bool(finite.all()):
                    acc.bad += idx[~finite.cpu().numpy()].tolist()
                keep = finite.nonzero().squeeze(1)
                rows, x, y, g_ids, losses = rows[keep.cpu().numpy()], x[keep], y[keep], g_ids[keep], losses[keep]
                if backend == "functorch":
                    _functorch_batch(model, selection, acc, rows, x, y, losses, loss_fn, flat_vecs, g_ids,
                                     need_sq, need_dot)
                else:
                    d = torch.zeros(len(rows), dtype=losses.dtype, device=losses.device)
                    for gid in torch.unique(g_ids):
                        sel = (g_ids == gid).nonzero().squeeze(1)
                        d[sel] = _jvp_dots(model, selection, x[sel], y[sel], loss_fn,
                                           {nm: v[int(gid)] for nm, v in vectors.items()}).to(d.dtype)
                    acc.store(rows, None, d, losses)
            bar.update(b)
    finally:
        if capture is not None:
            capture.__exit__(None, None, None)
        bar.close()
    if acc.bad:
        bad = sorted(acc.bad)
        warnings.warn(f"{len(bad)} sample(s) have a non-finite loss (dataset positions "
                      f"{bad[:20]}{' ...' if len(bad) > 20 else ''}); their per-sample terms "
                      "are NaN and they are left out of the sums", NonFiniteLossWarning, stacklevel=3)
    return SampleTerms(acc.sq, acc.dot, acc.loss, sorted(acc.bad), acc.layer_sums, acc.probs)


def _hook_batch(capture, acc, rows, losses, vectors, g_ids, need_sq, need_dot):
    """Kernel statistics of one captured batch."""
    dtype, device, b = losses.dtype, losses.device, len(rows)
    present = torch.unique(g_ids)
    if len(present) == 1 or not need_dot:
        vecs = {n: v[int(present[0])] for n, v in vectors.items()} if need_dot else None
        sq, dot, lsums = capture.stats(vecs, need_sq=need_sq, need_dot=need_dot, batch=b, dtype=dtype, device=device)
        acc.add_layer_sums(lsums)
        acc.store(rows, sq, dot, losses)
        return
    # Mixed groups in one batch: norms once, then dots per group on that group's rows.
    records = {m: list(r) for m, r in capture.records.items()}
    sq = capture.stats(need_sq=True, need_dot=False, batch=b, dtype=dtype, device=device).sq if need_sq else None
    dot = torch.zeros(b, dtype=dtype, device=device)
    for gid in present:
        sel = (g_ids == gid).nonzero().squeeze(1)
        capture.records = {m: [_subset_record(r, sel) for r in recs] for m, recs in records.items()}
        _, d, lsums = capture.stats({n: v[int(gid)] for n, v in vectors.items()}, need_sq=False, need_dot=True,
                                    batch=len(sel), dtype=dtype, device=device)
        dot[sel] = d
        acc.add_layer_sums(lsums)
    acc.store(rows, sq, dot, losses)


def _subset_record(r, rows):
    b = r.grad_out.shape[0]
    inputs = tuple(t[rows] if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == b else t
                   for t in r.inputs)
    return _Record(inputs, r.output, r.in_versions, r.out_version, r.grad_out[rows])


def _functorch_batch(model, selection, acc, rows, x, y, losses, loss_fn, flat_vecs, g_ids, need_sq, need_dot):
    sq = torch.zeros(len(rows), dtype=torch.float64, device=x.device)
    dot = torch.zeros_like(sq)
    for chunk, g in _functorch_grads(model, selection, x, y, loss_fn):
        if need_sq:
            sq[chunk] = (torch.linalg.vector_norm(g, dim=1) ** 2).double()
        if need_dot:
            dot[chunk] = torch.linalg.vecdot(g, flat_vecs[g_ids[chunk]].to(g.dtype)).double()
    acc.store(rows, sq if need_sq else None, dot if need_dot else None, losses)
