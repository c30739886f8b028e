"""Per-sample quantities of one batch at fixed weights (model in eval mode): tensors in, tensors out."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..utils import takes_logits
from .capture import LayerCapture, ParamSelection, select_params
from .engine import cross_entropy, gradient_sum
from .registry import kernel_for


def _selection(model, params, x):
    return params if isinstance(params, ParamSelection) else select_params(model, params, example=x)


@takes_logits
def per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, params="all",
                     loss_fn=cross_entropy, kernels: dict | None = None) -> dict:
    """Per-sample gradients ``{name: (B, *param.shape)}`` from the per-layer kernels (materialised)."""
    sel = _selection(model, params, x)
    with LayerCapture(model, sel, kernels=kernels) as cap:
        cap.forward_backward(x, y, loss_fn)
        out = {}
        with torch.no_grad():
            for module, names in (sel.modules.items() if x.shape[0] else ()):
                kernel = kernel_for(module, kernels)
                for r in cap.records.get(module, []):
                    for local, g in kernel.grads(module, r.inputs, r.grad_out, names).items():
                        q = sel.qualified[(id(module), local)]
                        out[q] = out[q] + g if q in out else g
    for n, p in zip(sel.names, sel.params, strict=True):
        if n not in out:  # the module did not run for this input
            out[n] = torch.zeros((x.shape[0],) + tuple(p.shape), dtype=p.dtype, device=p.device)
    return {n: out[n] for n in sel.names}


@takes_logits
def per_sample_sq_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, params="all",
                        loss_fn=cross_entropy, kernels: dict | None = None) -> torch.Tensor:
    """``||g_i||^2`` over the selected parameters, shape ``(B,)``, never materialising all of g_i.

    ``kernels`` overrides the kernel registry for some layer types in this call, e.g.
    ``{nn.Conv2d: ConvKernel(strategy="ghost")}``.
    """
    sel = _selection(model, params, x)
    with LayerCapture(model, sel, kernels=kernels) as cap:
        losses, _ = cap.forward_backward(x, y, loss_fn)
        return cap.stats(need_sq=True, need_dot=False, batch=x.shape[0], dtype=losses.dtype,
                         device=losses.device).sq


@takes_logits
def per_sample_dots(model: nn.Module, x: torch.Tensor, y: torch.Tensor, vector: dict, *, params="all",
                    loss_fn=cross_entropy, backend: str = "hooks", kernels: dict | None = None) -> torch.Tensor:
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
    with LayerCapture(model, sel, kernels=kernels) as cap:
        losses, _ = cap.forward_backward(x, y, loss_fn)
        return cap.stats(vector, need_sq=False, need_dot=True, batch=x.shape[0], dtype=losses.dtype,
                         device=losses.device).dot


@takes_logits
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


