"""The obviously-right oracle (a batch-size-1 loop) and a check of the fast kernels against it,
for users to run on their own model."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..utils import takes_logits
from .batch import _selection, per_sample_dots, per_sample_grads, per_sample_sq_norms
from .engine import cross_entropy


def reference_per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, params="all",
                               loss_fn=cross_entropy) -> dict:
    """The obviously-right oracle: one backward pass per sample (batch-size-1 loop). Slow."""
    sel = _selection(model, params, x)
    out = {n: [] for n in sel.names}
    for i in range(x.shape[0]):
        loss = loss_fn(model(x[i:i + 1]), y[i:i + 1]).sum()
        grads = torch.autograd.grad(loss, sel.params, allow_unused=True)
        for n, p, g in zip(sel.names, sel.params, grads, strict=True):
            out[n].append(torch.zeros_like(p) if g is None else g)
    return {n: torch.stack(v) for n, v in out.items()}


@takes_logits
def check_kernels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, params="all", loss_fn=cross_entropy,
                  rtol: float | None = None, kernels: dict | None = None) -> dict:
    """Compare every fast per-sample path with the batch-size-1 oracle on one batch.

    Put the model in eval mode first (and in float64 for a tight comparison). Returns a
    dict with ``max_rel_error`` and per-parameter relative errors of the gradients, norms
    and dots; raises ``AssertionError`` when ``rtol`` is given and exceeded, printing
    which parameter is off.
    """
    sel = _selection(model, params, x)
    ref = reference_per_sample_grads(model, x, y, params=sel, loss_fn=loss_fn)
    fast = per_sample_grads(model, x, y, params=sel, loss_fn=loss_fn, kernels=kernels)
    gen = torch.Generator().manual_seed(0)
    vec = {n: torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p)
           for n, p in zip(sel.names, sel.params, strict=True)}
    ref_flat = torch.cat([ref[n].reshape(x.shape[0], -1) for n in sel.names], 1)
    ref_sq = (ref_flat * ref_flat).sum(1)
    ref_dot = ref_flat @ torch.cat([vec[n].reshape(-1) for n in sel.names])
    errors = {}
    for n in sel.names:
        diff = (fast[n] - ref[n]).norm() / ref[n].norm().clamp_min(1e-300)
        errors[f"grad:{n}"] = float(diff)
    sq = per_sample_sq_norms(model, x, y, params=sel, loss_fn=loss_fn, kernels=kernels)
    dot = per_sample_dots(model, x, y, vec, params=sel, loss_fn=loss_fn, kernels=kernels)
    errors["sq_norms"] = float(((sq - ref_sq).abs() / ref_sq.abs().clamp_min(1e-300)).max())
    errors["dots"] = float((dot - ref_dot).abs().max() / ref_dot.abs().max().clamp_min(1e-300))
    worst = max(errors.values())
    if rtol is not None and worst > rtol:
        lines = "\n".join(f"  {k}: {v:.3e}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1]))
        raise AssertionError(f"per-sample kernels disagree with the batch-size-1 reference "
                             f"(max relative error {worst:.3e} > {rtol:.1e}):\n{lines}")
    return {"max_rel_error": worst, "errors": errors}
