"""Per-layer kernel registry: one kernel per ``nn.Module`` type.

A new layer type is a new :class:`~dataprune.grads.base.LayerKernel` subclass decorated with
:func:`register_kernel`; layers without one use the ``torch.func`` fallback kernel. A call can
override the registry for some layer types (``kernels={nn.Conv2d: ConvKernel(strategy="ghost")}``)
without touching it.
"""

from __future__ import annotations

import torch

from .base import LayerKernel
from .functorch import FunctorchKernel

KERNELS: dict[type, LayerKernel] = {}
FALLBACK = FunctorchKernel()


def register_kernel(*module_types):
    def deco(cls):
        for t in module_types:
            KERNELS[t] = cls()
        return cls
    return deco


def kernel_for(module: torch.nn.Module, overrides: dict | None = None) -> LayerKernel:
    """The kernel for ``module``'s type (or its nearest registered base class)."""
    for cls in type(module).__mro__:
        if overrides and cls in overrides:
            return overrides[cls]
        if cls in KERNELS:
            return KERNELS[cls]
    return FALLBACK
