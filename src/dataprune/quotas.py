"""Class quotas and stratified splits: numpy only, imported by everything above it (data, select,
pipeline) and importing nothing of the package."""

from __future__ import annotations

import numpy as np


def class_quotas(labels: np.ndarray, n_keep: int) -> dict[int, int]:
    """How many samples each class keeps so that every class keeps the same share.

    Class c gets ``floor(n_keep * n_c / N)``; the samples left over go one each to the
    classes with the largest fractional remainders (ties: the larger class, then the
    lower label). The quotas sum to ``n_keep`` exactly.
    """
    classes, sizes = np.unique(labels, return_counts=True)
    exact = n_keep * sizes / sizes.sum()
    quota = np.floor(exact + 1e-9).astype(np.int64)
    left = n_keep - int(quota.sum())
    order = sorted(range(len(classes)), key=lambda j: (-(exact[j] - quota[j]), -sizes[j], classes[j]))
    for j in order:
        if left == 0:
            break
        if quota[j] < sizes[j]:
            quota[j] += 1
            left -= 1
    return {int(c): int(q) for c, q in zip(classes, quota, strict=True)}


def waterfill_quotas(sizes: dict, k: int, alpha: float = 1.0) -> dict:
    """Split ``k`` kept samples among classes with ``sizes`` available: class c's target is proportional
    to ``size_c ** alpha`` and capped at ``size_c``; what a capped class cannot take goes to the others
    in the same proportions. ``alpha=1`` keeps every class's share, ``alpha=0`` equalises the counts as
    far as the class sizes allow (the small classes are kept whole first). Integer quotas sum to
    ``min(k, sum(sizes))`` (largest remainders; ties to the larger class, then the lower label).
    """
    classes = sorted(sizes)
    size = np.array([sizes[c] for c in classes], dtype=np.float64)
    k = int(min(k, size.sum()))
    weight = np.where(size > 0, np.power(np.maximum(size, 1e-300), alpha), 0.0)
    quota = np.zeros(len(classes))
    free = size > 0
    left = float(k)
    # Raise the water level until every class is either full or at its share of the level.
    while left > 1e-9 and free.any():
        share = left * weight * free / (weight * free).sum()
        full = free & (quota + share >= size)
        if not full.any():
            quota += share
            break
        left -= float((size - quota)[full].sum())
        quota[full] = size[full]
        free &= ~full
    base = np.floor(quota + 1e-9).astype(np.int64)
    rest = k - int(base.sum())
    order = sorted(range(len(classes)), key=lambda j: (-(quota[j] - base[j]), -size[j], classes[j]))
    for j in order:
        if rest <= 0:
            break
        if base[j] < size[j]:
            base[j] += 1
            rest -= 1
    return {int(c): int(q) for c, q in zip(classes, base, strict=True)}


def stratified_split(targets: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices with ``round(test_fraction * n_c)`` test samples per class."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(test_fraction * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def stratified_fraction(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a random share ``fraction`` of every class (at least one per class)."""
    rng = np.random.default_rng([seed, 2718])
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        keep.append(rng.choice(members, size=max(1, int(round(fraction * len(members)))), replace=False))
    return np.sort(np.concatenate(keep))
