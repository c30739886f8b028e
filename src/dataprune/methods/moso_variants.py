"""MoSo variants that hold up on real data, and the per-sample evidence the noise-aware
selection policies use.

Why variants: the published score's dominant term is the alignment ``gbar . g_i`` with the
*whole set's* mean gradient, and that mean is dominated by the samples with the largest
gradients -- the hard and the mislabelled ones -- so alignment with it rewards exactly
those. Two fixes, measured in ``docs/when-does-moso-help.md``:

* class-wise MoSo: align each sample with the mean gradient of *its own class*, its own
  contribution removed: ``sum_t eta_t g_i . (n_c gbar_c - g_i) / (n_c - 1)``;
* normalised class-wise alignment: the class-wise alignment divided by ``||g_i||``, so a large
  gradient is not rewarded for its size.

Under label noise the mislabelled samples of a class agree with each other, so alignment
alone cannot find them; the selection policies ``auto`` and ``noise_cutoff``
(:mod:`dataprune.select`) first set aside, per class, the samples whose label looks wrong.
Every function here returns float64 (N,) scores, higher = keep, and with ``return_aux=True``
also the per-sample evidence those policies use, recorded along the trajectory at no extra
forward pass:

* ``probs`` (N, C): the surrogate's class probabilities (eval mode, from the scoring pass itself)
  averaged over the checkpoints of the early trajectory: epochs up to :data:`dataprune.evidence.EVIDENCE_SEGMENT` of
  the last checkpoint's, and at least the first two checkpoints. Later, a network memorises wrong
  labels and its outputs stop contradicting them (measured: benchmarks/fit_default.py). The
  training pass's own outputs over the same epochs were measured too and found worse evidence
  (mnist5k, CNN, 40% pair-flip noise: 59% of the wrong labels found, against 84% in eval mode);
* ``gradnorm``: ``sum_t eta_t ||g_i||`` (large = suspicious);
* ``disagreement``: the fraction of checkpoints at which the surrogate's prediction differs
  from the given label.
"""

from __future__ import annotations

import numpy as np

from ..data import get_targets
from ..evidence import FEATURE_DIMS, as_evidence_features, early_checkpoints
from ..grads.terms import TermOptions, checkpoint_terms
from ..utils import row_blocks
from .common import finalize, load_checkpoint, resumable_terms, setup_run

