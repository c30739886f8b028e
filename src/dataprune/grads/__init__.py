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

from . import conv, embedding, linear, norm  # noqa: F401, E402  (register the kernels)
from .base import KernelStats, LayerKernel
from .batch import mean_gradient, per_sample_dots, per_sample_grads, per_sample_sq_norms
from .capture import LayerCapture, ParamSelection, find_classifier, select_params
from .check import check_kernels, reference_per_sample_grads
from .conv import ConvKernel
from .engine import BACKENDS, NonFiniteLossWarning, SampleTerms, cross_entropy, gradient_sum, per_sample_terms
from .lastlayer import last_layer_terms
from .registry import KERNELS, kernel_for, register_kernel

__all__ = ["per_sample_grads", "per_sample_sq_norms", "per_sample_dots", "mean_gradient", "check_kernels",
           "reference_per_sample_grads", "gradient_sum", "per_sample_terms", "SampleTerms", "last_layer_terms",
           "select_params", "find_classifier", "ParamSelection", "LayerCapture", "KERNELS", "LayerKernel",
           "KernelStats", "ConvKernel", "kernel_for", "register_kernel", "cross_entropy", "NonFiniteLossWarning",
           "BACKENDS"]
