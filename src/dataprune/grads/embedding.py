"""``nn.Embedding``: sample i's gradient puts delta_t into row id_t for every position t.

||g_i||^2 = sum_{t,s} [id_t == id_s] delta_t . delta_s (O(T^2) per sample, no vocabulary-sized
tensor) and g_i . V = sum_t V[id_t] . delta_t.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .base import KernelStats, LayerKernel
from .registry import register_kernel


def _flat(layer, inputs, grad_out):
    ids = inputs[0]
    b = ids.shape[0]
    ids = ids.reshape(b, -1)                                      # (B, T)
    d = grad_out.reshape(b, -1, grad_out.shape[-1])               # (B, T, D)
    if layer.padding_idx is not None:
        # The padding row never receives gradient.
        d = d * (ids != layer.padding_idx).unsqueeze(-1).to(d.dtype)
    return ids, d


@register_kernel(nn.Embedding)
class EmbeddingKernel(LayerKernel):
    def _check(self, layer):
        if layer.max_norm is not None:
            raise ValueError("nn.Embedding with max_norm renormalises rows in place during forward; "
                             "per-sample gradients of such a layer are not supported")
        if layer.scale_grad_by_freq:
            raise ValueError("nn.Embedding(scale_grad_by_freq=True) scales gradients by batch-wide "
                             "counts, so per-sample gradients are not defined")

    def grads(self, layer, inputs, grad_out, names):
        self._check(layer)
        ids, d = _flat(layer, inputs, grad_out)
        b = ids.shape[0]
        g = d.new_zeros(b, layer.num_embeddings, layer.embedding_dim)
        g.scatter_add_(1, ids.unsqueeze(-1).expand_as(d), d)
        return {"weight": g}

    def stats(self, layer, inputs, grad_out, names, *, vectors=None, need_sq, need_dot):
        self._check(layer)
        ids, d = _flat(layer, inputs, grad_out)
        sq = dot = None
        if need_sq:
            same = (ids.unsqueeze(2) == ids.unsqueeze(1)).to(d.dtype)  # (B, T, T)
            sq = (torch.bmm(d, d.transpose(1, 2)) * same).sum((1, 2))
        if need_dot:
            dot = (vectors["weight"].to(d.dtype)[ids] * d).sum((1, 2))
        return KernelStats(sq, dot)
