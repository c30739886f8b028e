"""Random pruning, the baseline every method must beat."""

from __future__ import annotations

import numpy as np


def random_scores(model=None, checkpoints=None, dataset=None, *, seed: int = 0) -> np.ndarray:
    """Uniform random scores in [0, 1), shape ``(N,)``, seeded: keeping the top-k is a random subset.

    Higher = keep (as for every method); the values carry no information. ``model`` and
    ``checkpoints`` are not used (and may be None).
    """
    if dataset is None:
        raise ValueError("random_scores needs the dataset (for its length)")
    return np.random.default_rng([seed, 7919]).random(len(dataset))
