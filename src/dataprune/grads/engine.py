"""Batched gradient computations over a dataset at fixed weights.

* :func:`gradient_sum` -- sum (or per-group sums) of per-sample gradients, one ordinary
  backward pass per batch;
* :func:`per_sample_terms` -- per-sample ``||g_i||^2`` and ``g_i . v`` for a fixed ``v``
  (or a per-group ``v``), streaming over batches: memory never grows with N beyond
  the N-length outputs.

Backends: ``"hooks"`` (per-layer kernels, the default), ``"functorch"`` (vmap over the
whole model, materialising a chunk x P gradient matrix; works for any model) and, for
dots only, ``"jvp"`` (forward-mode: one forward pass with tangent v gives g_i . v).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import iter_batches
from ..utils import model_dtype, progress_bar
from .capture import LayerCapture, ParamSelection
from .registry import row_chunks

BACKENDS = ("hooks", "functorch", "jvp")


class NonFiniteLossWarning(UserWarning):
    """Some samples have a NaN or infinite loss; they are left out of gradient sums."""


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy, shape ``(B,)``: the default loss."""
    return F.cross_entropy(logits, targets, reduction="none")


def _finite_rows(losses: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(losses)


def gradient_sum(model: nn.Module, dataset, indices, selection: ParamSelection, *, loss_fn=cross_entropy,
                 batch_size: int = 256, device=None, groups: np.ndarray | None = None, num_groups: int = 1,
                 dtype=torch.float64, num_workers: int = 0, progress: bool = False, desc: str = "mean grad"):
    """Sum of per-sample gradients over ``dataset[indices]``.

    Returns ``(sums, counts, bad)``: ``sums`` maps each selected parameter name to a
    tensor ``(num_groups, *shape)`` in ``dtype``; ``counts`` is ``(num_groups,)`` int;
    ``bad`` lists dataset positions whose loss was not finite (excluded).
    With ``groups`` (one group id per *dataset* position, e.g. the label), each
    sample's gradient goes to its group's sum; batches are most efficient when
    ``indices`` is sorted by group.
    """
    sums = {n: torch.zeros((num_groups,) + tuple(p.shape), dtype=dtype, device=device)
            for n, p in zip(selection.names, selection.params)}
    counts = np.zeros(num_groups, dtype=np.int64)
    bad = []
    bar = progress_bar(total=len(indices), desc=desc, enabled=progress, unit="img")
    for idx, x, y in iter_batches(dataset, indices, batch_size, num_workers=num_workers, device=device,
                                      dtype=model_dtype(model)):
        b = len(idx)
        with torch.enable_grad():
            losses = loss_fn(model(x), y)
            finite = _finite_rows(losses.detach())
            if not bool(finite.all()):
                bad += idx[~finite.cpu().numpy()].tolist()
                if not bool(finite.any()):
                    bar.update(b)
                    continue
                # Re-run the finite rows so no NaN flows back through the graph.
                keep = finite.nonzero().squeeze(1)
                x, y, idx = x[keep], y[keep], idx[keep.cpu().numpy()]
                losses = loss_fn(model(x), y)
            g_ids = np.zeros(len(idx), dtype=np.int64) if groups is None else groups[idx]
            for gid in np.unique(g_ids):
                sel = g_ids == gid
                part = losses.sum() if sel.all() else losses[torch.from_numpy(sel).to(losses.device)].sum()
                grads = torch.autograd.grad(part, selection.params, allow_unused=True,
                                            retain_graph=not sel.all())
                for n, g in zip(selection.names, grads):
                    if g is not None:
                        sums[n][gid] += g.to(dtype)
                counts[gid] += int(sel.sum())
        bar.update(b)
    bar.close()
    return sums, counts, bad


def _flatten(grads: dict, names) -> torch.Tensor:
    return torch.cat([grads[n].reshape(grads[n].shape[0], -1) for n in names], 1)


def _functorch_terms(model, selection, x, y, loss_fn, vec_flat, need_sq, need_dot, group_rows):
    """Per-sample terms from per-sample gradients materialised by vmap (chunked)."""
    from torch.func import functional_call, grad, vmap

    params = {n: p.detach() for n, p in zip(selection.names, selection.params)}
    buffers = dict(model.named_buffers())

    def loss_one(p, xi, yi):
        out = functional_call(model, {**p, **buffers}, (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0)).sum()

    per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))
    b = x.shape[0]
    sq = torch.zeros(b, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
    dot = torch.zeros_like(sq)
    for rows in row_chunks(b, selection.num_params):
        g = _flatten(per_sample(params, x[rows], y[rows]), selection.names)
        if need_sq:
            sq[rows] = (g * g).sum(1).to(sq.dtype)
        if need_dot:
            v = vec_flat[group_rows[rows]] if group_rows is not None else vec_flat[0]
            dot[rows] = ((g * v).sum(1) if v.dim() == 2 else g @ v).to(dot.dtype)
    return sq, dot


def _jvp_dots(model, selection, x, y, loss_fn, vecs):
    """``g_i . v`` for the batch by one forward-mode pass (tangent v on the selected params)."""
    from torch.func import functional_call, jvp

    params = {n: p.detach() for n, p in zip(selection.names, selection.params)}
    tangents = {n: vecs[n].to(params[n].dtype) for n in selection.names}
    buffers = dict(model.named_buffers())

    def f(p):
        return loss_fn(functional_call(model, {**p, **buffers}, (x,)), y)

    _, dots = jvp(f, (params,), (tangents,))
    return dots


def per_sample_terms(model: nn.Module, dataset, indices, selection: ParamSelection, *,
                     vectors: dict | None = None, groups: np.ndarray | None = None,
                     need_sq: bool = True, need_dot: bool = True, loss_fn=cross_entropy,
                     batch_size: int = 256, device=None, backend: str = "hooks", num_workers: int = 0,
                     progress: bool = False, desc: str = "per-sample"):
    """Per-sample squared gradient norms and dot products with ``vectors`` over ``dataset[indices]``.

    Parameters
    ----------
    vectors : dict name -> tensor ``(G, *param.shape)``
        The fixed vector(s) ``v``. With ``groups`` (group id per dataset position) sample
        i is dotted with ``v[groups[i]]``; otherwise with ``v[0]``.

    Returns
    -------
    dict with ``sq`` and ``dot`` (float64 arrays aligned with ``indices``, or None),
    ``loss`` (per-sample loss), ``bad`` (positions with non-finite loss; their terms are
    NaN) and ``layer_dot_sums`` (sum over samples of each layer's share of the dot,
    used to verify that the per-sample gradients add up to the batch gradient).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "jvp" and need_sq:
        raise ValueError("backend='jvp' computes dot products only; squared norms need 'hooks' or "
                         "'functorch'")
    n = len(indices)
    sq_out = np.full(n, np.nan) if need_sq else None
    dot_out = np.full(n, np.nan) if need_dot else None
    loss_out = np.full(n, np.nan)
    layer_sums: dict = {}
    bad = []
    vec_flat = None
    if need_dot and backend == "functorch":
        vec_flat = torch.cat([vectors[nm].reshape(vectors[nm].shape[0], -1) for nm in selection.names], 1)
    pos = 0
    bar = progress_bar(total=n, desc=desc, enabled=progress, unit="img")
    capture = LayerCapture(model, selection) if backend == "hooks" else None
    if capture is not None:
        capture.__enter__()
    try:
        for idx, x, y in iter_batches(dataset, indices, batch_size, num_workers=num_workers, device=device,
                                      dtype=model_dtype(model)):
            b = len(idx)
            rows = slice(pos, pos + b)
            pos += b
            g_ids = None if groups is None else torch.from_numpy(groups[idx]).to(x.device)
            if backend == "hooks":
                losses, _ = capture.forward_backward(x, y, loss_fn)
                finite = torch.isfinite(losses)
                if not bool(finite.all()):
                    capture.records.clear()
                    bad += idx[~finite.cpu().numpy()].tolist()
                    keep = finite.nonzero().squeeze(1)
                    sub = _terms_subset(model, selection, capture, x[keep], y[keep], loss_fn, vectors,
                                        None if g_ids is None else g_ids[keep], need_sq, need_dot, layer_sums)
                    _store(sq_out, dot_out, loss_out, rows, keep.cpu().numpy(), sub)
                else:
                    sub = _hook_stats(capture, vectors, g_ids, need_sq, need_dot, b, losses, layer_sums)
                    _store(sq_out, dot_out, loss_out, rows, np.arange(b), sub)
            else:
                with torch.no_grad():
                    losses = loss_fn(model(x), y)
                finite = torch.isfinite(losses)
                keep = finite.nonzero().squeeze(1)
                if not bool(finite.all()):
                    bad += idx[~finite.cpu().numpy()].tolist()
                xs, ys = x[keep], y[keep]
                gk = None if g_ids is None else g_ids[keep]
                if backend == "functorch":
                    s, d = _functorch_terms(model, selection, xs, ys, loss_fn, vec_flat, need_sq, need_dot, gk)
                else:
                    d = _jvp_grouped(model, selection, xs, ys, loss_fn, vectors, gk)
                    s = None
                _store(sq_out, dot_out, loss_out, rows, keep.cpu().numpy(),
                       (s if need_sq else None, d if need_dot else None, losses[keep]))
            bar.update(b)
    finally:
        if capture is not None:
            capture.__exit__(None, None, None)
        bar.close()
    if bad:
        warnings.warn(f"{len(bad)} sample(s) have a non-finite loss (dataset positions "
                      f"{sorted(bad)[:20]}{' ...' if len(bad) > 20 else ''}); their per-sample terms "
                      "are NaN and they are left out of the sums", NonFiniteLossWarning, stacklevel=3)
    return {"sq": sq_out, "dot": dot_out, "loss": loss_out, "bad": sorted(bad), "layer_dot_sums": layer_sums}


def _jvp_grouped(model, selection, x, y, loss_fn, vectors, g_ids):
    if g_ids is None:
        return _jvp_dots(model, selection, x, y, loss_fn, {n: v[0] for n, v in vectors.items()})
    out = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for gid in torch.unique(g_ids):
        rows = (g_ids == gid).nonzero().squeeze(1)
        out[rows] = _jvp_dots(model, selection, x[rows], y[rows], loss_fn,
                              {n: v[int(gid)] for n, v in vectors.items()}).to(out.dtype)
    return out


def _hook_stats(capture, vectors, g_ids, need_sq, need_dot, b, losses, layer_sums):
    dtype, device = losses.dtype, losses.device
    if not need_dot or g_ids is None or bool((g_ids == g_ids[0]).all()):
        gid = 0 if g_ids is None else int(g_ids[0])
        vecs = None if not need_dot else {n: v[gid] for n, v in vectors.items()}
        sq, dot, lsums = capture.stats(vecs, need_sq, need_dot, b, dtype, device)
        _add_layer_sums(layer_sums, lsums)
        return sq, dot, losses
    # Mixed groups in one batch: norms once, then dots per group on the rows of that group.
    sq = dot = None
    records = {m: list(r) for m, r in capture.records.items()}
    if need_sq:
        sq, _, _ = capture.stats(None, True, False, b, dtype, device)
    dot = torch.zeros(b, dtype=dtype, device=device)
    for gid in torch.unique(g_ids):
        rows = (g_ids == gid).nonzero().squeeze(1)
        capture.records = {m: [_subset_record(r, rows) for r in recs] for m, recs in records.items()}
        _, d, lsums = capture.stats({n: v[int(gid)] for n, v in vectors.items()}, False, True,
                                    len(rows), dtype, device)
        dot[rows] = d
        _add_layer_sums(layer_sums, lsums)
    capture.records = {}
    return sq, dot, losses


def _subset_record(r, rows):
    from .capture import _Record

    b = r.grad_out.shape[0]
    inputs = tuple(t[rows] if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == b else t
                   for t in r.inputs)
    return _Record(inputs, r.output, r.in_versions, r.out_version, r.grad_out[rows])


def _terms_subset(model, selection, capture, x, y, loss_fn, vectors, g_ids, need_sq, need_dot, layer_sums):
    if x.shape[0] == 0:
        z = torch.zeros(0, dtype=torch.float64)
        return z, z, z
    losses, _ = capture.forward_backward(x, y, loss_fn)
    return _hook_stats(capture, vectors, g_ids, need_sq, need_dot, x.shape[0], losses, layer_sums)


def _store(sq_out, dot_out, loss_out, rows, keep, result):
    s, d, losses = result
    base = np.arange(rows.start, rows.stop)[keep]
    if sq_out is not None and s is not None:
        sq_out[base] = s.detach().double().cpu().numpy()
    if dot_out is not None and d is not None:
        dot_out[base] = d.detach().double().cpu().numpy()
    loss_out[base] = losses.detach().double().cpu().numpy()


def _add_layer_sums(acc, lsums):
    for m, (signed, absolute) in lsums.items():
        old = acc.get(m, (0.0, 0.0))
        acc[m] = (old[0] + float(signed), old[1] + float(absolute))
