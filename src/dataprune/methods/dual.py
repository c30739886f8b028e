"""DUAL (Cho et al., ICML 2025): difficulty x prediction uncertainty from early training only.

For sample i let ``p_t`` be the probability of its label at epoch t of the early segment
(the training pass's own prediction). Over every window of ``window`` consecutive epochs,
the score adds ``std(p) * (1 - mean(p))`` -- uncertain *and* difficult -- and averages over
windows. Higher = keep. The surrogate only trains the early segment (the paper: 30 of 200
epochs on CIFAR), which is the point: pruning that costs a fraction of a training run.
Its selection policy ("dual" in :mod:`dataprune.select`) samples with probabilities from a
Beta density over the mean label probability that moves toward easy samples as the pruning
ratio grows, times the score.
"""

from __future__ import annotations

import numpy as np

from .common import finalize
from .dynamics import History, history_from_checkpoints

# The early segment the paper trains, as a share of the schedule (30 of 200 epochs), and the
# fewest epochs that give a standard deviation worth the name on short recipes.
SEGMENT, MIN_EPOCHS = 0.15, 3


def dual_terms(target_prob: np.ndarray, window: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(score, mean_prob)`` from (E, N) label probabilities: the DUAL score and the mean over epochs."""
    p = np.asarray(target_prob, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 2:
        raise ValueError(f"DUAL needs label probabilities of at least 2 epochs, shape (E, N); got {p.shape}")
    window = max(2, min(int(window), p.shape[0]))
    parts = [p[k:k + window].std(0, ddof=1) * (1.0 - p[k:k + window].mean(0)) for k in range(p.shape[0] - window + 1)]
    return np.mean(parts, 0), p.mean(0)


def dual_score(model, checkpoints, dataset, *, window: int = 10, history: History | None = None,
               return_aux: bool = False, batch_size: int = 512, device=None, num_workers: int = 0):
    """DUAL scores, (N,) float64, higher = keep (see the module docstring).

    ``history`` is the surrogate's training record (the pipeline passes it); without one, the
    label probabilities come from eval-mode predictions at the given checkpoints. With
    ``return_aux=True`` also ``{"label_prob": mean label probability}`` for ``policy="dual"``.
    """
    if history is None:
        history = history_from_checkpoints(model, checkpoints, dataset, batch_size=batch_size, device=device,
                                           num_workers=num_workers)
    score, mean_prob = dual_terms(history.target_prob, window)
    score = finalize(score, [], method="dual")
    return (score, {"label_prob": mean_prob}) if return_aux else score


def beta_weights(label_prob: np.ndarray, scores: np.ndarray, ratio: float, *, c_d: float = 4.0,
                 anchor: int = 10) -> np.ndarray:
    """DUAL's ratio-adaptive sampling weights: a Beta(a, b) density over each sample's mean label
    probability, times its score. ``b = 15 (1 - m)(1 - ratio ** c_d)``, ``a = 16 - b``, with ``m`` the
    mean label probability of the ``anchor`` highest-scored samples: at small ratios the density sits
    near those (difficult, uncertain) samples, at large ratios it moves toward easy ones.
    """
    from scipy.stats import beta

    label_prob = np.clip(np.asarray(label_prob, dtype=np.float64), 1e-6, 1 - 1e-6)
    scores = np.asarray(scores, dtype=np.float64)
    top = np.argsort(-scores, kind="stable")[:anchor]
    m = float(label_prob[top].mean())
    b = 15.0 * (1.0 - m) * (1.0 - ratio ** c_d)
    b = max(b, 1e-3)
    weight = beta.pdf(label_prob, 16.0 - b, b) * np.maximum(np.where(np.isfinite(scores), scores, 0.0), 0.0)
    weight = np.nan_to_num(weight, nan=0.0, posinf=0.0, neginf=0.0)
    # A tiny floor keeps every sample drawable, so a budget larger than the support can be met.
    return weight + 1e-12 * max(float(weight.max()), 1.0)
