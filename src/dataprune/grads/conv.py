"""``nn.Conv1d`` / ``nn.Conv2d``: the per-sample weight gradient of sample i is
G_i[o, c, k] = sum_p delta_i[o, p] * a_i[c, p*s + k*d], a correlation of its input with its
output gradient.

Three exact ways to get ``||G_i||^2`` (and ``G_i . V``), chosen per layer from its shapes
by a fixed cost model (so results never depend on timing):

* ``shift``  (stride 1): flatten the padded input row-major; for every kernel offset k the
  shifted input is then a *contiguous slice* of it, and G_i[:, :, k] is one batched GEMM
  of delta_i (padded to the input's row width) with that slice -- no im2col copy at all;
* ``unfold`` (any stride): im2col, then one batched GEMM;
* ``ghost``: ``||G_i||^2 = sum_{p,q} (U_i^T U_i)_{pq} (delta_i^T delta_i)_{pq}`` from two
  L x L Gram matrices -- cheapest when the output has few positions L (deep layers);
* ``grouped``: the batch folded into the channels, ``(1, B*C_in, H, W)``, and one
  weight-gradient convolution with ``groups=B`` -- the library's own (vectorised) weight-gradient
  kernel yields every G_i at once. Fastest on early layers (few channels, many positions),
  slow once the per-sample weight count is large, where the backends fall off their fast path.

All but ``ghost`` materialise G_i, which then gives the dot product for free; ``ghost`` takes
dots from the layer's own convolution, ``g_i . V = sum delta_i * conv(a_i, V)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import KernelStats, LayerKernel, row_chunks
from .registry import register_kernel

STRATEGIES = ("shift", "unfold", "ghost", "grouped")

# Per-sample cost model, in multiply-add-equivalents; constants fitted to CPU measurements
# (benchmarks/kernels.py). Small GEMMs are dominated by writing their output, im2col by memory.
_GEMM_OUTPUT_OVERHEAD = 64
_UNFOLD_MEMORY_COST = 16
# ``grouped`` is preferred wherever it is inside these bounds: there it was the fastest strategy
# on every layer shape of benchmarks/kernels.py (CPU); outside them (few input channels, or
# large per-sample weights) the grouped weight-gradient kernels fall off their fast path and
# were up to 20x slower than the alternatives.
_GROUPED_MAX_WEIGHTS, _GROUPED_MIN_CHANNELS = 40_000, 8


def _geometry(layer, a, d):
    """A 1-d or 2-d conv seen as 2-d, padding made explicit where it is not plain zeros.

    Returns (a, d, kernel, stride, dilation, padding) with a (B, C_in, H, W) and d
    (B, C_out, H_out, W_out); ``padding`` is still to be applied (zeros).
    """
    nd = a.dim() - 2
    k, s, dil = tuple(layer.kernel_size), tuple(layer.stride), tuple(layer.dilation)
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            pad = (0,) * nd
        else:  # "same": total d*(k-1) per dim, the odd pixel on the right/bottom as torch does
            pads = []
            for kk, dd in reversed(list(zip(k, dil, strict=True))):
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


def choose_strategy(layer, a_shape, d_shape, k, s, pad, *, need_dot: bool, force: str | None = None) -> str:
    """Cheapest exact way to get per-sample squared norms for this layer and batch shape.

    Deterministic: a cost model of the shapes, never a timing, so results are reproducible.
    ``force`` picks a strategy wherever it applies to the layer (tests, benchmarks).
    """
    c_in, c_out, g = a_shape[1], d_shape[1], layer.groups
    ksz = k[0] * k[1]
    positions = d_shape[2] * d_shape[3]
    width = a_shape[3] + 2 * pad[1]
    weights = (c_out // g) * (c_in // g) * g * ksz       # parameters of the layer (no bias)
    conv = weights * positions                           # one convolution's multiply-adds
    options = {}
    if s == (1, 1):
        options["shift"] = weights * (d_shape[2] * width + _GEMM_OUTPUT_OVERHEAD)
    options["unfold"] = weights * (positions + _GEMM_OUTPUT_OVERHEAD) + _UNFOLD_MEMORY_COST * c_in * ksz * positions
    if g == 1:
        options["ghost"] = (positions * positions * (c_in * ksz + c_out) + _UNFOLD_MEMORY_COST * c_in * ksz * positions
                            + conv * int(need_dot))  # the dots by a convolution
        in_bounds = weights <= _GROUPED_MAX_WEIGHTS and c_in >= _GROUPED_MIN_CHANNELS
        options["grouped"] = 0 if in_bounds else math.inf
    if force in options:
        return force
    return min(options, key=options.get)


def _shift_offsets(layer, a, d, k, dil, pad):
    """Per-sample weight gradients of a stride-1 conv without im2col, one kernel offset at a time.

    Yields ``(offset_index, g)`` with g of shape (B, C_out, C_in/g): the gradient of the
    weights at that kernel offset, for every sample. Each is one batched GEMM of delta (padded
    to the input's row width) with a contiguous slice of the flattened padded input.
    """
    b, c_in, h, w = a.shape
    g = layer.groups
    wp = w + 2 * pad[1]
    h_out, w_out = d.shape[2], d.shape[3]
    # Extra zero rows so that the last offset's slice stays inside the buffer.
    extra = math.ceil(((k[1] - 1) * dil[1]) / wp) if k[1] > 1 else 0
    flat = F.pad(a, (pad[1], pad[1], pad[0], pad[0] + extra)).reshape(b * g, c_in // g, -1)
    # delta padded to the input's row width: the wrapped-around columns multiply zeros.
    dd = F.pad(d, (0, wp - w_out)).reshape(b * g, d.shape[1] // g, h_out * wp)
    span = h_out * wp
    for i in range(k[0]):
        for j in range(k[1]):
            off = i * dil[0] * wp + j * dil[1]
            gk = torch.bmm(dd, flat[:, :, off:off + span].transpose(1, 2))    # (B*g, C_out/g, C_in/g)
            yield i * k[1] + j, gk.view(b, d.shape[1], c_in // g)


def _shift_grads(layer, a, d, k, dil, pad):
    """All offsets of :func:`_shift_offsets`, in the weight layout (B, C_out, C_in/g, kh, kw)."""
    parts = [gk for _, gk in _shift_offsets(layer, a, d, k, dil, pad)]
    return torch.stack(parts, -1).reshape(a.shape[0], *layer.weight.shape[:2], k[0], k[1])


def _unfold_grads(layer, a, d, k, s, dil, pad):
    """Per-sample weight gradients (B, C_out, C_in/g * kh * kw) through im2col."""
    b, g = a.shape[0], layer.groups
    u = F.unfold(a, k, dilation=dil, padding=pad, stride=s)        # (B, C_in*kh*kw, L)
    u = u.view(b * g, -1, u.shape[-1])                              # (B*g, C_in/g*kh*kw, L)
    dd = d.reshape(b * g, -1, u.shape[-1])                          # (B*g, C_out/g, L)
    return torch.bmm(dd, u.transpose(1, 2)).reshape(b, -1)


def _grouped_grads(a, d, k, s, dil, pad):
    """Per-sample weight gradients (B, C_out * C_in * kh * kw) of an ungrouped conv, by one
    weight-gradient convolution over the batch folded into the channels (``groups=B``)."""
    b, c_in, c_out = a.shape[0], a.shape[1], d.shape[1]
    weight = a.new_zeros(()).expand(b * c_out, c_in, k[0], k[1])     # only its shape is read
    gw = torch.ops.aten.convolution_backward(
        d.reshape(1, b * c_out, *d.shape[2:]), a.reshape(1, b * c_in, *a.shape[2:]), weight, None,
        list(s), list(pad), list(dil), False, [0, 0], b, [False, True, False])[1]
    return gw.reshape(b, -1)


def _ghost_sq(a, d, k, s, dil, pad):
    b = a.shape[0]
    u = F.unfold(a, k, dilation=dil, padding=pad, stride=s)        # (B, C_in*kh*kw, L)
    dd = d.reshape(b, d.shape[1], -1)                               # (B, C_out, L)
    sq = a.new_zeros(b)
    for rows in row_chunks(b, u.shape[-1] ** 2 * 2):
        gu = torch.bmm(u[rows].transpose(1, 2), u[rows])            # (b, L, L)
        gd = torch.bmm(dd[rows].transpose(1, 2), dd[rows])
        sq[rows] = (gu * gd).sum((1, 2))
    return sq


@register_kernel(nn.Conv1d, nn.Conv2d)
class ConvKernel(LayerKernel):
    """Exact per-sample statistics of a conv; ``strategy`` (one of ``STRATEGIES``) forces one way
    wherever it applies, else the cost model of :func:`choose_strategy` picks per layer."""

    def __init__(self, strategy: str | None = None):
        if strategy is not None and strategy not in STRATEGIES:
            raise ValueError(f"unknown conv strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
        self.strategy = strategy

    def grads(self, layer, inputs, grad_out, names):
        a, d, k, s, dil, pad = _geometry(layer, inputs[0], grad_out)
        b = a.shape[0]
        out = {}
        if "weight" in names:
            if s == (1, 1) and self.strategy != "unfold":
                out["weight"] = _shift_grads(layer, a, d, k, dil, pad).reshape(b, *layer.weight.shape)
            else:
                out["weight"] = _unfold_grads(layer, a, d, k, s, dil, pad).reshape(b, *layer.weight.shape)
        if "bias" in names:
            out["bias"] = d.sum((2, 3))
        return out

    def stats(self, layer, inputs, grad_out, names, *, vectors=None, need_sq, need_dot):
        x = inputs[0]
        a, d, k, s, dil, pad = _geometry(layer, x, grad_out)
        b = a.shape[0]
        sq = d.new_zeros(b) if need_sq else None
        dot = d.new_zeros(b) if need_dot else None
        if "weight" in names:
            strategy = (choose_strategy(layer, a.shape, d.shape, k, s, pad, need_dot=need_dot, force=self.strategy)
                        if need_sq else "conv")
            if strategy == "shift":
                v = vectors["weight"].to(a.dtype).reshape(*layer.weight.shape[:2], -1) if need_dot else None
                per_row = 3 * math.prod(a.shape[1:]) + layer.weight.numel() // (k[0] * k[1])
                for rows in row_chunks(b, per_row):
                    for off, gk in _shift_offsets(layer, a[rows], d[rows], k, dil, pad):   # (b, Co, Ci/g)
                        flat = gk.reshape(gk.shape[0], -1)
                        sq[rows] += torch.linalg.vector_norm(flat, dim=1) ** 2
                        if need_dot:
                            dot[rows] += flat @ v[:, :, off].reshape(-1)
            elif strategy in ("unfold", "grouped"):
                v = vectors["weight"].reshape(-1).to(a.dtype) if need_dot else None
                per_row = layer.weight.numel() + math.prod(a.shape[1:]) * (k[0] * k[1] if strategy == "unfold" else 1)
                for rows in row_chunks(b, per_row):
                    flat = (_unfold_grads(layer, a[rows], d[rows], k, s, dil, pad) if strategy == "unfold"
                            else _grouped_grads(a[rows], d[rows], k, s, dil, pad))      # (b, P)
                    sq[rows] += torch.linalg.vector_norm(flat, dim=1) ** 2
                    if need_dot:
                        dot[rows] += flat @ v
            else:
                if need_sq:
                    sq += _ghost_sq(a, d, k, s, dil, pad)
                if need_dot:
                    # The layer's own convolution with V in place of its weight (the original
                    # input: _conv_forward applies the padding mode itself).
                    conv = layer._conv_forward(x, vectors["weight"].to(x.dtype), None)
                    dot += torch.linalg.vecdot(conv.reshape(b, -1), grad_out.reshape(b, -1))
        if "bias" in names:
            db = grad_out.reshape(b, grad_out.shape[1], -1).sum(2)  # (B, C_out)
            if need_sq:
                sq += torch.linalg.vector_norm(db, dim=1) ** 2
            if need_dot:
                dot += db @ vectors["bias"].to(db.dtype)
        return KernelStats(sq, dot)
