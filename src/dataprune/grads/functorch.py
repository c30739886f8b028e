"""Fallback for any layer type without a kernel: per-sample gradients of the layer's own
parameters by ``torch.func.vmap`` over a vector-Jacobian product of its forward.

Exact for any layer whose output for one sample depends on that sample alone; memory is
(chunk of samples) x (layer parameters).
"""

from __future__ import annotations

import torch
from torch.func import functional_call, vjp, vmap

from .base import LayerKernel


class FunctorchKernel(LayerKernel):
    def grads(self, layer, inputs, grad_out, names):
        params = {n: getattr(layer, n).detach() for n in names}
        buffers = {n: b for n, b in layer.named_buffers(recurse=False)}
        batched = [isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == grad_out.shape[0]
                   for t in inputs]

        def one(p, args, d):
            full = list(inputs)
            it = iter(args)
            for j, is_b in enumerate(batched):
                if is_b:
                    full[j] = next(it).unsqueeze(0)

            def f(pp):
                return functional_call(layer, {**pp, **buffers}, tuple(full))

            _, pull = vjp(f, p)
            return pull(d.unsqueeze(0))[0]

        args = tuple(t for t, is_b in zip(inputs, batched, strict=True) if is_b)
        return vmap(one, in_dims=(None, 0, 0))(params, args, grad_out)
