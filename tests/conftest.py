import os

import numpy as np
import pytest
import torch
import torch.nn as nn

os.environ.setdefault("DATAPRUNE_QUIET", "1")


def randomize_norm_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial running stats and affine params (eval-mode tests)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
            with torch.no_grad():
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
    return model


@pytest.fixture
def rng():
    return np.random.default_rng(0)
