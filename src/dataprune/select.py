"""From scores to the indices to keep.

``ratio`` is always the pruning ratio, the fraction of samples *removed* (as in the
pruning literature: ``ratio=0.7`` keeps 30%). The number kept is
``max(1, round((1 - ratio) * N))``.
"""

from __future__ import annotations

import numpy as np

POLICIES = ("topk", "class_balanced", "random")


def _check(scores, ratio, labels, num_samples):
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be a 1-D array of shape (N,), got shape {scores.shape}")
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        raise TypeError(f"scores must be numeric, got dtype {scores.dtype}")
    scores = scores.astype(np.float64)
    n = len(scores)
    if n == 0:
        raise ValueError("scores is empty: nothing to select from")
    if num_samples is not None and n != num_samples:
        raise ValueError(f"scores has {n} entries but the dataset has {num_samples} samples; "
                         "were the scores computed on another dataset or split?")
    nan = np.flatnonzero(np.isnan(scores))
    if len(nan):
        raise ValueError(f"scores contain {len(nan)} NaN value(s) (e.g. at indices {nan[:10].tolist()}); "
                         "fix or drop them before selecting (-inf is allowed and is pruned first)")
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        raise TypeError(f"ratio must be a number in [0, 1), got {ratio!r}") from None
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio is the fraction of samples removed and must be in [0, 1), got {ratio}")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels has shape {labels.shape} but scores has shape ({n},); they must be "
                             "aligned sample by sample")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
        if labels.min() < 0:
            raise ValueError(f"labels must be >= 0, found {labels.min()}")
        labels = labels.astype(np.int64)
    return scores, ratio, labels


def num_kept(n: int, ratio: float) -> int:
    """How many of ``n`` samples a pruning ratio keeps: ``max(1, round((1 - ratio) * n))``."""
    return max(1, int(np.floor((1.0 - ratio) * n + 0.5 + 1e-9)))


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    # Highest scores first; equal scores keep the lower index first (stable), so it is deterministic.
    return np.argsort(-scores, kind="stable")[:k]


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
    return {int(c): int(q) for c, q in zip(classes, quota)}


def select(scores, ratio: float, *, labels=None, policy: str = "topk", seed: int = 0,
           num_samples: int | None = None) -> np.ndarray:
    """Indices of the samples to keep, sorted, int64.

    Parameters
    ----------
    scores : array, shape (N,)
        Higher = keep. ``-inf`` is allowed (pruned first); NaN is an error.
    ratio : float in [0, 1)
        Fraction of samples removed.
    labels : array of int, shape (N,), optional
        Required by ``policy="class_balanced"``.
    policy : "topk" | "class_balanced" | "random"
        ``topk`` keeps the highest scores overall; ``class_balanced`` keeps the highest
        scores within each class, the same share of every class (see
        :func:`class_quotas` for how remainders are spread); ``random`` keeps a uniformly
        random subset (scores ignored), seeded by ``seed``.
    num_samples : int, optional
        The dataset's length, checked against ``len(scores)``.

    Examples
    --------
    >>> select([0.1, 0.9, 0.5, 0.3], ratio=0.5)
    array([1, 2])
    >>> select([0.1, 0.9, 0.5, 0.3], ratio=0.5, labels=[0, 0, 1, 1], policy="class_balanced")
    array([1, 2])
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; valid: {', '.join(POLICIES)}")
    scores, ratio, labels = _check(scores, ratio, labels, num_samples)
    n = len(scores)
    k = num_kept(n, ratio)
    if policy == "topk":
        keep = _top(scores, k)
    elif policy == "random":
        keep = np.random.default_rng(seed).choice(n, size=k, replace=False)
    else:
        if labels is None:
            raise ValueError("policy='class_balanced' needs labels=")
        keep = []
        for c, q in class_quotas(labels, k).items():
            members = np.flatnonzero(labels == c)
            keep.append(members[_top(scores[members], q)])
        keep = np.concatenate(keep)
    return np.sort(keep).astype(np.int64)
