"""``nn.Conv1d`` / ``nn.Conv2d``: per-sample weight gradients are delta_i U_i^T with U_i the
unfolded (im2col) input of sample i.

Squared norms use the cheaper of two exact forms, chosen per layer from its shapes:

* unfold:  materialise G_i = delta_i U_i^T, cost ~ C_out * C_in k^2 * L per sample;
* ghost:   ||G_i||^2 = sum_{l,l'} (U_i^T U_i)_{ll'} (delta_i^T delta_i)_{ll'}, cost ~ L^2 (C_in k^2 + C_out),

where L is the number of output positions. Dot products with a fixed V use the layer's own
convolution: g_i . V = sum over outputs of delta_i * conv(a_i, V), one forward-sized conv.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import LayerKernel, register_kernel, row_chunks

# Materialising G through unfold + bmm is memory bound on the CPU; a conv with V runs at
# near-peak speed. Measured on 2 CPU cores (benchmarks/kernels.py), unfold+bmm reaches
# about 1/UNFOLD_PENALTY of the convolution's throughput.
UNFOLD_PENALTY = 2.0


def _as_2d(layer, a, d):
    """Views of a 1-d or 2-d conv as a 2-d one, with any padding applied explicitly.

    Returns (a, d, kernel, stride, dilation, padding) where a is (B, C_in, H, W) and d is
    (B, C_out, H_out, W_out).
    """
    nd = a.dim() - 2
    k, s, dil = tuple(layer.kernel_size), tuple(layer.stride), tuple(layer.dilation)
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            pad = (0,) * nd
        else:  # "same": total d*(k-1) per dim, the odd pixel on the right/bottom as torch does
            pads = []
            for kk, dd in reversed(list(zip(k, dil))):
                total = dd * (kk - 1)
                pads += [total // 2, total - total // 2]
            a = F.pad(a, pads)
            pad = (0,) * nd
    else:
        pad = tuple(layer.padding)
    if layer.padding_mode != "zeros":
        a = F.pad(a, layer._reversed_padding_repeated_twice, mode=layer.padding_mode)
        pad = (0,) * nd
    if nd == 1:
        return a.unsqueeze(2), d.unsqueeze(2), (1, k[0]), (1, s[0]), (1, dil[0]), (0, pad[0])
    return a, d, k, s, dil, pad


def _costs(layer, a, d, k):
    """Per-sample multiply-adds of (unfold materialisation, ghost norm, conv dot)."""
    c_in, c_out, g = a.shape[1], d.shape[1], layer.groups
    ksz = k[0] * k[1]
    positions = d.shape[2] * d.shape[3]
    unfold = c_out * (c_in // g) * ksz * positions
    ghost = positions * positions * (c_in * ksz + c_out) if g == 1 else float("inf")
    return unfold * UNFOLD_PENALTY, ghost, unfold


@register_kernel(nn.Conv1d, nn.Conv2d)
class ConvKernel(LayerKernel):
    def _unfold(self, layer, a, d, k, s, dil, pad):
        b, g = a.shape[0], layer.groups
        u = F.unfold(a, k, dilation=dil, padding=pad, stride=s)  # (B, C_in*k*k, L)
        u = u.view(b, g, -1, u.shape[-1])                         # (B, g, C_in/g*k*k, L)
        dd = d.reshape(b, g, -1, u.shape[-1])                     # (B, g, C_out/g, L)
        return torch.einsum("bgol,bgil->bgoi", dd, u).reshape(b, -1)  # (B, C_out*C_in/g*k*k)

    def grads(self, layer, inputs, grad_out, names):
        a, d, k, s, dil, pad = _as_2d(layer, inputs[0], grad_out)
        out = {}
        if "weight" in names:
            out["weight"] = self._unfold(layer, a, d, k, s, dil, pad).view(a.shape[0], *layer.weight.shape)
        if "bias" in names:
            out["bias"] = d.sum((2, 3))
        return out

    def stats(self, layer, inputs, grad_out, names, vecs, need_sq, need_dot):
        x = inputs[0]
        a, d, k, s, dil, pad = _as_2d(layer, x, grad_out)
        b = a.shape[0]
        sq = d.new_zeros(b) if need_sq else None
        dot = d.new_zeros(b) if need_dot else None
        if "weight" in names:
            unfold_cost, ghost_cost, conv_cost = _costs(layer, a, d, k)
            materialise = need_sq and (unfold_cost <= ghost_cost + (conv_cost if need_dot else 0))
            if materialise:
                w = vecs["weight"].reshape(-1).to(a.dtype) if need_dot else None
                per_row = math.prod(a.shape[1:]) * k[0] * k[1] + layer.weight.numel()
                for rows in row_chunks(b, per_row):
                    g = self._unfold(layer, a[rows], d[rows], k, s, dil, pad)
                    sq[rows] += (g * g).sum(1)
                    if need_dot:
                        dot[rows] += g @ w
            else:
                if need_sq:
                    u = F.unfold(a, k, dilation=dil, padding=pad, stride=s)  # (B, C_in*k*k, L)
                    dd = d.reshape(b, d.shape[1], -1)                         # (B, C_out, L)
                    per_row = u.shape[-1] ** 2
                    for rows in row_chunks(b, per_row):
                        gu = torch.bmm(u[rows].transpose(1, 2), u[rows])
                        gd = torch.bmm(dd[rows].transpose(1, 2), dd[rows])
                        sq[rows] += (gu * gd).sum((1, 2))
                if need_dot:
                    # The layer's own convolution with V in place of its weight (original input:
                    # _conv_forward applies the padding mode itself).
                    conv = layer._conv_forward(x, vecs["weight"].to(x.dtype), None)
                    dot += (conv * grad_out).reshape(b, -1).sum(1)
        if "bias" in names:
            db = grad_out.reshape(b, grad_out.shape[1], -1).sum(2)  # (B, C_out)
            if need_sq:
                sq += (db * db).sum(1)
            if need_dot:
                dot += db @ vecs["bias"].to(db.dtype)
        return sq, dot