AUX = ("probs", "gradnorm", "disagreement")
KINDS = ("class", "normalized")
def classwise_terms(model, checkpoints, dataset, *, kind: str = "class", work_dir: str | None = None,
                    evidence_epochs=None, evidence_features: bool = False, **options) -> tuple[np.ndarray, dict]:
    """Scores of ``kind`` and the evidence dict (:data:`AUX`), one pass over the checkpoints.
    ``evidence_epochs``: the checkpoints whose probabilities are the ``probs`` evidence (chosen by
    :func:`dataprune.evidence.judge`); default the early segment (:func:`early_checkpoints`).
    ``evidence_features``: the evidence ``features`` too (:func:`dataprune.evidence.features`: penultimate
    features at the last checkpoint), where the scoring pass computes them anyway -- the closed-form head pass
    (``params="last_layer"``); elsewhere they are left out and :func:`dataprune.pipeline.scores_with_evidence`
    reads them in a pass of their own."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    opts = TermOptions.from_kwargs(options, what=f"moso_{'class' if kind == 'class' else 'norm'}")
    cks, work, store = setup_run(model, checkpoints, dataset, work_dir, {"method": f"moso-{kind}"}, opts)
    labels = get_targets(dataset)
    classes, groups = np.unique(labels, return_inverse=True)
    # Class-sorted order keeps every batch within one class: one mean gradient per batch.
    order = np.argsort(groups, kind="stable")
    n = len(dataset)
    score, gradnorm, wrong = np.zeros(n), np.zeros(n), np.zeros(n)
    probs = None
    if evidence_epochs is None:
        early = set(early_checkpoints([ck.epoch for ck in cks]))
    else:
        early = {k for k, ck in enumerate(cks) if ck.epoch in {int(e) for e in evidence_epochs}}
        if not early:
            raise ValueError(f"evidence_epochs {list(evidence_epochs)} name none of the checkpoints' epochs "
                             f"{[ck.epoch for ck in cks]}")
    bad: set[int] = set()
    features = None
    for k, ck in enumerate(cks):
        last = k == len(cks) - 1

        def compute(ck=ck, k=k, last=last):
            load_checkpoint(work, ck, k)
            return checkpoint_terms(work, dataset, opts, need_sq=True, need_probs=True, groups=groups,
                                    num_groups=len(classes), order=order, desc=f"ckpt {k + 1}/{len(cks)}",
                                    need_features=FEATURE_DIMS if evidence_features and last else None)

        terms = resumable_terms(store, k, ck, compute)
        if evidence_features and last and terms.features is not None:
            features = as_evidence_features(terms.features)
        bad |= set(terms.bad)
        ok = np.ones(n, bool)
        ok[list(terms.bad)] = False
        sq = np.where(ok, np.maximum(np.nan_to_num(terms.sq, nan=0.0), 0.0), 0.0)
        dot = np.where(ok, terms.dot, 0.0)
        counts = terms.counts[groups].astype(np.float64)
        # g_i . (mean gradient of the *other* samples of its class), from its class's full mean.
        contrib = (counts * dot - sq) / np.maximum(counts - 1, 1)
        if kind == "normalized":
            contrib = np.where(sq > 0, contrib / np.sqrt(np.maximum(sq, 1e-300)), 0.0)
        score += ck.lr * contrib
        gradnorm += ck.lr * np.sqrt(sq)
        if k in early and probs is None:
            probs = np.zeros(terms.probs.shape)
        # In blocks of rows: at ImageNet-1k an (N, C) float64 copy is 10 GB.
        for a, b in row_blocks(n):
            p = np.nan_to_num(terms.probs[a:b].astype(np.float64), nan=0.0)
            if k in early:
                probs[a:b] += p
            wrong[a:b] += np.where(ok[a:b], p.argmax(1) != labels[a:b], 1.0)
    score = finalize(score, bad, method=f"moso_{'class' if kind == 'class' else 'norm'}")
    if bad:
        gradnorm[sorted(bad)] = np.inf
    mean = np.empty(probs.shape, dtype=np.float32)
    for a, b in row_blocks(n):
        mean[a:b] = probs[a:b] / len(early)
    aux = {"probs": mean, "gradnorm": gradnorm, "disagreement": wrong / len(cks)}
    if features is not None:
        aux["features"] = features
    return score, aux


def classwise_score(model, checkpoints, dataset, *, return_aux: bool = False, work_dir: str | None = None,
                    evidence_epochs=None, evidence_features: bool = False, **options):
    """Class-wise MoSo, higher = keep: ``sum_t eta_t g_i . (n_c gbar_c - g_i) / (n_c - 1)``.

    Each sample is compared with the mean gradient of the *other* samples of its class at
    every checkpoint (memory: one mean gradient per class). Options as
    :func:`dataprune.moso.score`; ``return_aux=True`` also returns the evidence dict
    (``probs``, ``gradnorm``, ``disagreement``) for ``policy="auto"`` / ``"noise_cutoff"``.
    """
    score, aux = classwise_terms(model, checkpoints, dataset, kind="class", work_dir=work_dir,
                                 evidence_epochs=evidence_epochs, evidence_features=evidence_features, **options)
    return (score, aux) if return_aux else score


def normalized_score(model, checkpoints, dataset, *, return_aux: bool = False, work_dir: str | None = None,
                     evidence_epochs=None, evidence_features: bool = False, **options):
    """Normalised class-wise MoSo, higher = keep: the class-wise alignment divided by ``||g_i||``,
    so that a sample is rewarded for the direction of its gradient, not its size."""
    score, aux = classwise_terms(model, checkpoints, dataset, kind="normalized", work_dir=work_dir,
                                 evidence_epochs=evidence_epochs, evidence_features=evidence_features, **options)
    return (score, aux) if return_aux else score
