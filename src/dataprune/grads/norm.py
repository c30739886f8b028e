"""Normalisation layers in closed form. Each has per-channel (or per-feature) affine
parameters, so a sample's gradient is small: g_gamma = sum delta * x_hat, g_beta = sum delta,
summed over the positions that share a parameter.

BatchNorm is per-sample separable only with running statistics (eval mode); in train
mode a sample's output depends on the whole batch and per-sample gradients are undefined.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import KernelStats, LayerKernel
from .registry import register_kernel


class _AffineKernel(LayerKernel):
    """Kernels whose per-sample grads are (B, *shape) tensors cheap enough to build directly."""

    def stats(self, layer, inputs, grad_out, names, *, vectors=None, need_sq, need_dot):
        g = self.grads(layer, inputs, grad_out, names)
        b = grad_out.shape[0]
        sq = grad_out.new_zeros(b) if need_sq else None
        dot = grad_out.new_zeros(b) if need_dot else None
        for n, gi in g.items():
            flat = gi.reshape(b, -1)
            if need_sq:
                sq += torch.linalg.vector_norm(flat, dim=1) ** 2
            if need_dot:
                dot += flat @ vectors[n].reshape(-1).to(flat.dtype)
        return KernelStats(sq, dot)


@register_kernel(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
class BatchNormKernel(_AffineKernel):
    def grads(self, layer, inputs, grad_out, names):
        if layer.training or layer.running_mean is None:
            raise ValueError(f"{type(layer).__name__} mixes the samples of a batch (train mode or "
                             "track_running_stats=False): per-sample gradients need it in eval mode "
                             "with running statistics")
        a = inputs[0]
        b, c = a.shape[0], a.shape[1]
        out = {}
        # Per sample and channel, sum_l delta * x_hat = rstd * (sum_l delta * a - mean * sum_l delta):
        # two reductions over the activations instead of materialising x_hat.
        d3, a3 = grad_out.reshape(b, c, -1), a.reshape(b, c, -1)
        dsum = d3.sum(2)                                               # (B, C)
        if "weight" in names:
            rstd = torch.rsqrt(layer.running_var + layer.eps)
            da = torch.linalg.vecdot(d3, a3)                           # (B, C)
            out["weight"] = (da - layer.running_mean * dsum) * rstd
        if "bias" in names:
            out["bias"] = dsum
        return out


@register_kernel(nn.LayerNorm)
class LayerNormKernel(_AffineKernel):
    def grads(self, layer, inputs, grad_out, names):
        a = inputs[0]
        lead = tuple(range(1, a.dim() - len(layer.normalized_shape)))  # positions sharing the params
        out = {}
        if "weight" in names:
            x_hat = F.layer_norm(a, layer.normalized_shape, None, None, layer.eps)
            prod = grad_out * x_hat
            out["weight"] = prod.sum(lead) if lead else prod
        if "bias" in names:
            out["bias"] = grad_out.sum(lead) if lead else grad_out
        return out


@register_kernel(nn.GroupNorm)
class GroupNormKernel(_AffineKernel):
    def grads(self, layer, inputs, grad_out, names):
        a = inputs[0]
        sum_dims = tuple(range(2, a.dim()))
        out = {}
        if "weight" in names:
            x_hat = F.group_norm(a, layer.num_groups, None, None, layer.eps)
            prod = grad_out * x_hat
            out["weight"] = prod.sum(sum_dims) if sum_dims else prod
        if "bias" in names:
            out["bias"] = grad_out.sum(sum_dims) if sum_dims else grad_out
        return out
