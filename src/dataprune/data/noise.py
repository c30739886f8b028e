"""Symmetric label noise, the robustness setting of the pruning literature."""

from __future__ import annotations

import numpy as np


def symmetric_noise(targets, rate: float, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``round(rate * N)`` labels, each to a uniformly drawn *different* class.

    Returns
    -------
    noisy_targets : ndarray, shape (N,), int64
    flipped : ndarray, shape (N,), bool
        True where the label was changed.
    """
    targets = np.asarray(targets, dtype=np.int64)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"label noise rate must be in [0, 1), got {rate}")
    if num_classes < 2 and rate > 0:
        raise ValueError("label noise needs at least 2 classes")
    rng = np.random.default_rng(seed)
    n_flip = int(round(rate * len(targets)))
    flipped = np.zeros(len(targets), dtype=bool)
    chosen = rng.choice(len(targets), size=n_flip, replace=False)
    flipped[chosen] = True
    noisy = targets.copy()
    # An offset in [1, C-1] added modulo C gives every other class with equal probability.
    offsets = rng.integers(1, num_classes, size=n_flip)
    noisy[chosen] = (targets[chosen] + offsets) % num_classes
    return noisy, flipped
