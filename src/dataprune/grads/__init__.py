"""Per-sample gradient kernels: tensors in, tensors out.

Batch-level helpers (one batch ``x, y`` at fixed weights, model in eval mode):

>>> import torch, torch.nn as nn
>>> from dataprune import grads
>>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double().eval()
>>> x, y = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
>>> grads.per_sample_sq_norms(model, x, y).shape
torch.Size([5])
>>> report = grads.check_kernels(model, x, y)
>>> report["max_rel_error"] < 1e-10
True

Dataset-level streaming functions (:func:`gradient_sum`, :func:`per_sample_terms`,
:func:`last_layer_terms`) are what the scoring methods use.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .capture import LayerCapture, ParamSelection, find_classifier, select_params
from .engine import BACKENDS, NonFiniteLossWarning, cross_entropy, gradient_sum, per_sample_terms
from .lastlayer import last_layer_terms
from .registry import KERNELS, LayerKernel, kernel_for, register_kernel
from . import conv, embedding, linear, norm  # noqa: F401  (register the kernels)

__all__ = ["per_sample_grads", "per_sample_sq_norms", "per_sample_dots", "mean_gradient", "check_kernels",
           "reference_per_sample_grads", "gradient_sum", "per_sample_terms", "last_layer_terms",
           "select_params", "find_classifier", "ParamSelection", "LayerCapture", "KERNELS", "LayerKernel",
           "kernel_for", "register_kernel", "cross_entropy", "NonFiniteLossWarning", "BACKENDS"]


def _selection(model, params, x):
    return params if isinstance(params, ParamSelection) else select_params(model, params, example=x)


def per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, params="all",
                     loss_fn=cross_entropy) -> dict:
    """Per-sample gradients ``{name: (B, *param.shape)}`` from the per-layer kernels (materialised)."""
    sel = _selection(model, params, x)
    with LayerCapture(model, sel) as cap:
        cap.forward_backward(x, y, loss_fn)
        out = {}
        with torch.no_grad():
            for module, names in (sel.modules.items() if x.shape[0] else ()):
                kernel = kernel_for(module)
                for r in cap.records.get(module, []):
                    for local, g in kernel.grads(module, r.inputs, r.grad_out, names).items():
                        q = sel.qualified[(id(module), local)]
                        out[q] = out[q] + g if q in out else g
    for n, p in zip(sel.names, sel.params):
        if n not in out:  # the module did not run for this input
            out[n] = torch.zeros((x.shape[0],) + tuple(p.shape), dtype=p.dtype, device=p.device)
    return {n: out[n] for n in sel.names}


def per_sample_sq_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, params="all",
                        loss_fn=cross_entropy) -> torch.Tensor:
    """``||g_i||^2`` over the selected parameters, shape ``(B,)``, never materialising all of g_i."""
    sel = _selection(model, params, x)
    with LayerCapture(model, sel) as cap:
        losses, _ = cap.forward_backward(x, y, loss_fn)
        sq = cap.stats(None, True, False, x.shape[0], losses.dtype, losses.device)[0]
    return sq


def per_sample_dots(model: nn.Module, x: torch.Tensor, y: torch.Tensor, vector: dict, *, params="all",
                    loss_fn=cross_entropy, backend: str = "hooks") -> torch.Tensor:
    """``g_i . v`` for every sample of the batch, shape ``(B,)``; ``vector`` maps parameter name -> tensor.

    ``backend="hooks"`` uses the per-layer kernels; ``"jvp"`` one forward-mode pass.
    """
    sel = _selection(model, params, x)
    missing = [n for n in sel.names if n not in vector]
    if missing:
        raise ValueError(f"vector lacks entries for parameters {missing[:5]}")
    if backend == "jvp":
        from .engine import _jvp_dots

        return _jvp_dots(model, sel, x, y, loss_fn, vector)
    if backend != "hooks":
        raise ValueError(f"backend must be 'hooks' or 'jvp', got {backend!r}")
    with LayerCapture(model, sel) as cap:
        losses, _ = cap.forward_backward(x, y, loss_fn)
        dot = cap.stats(vector, False, True, x.shape[0], losses.dtype, losses.device)[1]
    return dot


def mean_gradient(model: nn.Module, dataset, *, params="all", loss_fn=cross_entropy, batch_size: int = 256,
                  device=None, indices=None, dtype=torch.float64) -> dict:
    """Mean per-sample gradient over a dataset, ``{name: tensor}``, one batched backward per batch."""
    idx = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    first = next(iter(_first_batch(dataset, idx, device)))
    sel = _selection(model, params, first)
    sums, counts, _ = gradient_sum(model, dataset, idx, sel, loss_fn=loss_fn, batch_size=batch_size,
                                   device=device, dtype=dtype)
    return {n: s[0] / max(int(counts[0]), 1) for n, s in sums.items()}


def _first_batch(dataset, idx, device):
    from ..data import iter_batches

    for _, x, _ in iter_batches(dataset, idx[:2], 2, device=device):
        yield x


def reference_per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, params="all",
                               loss_fn=cross_entropy) -> dict:
    """The obviously-right oracle: one backward pass per sample (batch-size-1 loop). Slow."""
    sel = _selection(model, params, x)
    out = {n: [] for n in sel.names}
    for i in range(x.shape[0]):
        loss = loss_fn(model(x[i:i + 1]), y[i:i + 1]).sum()
        grads = torch.autograd.grad(loss, sel.params, allow_unused=True)
        for n, p, g in zip(sel.names, sel.params, grads):
            out[n].append(torch.zeros_like(p) if g is None else g)
    return {n: torch.stack(v) for n, v in out.items()}


def check_kernels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, params="all", loss_fn=cross_entropy,
                  rtol: float | None = None) -> dict:
    """Compare every fast per-sample path with the batch-size-1 oracle on one batch.

    Put the model in eval mode first (and in float64 for a tight comparison). Returns a
    dict with ``max_rel_error`` and per-parameter relative errors of the gradients, norms
    and dots; raises ``AssertionError`` when ``rtol`` is given and exceeded, printing
    which parameter is off.
    """
    sel = _selection(model, params, x)
    ref = reference_per_sample_grads(model, x, y, params=sel, loss_fn=loss_fn)
    fast = per_sample_grads(model, x, y, params=sel, loss_fn=loss_fn)
    gen = torch.Generator().manual_seed(0)
    vec = {n: torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p) for n, p in zip(sel.names, sel.params)}
    ref_flat = torch.cat([ref[n].reshape(x.shape[0], -1) for n in sel.names], 1)
    ref_sq = (ref_flat * ref_flat).sum(1)
    ref_dot = ref_flat @ torch.cat([vec[n].reshape(-1) for n in sel.names])
    errors = {}
    for n in sel.names:
        diff = (fast[n] - ref[n]).norm() / ref[n].norm().clamp_min(1e-300)
        errors[f"grad:{n}"] = float(diff)
    sq = per_sample_sq_norms(model, x, y, params=sel, loss_fn=loss_fn)
    dot = per_sample_dots(model, x, y, vec, params=sel, loss_fn=loss_fn)
    errors["sq_norms"] = float(((sq - ref_sq).abs() / ref_sq.abs().clamp_min(1e-300)).max())
    errors["dots"] = float((dot - ref_dot).abs().max() / ref_dot.abs().max().clamp_min(1e-300))
    worst = max(errors.values())
    if rtol is not None and worst > rtol:
        lines = "\n".join(f"  {k}: {v:.3e}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1]))
        raise AssertionError(f"per-sample kernels disagree with the batch-size-1 reference "
                             f"(max relative error {worst:.3e} > {rtol:.1e}):\n{lines}")
    return {"max_rel_error": worst, "errors": errors}
