"""``nn.Linear``: g_W = sum_t delta_t a_t^T, g_b = sum_t delta_t over any sequence positions t."""

from __future__ import annotations

import torch
import torch.nn as nn

from .base import KernelStats, LayerKernel
from .registry import register_kernel


def _flat(inputs, grad_out):
    a = inputs[0]
    # (B, T, in) and (B, T, out); T = 1 when there is no sequence dimension.
    return a.reshape(a.shape[0], -1, a.shape[-1]), grad_out.reshape(grad_out.shape[0], -1, grad_out.shape[-1])


@register_kernel(nn.Linear)
class LinearKernel(LayerKernel):
    def grads(self, layer, inputs, grad_out, names):
        a, d = _flat(inputs, grad_out)
        out = {}
        if "weight" in names:
            out["weight"] = torch.bmm(d.transpose(1, 2), a)  # (B, out, in)
        if "bias" in names:
            out["bias"] = d.sum(1)
        return out

    def stats(self, layer, inputs, grad_out, names, *, vectors=None, need_sq, need_dot):
        a, d = _flat(inputs, grad_out)
        b, t, n_in = a.shape
        n_out = d.shape[-1]
        sq = d.new_zeros(b) if need_sq else None
        dot = d.new_zeros(b) if need_dot else None
        if "weight" in names:
            if need_sq:
                if t == 1:
                    sq += (a * a).sum((1, 2)) * (d * d).sum((1, 2))
                elif t * t * (n_in + n_out) < t * n_in * n_out:
                    # Ghost norm: ||sum_t d_t a_t^T||^2 = sum_{t,s} (a_t.a_s)(d_t.d_s), O(T^2) per sample.
                    sq += (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(d, d.transpose(1, 2))).sum((1, 2))
                else:
                    g = torch.bmm(d.transpose(1, 2), a)
                    sq += (g * g).sum((1, 2))
            if need_dot:
                w = vectors["weight"].to(a.dtype)
                # sum_t d_t^T V a_t, as one GEMM over all B*T rows.
                if n_in <= n_out:
                    dot += ((d @ w) * a).sum((1, 2))
                else:
                    dot += ((a @ w.t()) * d).sum((1, 2))
        if "bias" in names:
            db = d.sum(1)  # (B, out)
            if need_sq:
                sq += (db * db).sum(1)
            if need_dot:
                dot += db @ vectors["bias"].to(db.dtype)
        return KernelStats(sq, dot)
