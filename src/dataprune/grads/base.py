"""The kernel interface: what every per-layer kernel computes, and the memory budget helper.

A kernel turns what the hooks captured for one layer over a batch -- the layer's
positional inputs and the gradient of the summed per-sample losses with respect to its
output -- into per-sample quantities for the layer's own parameters:

* ``grads``  the per-sample gradients themselves, ``{name: (B, *param.shape)}``;
* ``stats``  ``||g_i||^2`` over the selected parameters and ``g_i . v`` for a fixed vector
  ``v`` given per parameter, each ``(B,)`` (a :class:`KernelStats`).

Kernels are pure tensor functions: no hooks, files or training loops.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# Default working memory for materialised per-sample tensors (elements, not bytes).
CHUNK_ELEMENTS = 32 * 2**20


class KernelStats(NamedTuple):
    sq: torch.Tensor | None     # (B,) squared per-sample gradient norms, or None when not asked for
    dot: torch.Tensor | None    # (B,) per-sample dot products with the vector, or None


def row_chunks(batch: int, elements_per_row: int, budget: int = CHUNK_ELEMENTS):
    """Slices of ``range(batch)`` whose materialised size stays under ``budget`` elements."""
    step = max(1, budget // max(1, elements_per_row))
    return [slice(i, min(i + step, batch)) for i in range(0, batch, step)]


class LayerKernel:
    """Base kernel: norms and dots from materialised per-sample gradients."""

    def grads(self, layer, inputs, grad_out, names) -> dict:
        raise NotImplementedError

    def stats(self, layer, inputs, grad_out, names, *, vectors=None, need_sq: bool,
              need_dot: bool) -> KernelStats:
        """``KernelStats(sq, dot)``, each ``(B,)`` or None.

        This default materialises the per-sample gradients once, in chunks of samples.
        """
        batch = grad_out.shape[0]
        per_row = sum(getattr(layer, n).numel() for n in names)
        sq = grad_out.new_zeros(batch) if need_sq else None
        dot = grad_out.new_zeros(batch) if need_dot else None
        for rows in row_chunks(batch, per_row):
            g = self.grads(layer, tuple(_rows(t, rows) for t in inputs), grad_out[rows], names)
            for n, gi in g.items():
                flat = gi.reshape(gi.shape[0], -1)
                if need_sq:
                    sq[rows] += torch.linalg.vector_norm(flat, dim=1) ** 2
                if need_dot:
                    dot[rows] += flat @ vectors[n].reshape(-1).to(flat.dtype)
        return KernelStats(sq, dot)


def _rows(t, rows):
    return t[rows] if isinstance(t, torch.Tensor) and t.dim() > 0 else t
