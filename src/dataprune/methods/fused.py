"""Class-wise MoSo over the classifier head, fused into surrogate training: no scoring pass.

The training step already computes, for every sample of the batch, the head's input ``a_i``
and the logits, hence ``delta_i = softmax - onehot`` and the head's per-sample gradient
``delta_i [a_i, 1]^T``. This callback keeps them for the epochs it records and, at the end
of each, forms every class's mean head gradient and the class-wise alignment terms exactly as
:func:`dataprune.methods.moso_variants.classwise_score` with ``params="last_layer"`` does --
with the features of the training pass (train-mode normalisation, augmentation, weights that
move during the epoch) instead of an eval-mode pass at the epoch's final weights. That is the
approximation that makes scoring nearly free; ``benchmarks/cost.py`` measures both.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .. import distributed as dist
from ..data import get_targets
from ..grads.capture import find_classifier
from ..grads.terms import example_batch
from ..utils import model_dtype
from .common import finalize


def classwise_head_terms(a, delta, groups, n_groups, seen, *, bias: bool, reduce=None):
    """Class-wise MoSo terms of the classifier head from the training pass: ``(contrib, sq)``, each (N,).

    ``a`` (N, D) are the head's inputs and ``delta`` (N, C) = softmax - onehot of the samples ``seen``
    (a bool mask) in this epoch; ``groups`` (N,) the class of every sample. The head's per-sample gradient
    is ``delta_i [a_i, 1]^T`` with a bias, ``delta_i a_i^T`` without: the same feature row as the
    last-layer closed form (grads.lastlayer). ``contrib`` is the alignment with the own class's mean
    gradient with the self-term removed (0 where not seen); ``sq`` the squared gradient norms.

    ``reduce(list of arrays) -> list of arrays`` sums across processes (each holding the samples it
    trained on): every class's gradient sum and count are reduced before the terms are formed, so the
    class means are those of all the processes' samples."""
    n = len(a)
    sq = np.zeros(n)
    dot = np.zeros(n)
    counts = np.zeros(n_groups)
    width = a.shape[1] + (1 if bias else 0)
    # One class at a time in float64: the memory held beyond the float32 records is one class's rows.
    for g in range(n_groups):
        rows = np.flatnonzero((groups == g) & seen)
        if not len(rows) and reduce is None:
            continue
        f = np.asarray(a[rows], dtype=np.float64)
        if bias:
            f = np.concatenate([f, np.ones((len(rows), 1))], 1)
        d = np.asarray(delta[rows], dtype=np.float64)
        total = d.T @ f if len(rows) else np.zeros((delta.shape[1], width))
        count = np.array([float(len(rows))])
        if reduce is not None:
            total, count = reduce([total, count])
        counts[g] = count[0]
        if not len(rows) or not counts[g]:
            continue
        sq[rows] = (d * d).sum(1) * (f * f).sum(1)
        mean = total / counts[g]                    # (C, D[+1]): the class's mean head gradient
        dot[rows] = ((f @ mean.T) * d).sum(1)
    nc = counts[groups]
    contrib = np.where(seen, (nc * dot - sq) / np.maximum(nc - 1, 1), 0.0)
    return contrib, np.where(seen, sq, 0.0)


class FusedClasswise:
    """Training callback; after training, :meth:`result` gives ``(scores, aux)`` like
    ``classwise_score(..., params="last_layer", return_aux=True)``."""

    def __init__(self, dataset, epochs, *, cache_mb: float | None = 4096):
        if dist.is_distributed():
            raise ValueError("fused scoring runs in one process; under torchrun score without it")
        self.dataset = dataset
        self.epochs = {int(e) for e in epochs}
        self.labels = get_targets(dataset)
        self.classes, self.groups = np.unique(self.labels, return_inverse=True)
        n = len(dataset)
        self.score = np.zeros(n)
        self.gradnorm = np.zeros(n)
        self.wrong = np.zeros(n)
        self.probs = None
        self.count = 0
        self._a = self._delta = None
        self._seen = np.zeros(n, bool)
        self._captured = None
        self._handle = None
        self._any = False
        self._spill = None
        self.cache_mb = cache_mb

    def on_train_begin(self, *, model):
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                example = example_batch(self.dataset, next(model.parameters()).device, model_dtype(model))
                _, self.head = find_classifier(model, example)
        finally:
            model.train(was)
        self._handle = self.head.register_forward_hook(lambda m, inp, out: setattr(self, "_captured", inp[0]))

    def on_batch_end(self, *, epoch, step, indices, logits, targets):
        if epoch not in self.epochs or self._captured is None:
            return
        a = self._captured.detach()
        if a.dim() != 2:
            raise ValueError(f"the classifier's input has shape {tuple(a.shape)}; fused scoring needs (B, D)")
        p = torch.softmax(logits.detach().float(), 1).cpu()
        delta = p.clone()
        delta[torch.arange(len(targets)), targets.cpu()] -= 1
        if self._a is None:
            self._allocate(a.shape[1], p.shape[1])
        idx = np.asarray(indices)
        # Written straight into the (N, D) record: no second per-epoch copy of the batches.
        self._a[idx] = a.float().cpu().numpy()
        self._delta[idx] = delta.numpy()
        self._p[idx] = p.numpy()
        self._seen[idx] = True
        self._any = True

    def _allocate(self, width, classes):
        n = len(self.dataset)
        need = n * (width + 2 * classes) * 4
        if self.cache_mb is not None and need > self.cache_mb * 2 ** 20:
            # Larger than the memory allowed: the records live in files (freed when this object goes).
            import tempfile

            self._spill = tempfile.TemporaryDirectory(prefix="dataprune-fused-")
            def mm(name, cols):
                return np.lib.format.open_memmap(os.path.join(self._spill.name, name), mode="w+",
                                                 dtype=np.float32, shape=(n, cols))
            self._a, self._delta, self._p = mm("a.npy", width), mm("delta.npy", classes), mm("p.npy", classes)
        else:
            self._a = np.zeros((n, width), dtype=np.float32)
            self._delta = np.zeros((n, classes), dtype=np.float32)
            self._p = np.zeros((n, classes), dtype=np.float32)

    def on_epoch_end(self, *, epoch, model, lr):
        if epoch not in self.epochs or not self._any:
            return
        self._any = False
        seen = self._seen
        contrib, sq = classwise_head_terms(self._a, self._delta, self.groups, len(self.classes), seen,
                                           bias=getattr(self.head, "bias", None) is not None)
        self.score += lr * contrib
        self.gradnorm += lr * np.sqrt(sq)
        p = np.asarray(self._p, dtype=np.float64)
        self.probs = p if self.probs is None else self.probs + p
        self.wrong += p.argmax(1) != self.labels
        self.count += 1
        self._seen[:] = False

    def result(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if not self.count:
            raise RuntimeError(f"fused scoring recorded no epoch (asked for epochs {sorted(self.epochs)})")
        aux = {"probs": (self.probs / self.count).astype(np.float32), "gradnorm": self.gradnorm,
               "disagreement": self.wrong / self.count}
        return finalize(self.score, [], method="moso_class (fused)"), aux
