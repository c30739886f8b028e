"""MoSo variants that hold up on real data, and the per-sample evidence the noise-aware
selection policies use.

Why variants: the published score's dominant term is the alignment ``gbar . g_i`` with the
*whole set's* mean gradient, and that mean is dominated by the samples with the largest
gradients -- the hard and the mislabelled ones -- so alignment with it rewards exactly
those. Two fixes, measured in ``docs/when-does-moso-help.md``:

* class-wise MoSo: align each sample with the mean gradient of *its own class*, its own
  contribution removed: ``sum_t eta_t g_i . (n_c gbar_c - g_i) / (n_c - 1)``;
* normalised alignment: divide by ``||g_i||`` so a large gradient is not rewarded for its size.

Under label noise the mislabelled samples of a class agree with each other, so alignment
alone cannot find them; the selection policies ``noise_cutoff`` and ``auto``
(:mod:`dataprune.select`) first drop, per class, the samples with the largest gradient
norm accumulated over the trajectory. Every function here returns float64 (N,) scores,
higher = keep, and with ``return_aux=True`` also the evidence those policies need:

* ``gradnorm``: ``sum_t eta_t ||g_i||`` (large = suspicious);
* ``disagreement``: the fraction of checkpoints at which the surrogate's prediction differs
  from the given label (its mean over samples estimates the label-noise rate).
"""

from __future__ import annotations

import numpy as np

from ..data import get_targets
from ..train import predict
from .moso import _resumable_terms, checkpoint_terms, load_checkpoint, setup_run

AUX = ("gradnorm", "disagreement")


def _family(model, checkpoints, dataset, *, kind, batch_size, device, params, loss_fn, backend, accumulate,
            num_workers, progress, cache_mb, work_dir):
    cks, cfg, work, store = setup_run(model, checkpoints, dataset, work_dir, {"method": f"moso-{kind}"},
                                      batch_size=batch_size, device=device, params=params, loss_fn=loss_fn,
                                      backend=backend, accumulate=accumulate, num_workers=num_workers,
                                      progress=progress, cache_mb=cache_mb)
    labels = get_targets(dataset)
    classes, groups = np.unique(labels, return_inverse=True)
    # Class-sorted order keeps every batch within one class: one mean gradient per batch.
    order = np.argsort(groups, kind="stable")
    n = len(dataset)
    score, gradnorm, wrong = np.zeros(n), np.zeros(n), np.zeros(n)
    bad: set[int] = set()
    for k, ck in enumerate(cks):
        def compute(ck=ck, k=k):
            load_checkpoint(work, ck, k)
            t = checkpoint_terms(work, dataset, cfg, need_sq=True, groups=groups, num_groups=len(classes),
                                 order=order, desc=f"ckpt {k + 1}/{len(cks)}")
            pred = predict(work, dataset, batch_size=max(batch_size, 512), device=cfg.device,
                           num_workers=num_workers).argmax(1).numpy()
            t["wrong"] = (pred != labels).astype(np.float64)
            return t

        terms = _resumable_terms(store, k, ck, compute)
        bad |= set(int(b) for b in terms["bad"])
        sq = np.maximum(terms["sq"], 0.0)
        dot = terms["dot"]
        counts = terms["counts"][groups].astype(np.float64)
        if kind == "class":
            contrib = (counts * dot - sq) / np.maximum(counts - 1, 1)
        else:  # normalised class-wise alignment, self-term removed, per unit of ||g_i||
            contrib = (counts * dot - sq) / np.maximum(counts - 1, 1) / np.sqrt(np.maximum(sq, 1e-300))
        score += ck.lr * np.nan_to_num(contrib, nan=0.0)
        gradnorm += ck.lr * np.sqrt(np.nan_to_num(sq, nan=0.0))
        wrong += terms["wrong"]
    if bad:
        idx = sorted(bad)
        score[idx] = -np.inf
        gradnorm[idx] = np.inf
    aux = {"gradnorm": gradnorm, "disagreement": wrong / len(cks)}
    return score, aux


def classwise_score(model, checkpoints, dataset, *, return_aux: bool = False, batch_size: int = 256, device=None,
                    params="all", loss_fn=None, backend: str = "hooks", accumulate: str = "float64",
                    num_workers: int = 0, progress: bool = False, cache_mb: float = 256,
                    work_dir: str | None = None):
    """Class-wise MoSo, higher = keep: ``sum_t eta_t g_i . (n_c gbar_c - g_i) / (n_c - 1)``.

    Each sample is compared with the mean gradient of the *other* samples of its class at
    every checkpoint (memory: one mean gradient per class). Options as
    :func:`dataprune.moso.score`; ``return_aux=True`` also returns the evidence dict
    (``gradnorm``, ``disagreement``) for ``policy="noise_cutoff"`` / ``"auto"``.
    """
    score, aux = _family(model, checkpoints, dataset, kind="class", batch_size=batch_size, device=device,
                         params=params, loss_fn=loss_fn, backend=backend, accumulate=accumulate,
                         num_workers=num_workers, progress=progress, cache_mb=cache_mb, work_dir=work_dir)
    return (score, aux) if return_aux else score


def normalized_score(model, checkpoints, dataset, *, return_aux: bool = False, batch_size: int = 256,
                     device=None, params="all", loss_fn=None, backend: str = "hooks", accumulate: str = "float64",
                     num_workers: int = 0, progress: bool = False, cache_mb: float = 256,
                     work_dir: str | None = None):
    """Normalised class-wise MoSo, higher = keep: class-wise alignment divided by ``||g_i||``,
    so that a sample is rewarded for the direction of its gradient, not its size."""
    score, aux = _family(model, checkpoints, dataset, kind="normalized", batch_size=batch_size, device=device,
                         params=params, loss_fn=loss_fn, backend=backend, accumulate=accumulate,
                         num_workers=num_workers, progress=progress, cache_mb=cache_mb, work_dir=work_dir)
    return (score, aux) if return_aux else score


def trajectory_gradnorm_score(model, checkpoints, dataset, **kw) -> np.ndarray:
    """``-sum_t eta_t ||g_i||`` (higher = smaller accumulated gradient = keep): the evidence the
    noise-aware policies use, as a score of its own."""
    _, aux = _family(model, checkpoints, dataset, kind="class", **_defaults(kw))
    return -aux["gradnorm"]


def _defaults(kw):
    base = dict(batch_size=256, device=None, params="all", loss_fn=None, backend="hooks", accumulate="float64",
                num_workers=0, progress=False, cache_mb=256, work_dir=None)
    unknown = set(kw) - set(base)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}")
    return {**base, **kw}


def estimated_noise_rate(disagreement: np.ndarray) -> float:
    """Share of samples whose label the surrogate contradicts at a majority of checkpoints."""
    d = np.asarray(disagreement, dtype=np.float64)
    return float(np.mean(d > 0.5))
