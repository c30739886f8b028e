"""MoSo: moving-one-sample-out (Tan et al., "Data Pruning via Moving-one-Sample-out",
NeurIPS 2023).

A sample's score approximates how much the optimal empirical risk of the rest of the
training set changes when it is left out, to first order along a training trajectory.
With ``g_i`` the per-sample gradient at checkpoint ``t`` (learning rate ``eta_t``) and
``gbar`` the mean gradient over the N scored samples::

    M(z_i) = sum_t eta_t [(2N-3)||gbar||^2 - ||g_i||^2 + (2N-4)(gbar.g_i - ||g_i||^2/N)] / (N-1)^2

(``form="exact"``, the form the method's authors ran), or the plain first-order
alignment ``sum_t eta_t gbar.g_i`` (``form="alignment"``). Higher = keep: samples whose
gradient agrees with the set's are kept.

The paper expects mislabelled samples to disagree with the set and go first. Measured here
they often do not: late in training the mean gradient is dominated by the large gradients of
hard and mislabelled samples, so those align best (with 20% flipped labels on mnist5k, MoSo as
published kept 33.6% mislabelled samples at ratio 0.9 where random pruning keeps 17.5%; see
docs/when-does-moso-help.md). The class-wise variants and the ``auto`` policy address that.
"""

from __future__ import annotations

import numpy as np
import torch

from ..grads.terms import CheckpointTerms, TermOptions, checkpoint_terms
from .common import finalize, load_checkpoint, resumable_terms, setup_run

FORMS = ("exact", "alignment")


def exact_terms(dot: np.ndarray, sq: np.ndarray, gbar_sq: float, n: int) -> np.ndarray:
    """The authors' per-checkpoint expression (before the learning-rate weight)."""
    return ((2 * n - 3) * gbar_sq - sq + (2 * n - 4) * (dot - sq / n)) / (n - 1) ** 2


def combine(terms: CheckpointTerms, lr: float, form: str) -> np.ndarray:
    """One checkpoint's contribution ``eta_t * (...)`` to the MoSo score (NaN where the loss was not finite)."""
    n = int(terms.counts.sum())
    if form == "alignment":
        return lr * terms.dot
    if n < 2:
        raise ValueError(f"MoSo's exact form needs at least 2 samples with a finite loss, got {n}")
    return lr * exact_terms(terms.dot, terms.sq, float(terms.gbar_sq[0]), n)


def _check_form(form, options):
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if options.backend == "jvp" and form != "alignment":
        raise ValueError("backend='jvp' gives dot products only; use form='alignment' or backend='hooks'")


def score(model: torch.nn.Module, checkpoints, dataset, *, form: str = "exact", work_dir: str | None = None,
          **options) -> np.ndarray:
    """MoSo scores, shape ``(N,)`` float64, **higher = keep**.

    Parameters
    ----------
    model : torch.nn.Module
        The architecture; each checkpoint's weights are loaded into a private copy (the
        caller's model is not modified). Scored in eval mode.
    checkpoints : iterable of ``(state_dict, learning_rate)`` pairs or :class:`Checkpoint`
    dataset : map-style Dataset yielding ``(input, integer_label)``
        Scored without augmentation, in index order.
    form : "exact" | "alignment"
        The authors' leave-one-out expression, or ``sum_t eta_t gbar . g_i``.
    work_dir : str, optional
        Folder for per-checkpoint partial results. A run that is killed and started again
        with the same arguments reuses every finished checkpoint (checked by checksum and
        by a key of the checkpoint's weights, the dataset fingerprint and the options).
    **options
        How the terms are computed (:class:`~dataprune.grads.terms.TermOptions`): ``batch_size``
        (256), ``device``, ``params`` ("all" | "last_layer" | parameter names or modules; the
        last layer uses a closed form, one forward pass per checkpoint), ``loss_fn``, ``backend``
        ("hooks" | "functorch" | "jvp"), ``accumulate``, ``num_workers``, ``progress``,
        ``cache_mb``, ``kernels``.

    Returns
    -------
    scores : ndarray, shape (N,), float64
        Units: learning rate x squared gradient norm, summed over checkpoints. Samples
        whose loss is NaN/inf at some checkpoint get ``-inf`` (pruned first) and a
        warning names them.
    """
    opts = TermOptions.from_kwargs(options, what="moso.score")
    _check_form(form, opts)
    key = {"method": "moso", "need_sq": form == "exact"}
    cks, work, store = setup_run(model, checkpoints, dataset, work_dir, key, opts)
    total = np.zeros(len(dataset))
    bad: set[int] = set()
    for k, ck in enumerate(cks):
        def compute(ck=ck, k=k):
            load_checkpoint(work, ck, k)
            return checkpoint_terms(work, dataset, opts, need_sq=form == "exact", desc=f"ckpt {k + 1}/{len(cks)}")

        terms = resumable_terms(store, k, ck, compute)
        bad |= set(terms.bad)
        total += _finite_part(combine(terms, ck.lr, form), terms.bad)
    return finalize(total, bad, method="moso")


def _finite_part(contrib: np.ndarray, bad) -> np.ndarray:
    """A checkpoint's contribution with the samples of non-finite loss zeroed (they end at -inf anyway);
    a non-finite value anywhere else is kept, so :func:`finalize` reports it."""
    out = contrib.copy()
    out[list(bad)] = 0.0
    return out


class MoSoCallback:
    """Online MoSo: score at chosen epochs of a training run, no checkpoints on disk.

    Pass to :func:`dataprune.train.train` as a callback; after training,
    :meth:`scores` returns what :func:`score` would return for the same checkpoints.
    Options as :func:`score`.

    >>> cb = MoSoCallback(dataset, epochs=[1, 3, 5])                  # doctest: +SKIP
    >>> train(model, dataset, epochs=5, callbacks=[cb]); cb.scores()  # doctest: +SKIP
    """

    def __init__(self, dataset, epochs, *, form: str = "exact", **options):
        self.options = TermOptions.from_kwargs(options, what="MoSoCallback")
        _check_form(form, self.options)
        self.dataset, self.epochs, self.form = dataset, {int(e) for e in epochs}, form
        self.total = np.zeros(len(dataset))
        self.bad: set[int] = set()
        self.scored_epochs: list[tuple[int, float]] = []

    def on_epoch_end(self, *, epoch: int, model: torch.nn.Module, lr: float) -> None:
        if epoch not in self.epochs:
            return
        was_training = model.training
        model.eval()
        try:
            from dataclasses import replace

            opts = replace(self.options, device=next(model.parameters()).device)
            terms = checkpoint_terms(model, self.dataset, opts, need_sq=self.form == "exact", desc=f"epoch {epoch}")
        finally:
            model.train(was_training)
        self.bad |= set(terms.bad)
        self.total += _finite_part(combine(terms, lr, self.form), terms.bad)
        self.scored_epochs.append((epoch, lr))

    def scores(self) -> np.ndarray:
        missing = self.epochs - {e for e, _ in self.scored_epochs}
        if missing:
            raise RuntimeError(f"epochs {sorted(missing)} were never reached by training")
        return finalize(self.total, self.bad, method="moso")
