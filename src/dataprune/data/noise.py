"""Generated variants of a training set: label noise (symmetric or pair-flip) and long-tailed
class sizes. Every variant is seeded and touches the training set only."""

from __future__ import annotations

import numpy as np

NOISE_KINDS = ("symmetric", "pair")


def symmetric_noise(targets, rate: float, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``round(rate * N)`` labels, each to a uniformly drawn *different* class.

    Returns
    -------
    noisy_targets : ndarray, shape (N,), int64
    flipped : ndarray, shape (N,), bool
        True where the label was changed.
    """
    targets = _check(targets, rate, num_classes)
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


def pair_noise(targets, rate: float, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric (pair-flip) noise: in every class c, exactly ``round(rate * n_c)`` labels become
    ``(c + 1) mod C``: class-dependent noise, where the wrong labels of a class agree with each
    other. Returns ``(noisy_targets, flipped)`` like :func:`symmetric_noise`.
    """
    targets = _check(targets, rate, num_classes)
    if rate >= 0.5:
        raise ValueError(f"pair-flip noise must flip fewer than half of each class (else the flipped label "
                         f"is the majority and the classes cannot be told apart); got {rate}")
    rng = np.random.default_rng([seed, 2])
    flipped = np.zeros(len(targets), dtype=bool)
    for c in np.unique(targets):
        members = np.flatnonzero(targets == c)
        chosen = rng.choice(members, size=int(round(rate * len(members))), replace=False)
        flipped[chosen] = True
    noisy = targets.copy()
    noisy[flipped] = (targets[flipped] + 1) % num_classes
    return noisy, flipped


def add_label_noise(targets, rate: float, num_classes: int, *, kind: str = "symmetric",
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Label noise of the given ``kind`` (one of ``NOISE_KINDS``); see :func:`symmetric_noise`."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown label-noise kind {kind!r}; valid: {', '.join(NOISE_KINDS)}")
    return (symmetric_noise if kind == "symmetric" else pair_noise)(targets, rate, num_classes, seed=seed)


def long_tail_indices(targets, imbalance: float, seed: int = 0) -> np.ndarray:
    """Sorted positions of a long-tailed subset: class of rank k (labels in increasing order, k = 0
    for the lowest) keeps ``round(n_max * imbalance ** (-k / (K - 1)))`` of its samples, capped at
    its size, drawn at random. The largest kept class is ``imbalance`` times the smallest
    (Cao et al. 2019's exponential profile).
    """
    targets = np.asarray(targets, dtype=np.int64)
    try:
        imbalance = float(imbalance)
    except (TypeError, ValueError):
        raise TypeError(f"imbalance must be a number >= 1, got {imbalance!r}") from None
    if not imbalance >= 1:
        raise ValueError(f"imbalance is the ratio of the largest to the smallest class and must be >= 1, "
                         f"got {imbalance}")
    classes, sizes = np.unique(targets, return_counts=True)
    if imbalance == 1 or len(classes) < 2:
        return np.arange(len(targets))
    rng = np.random.default_rng([seed, 3])
    n_max = sizes.max()
    keep = []
    for k, c in enumerate(classes):
        want = int(round(n_max * imbalance ** (-k / (len(classes) - 1))))
        members = np.flatnonzero(targets == c)
        keep.append(rng.choice(members, size=max(1, min(want, len(members))), replace=False))
    return np.sort(np.concatenate(keep))


def _check(targets, rate, num_classes):
    targets = np.asarray(targets, dtype=np.int64)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"label noise rate must be in [0, 1), got {rate}")
    if num_classes < 2 and rate > 0:
        raise ValueError("label noise needs at least 2 classes")
    return targets
