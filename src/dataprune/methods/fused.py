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

# HeadRecords: MiB of a run's batches (head inputs and logits) held before they are written to the arrays.
FLUSH_MB = 64


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


class HeadRecords:
    """Per-sample records of the classifier head from the training pass, shared by the fused scorer and
    dynamic pruning: the head's input ``a`` (N, D), ``delta`` = softmax - onehot (N, C) and the
    probabilities ``p`` (N, C), float32, in (N, .) arrays; above ``cache_mb`` MiB they live in temporary
    files, freed with this object.

    :meth:`record` only keeps references to the batch's tensors (no softmax, no copy to the host, no
    device synchronisation per step); they are written into the arrays in bulk, every :data:`FLUSH_MB`
    MiB of batches and at :meth:`flush`, which readers of the arrays call first."""

    def __init__(self, n: int, *, cache_mb: float | None, what: str):
        self.n, self.cache_mb, self.what = n, cache_mb, what
        self.head = self.a = self.delta = self.p = None
        self._captured = self._handle = self._spill = None
        self._pending: list = []
        self._pending_bytes = 0

    def attach(self, model, dataset):
        """Find ``model``'s classifier (one eval-mode batch of ``dataset``) and hook its input."""
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                example = example_batch(dataset, next(model.parameters()).device, model_dtype(model))
                _, self.head = find_classifier(model, example)
        finally:
            model.train(was)
        self._handle = self.head.register_forward_hook(lambda m, inp, out: setattr(self, "_captured", inp[0]))
        return self.head

    @property
    def bias(self) -> bool:
        return getattr(self.head, "bias", None) is not None

    def record(self, idx, logits, targets) -> bool:
        """Keep the batch's rows from the last forward pass; False when the head saw no input."""
        a = self._captured
        if a is None:
            return False
        if a.dim() != 2 or len(a) != len(idx):
            raise ValueError(f"the classifier's input has shape {tuple(a.shape)} for a batch of {len(idx)}; "
                             f"{self.what} needs (B, D) from the forward pass of the logits it is given")
        self._captured = None
        targets = torch.as_tensor(targets)
        soft = targets.dim() == 2
        if soft and (targets.shape != logits.shape or not targets.is_floating_point()):
            raise ValueError(f"targets of shape {tuple(targets.shape)} ({targets.dtype}) for logits of shape "
                             f"{tuple(logits.shape)}: expected class indices (B,) or target distributions (B, C) as "
                             "floats (mixup / cutmix / smoothed labels)")
        if not soft and (targets.shape != (len(idx),) or targets.is_floating_point() or targets.dtype == torch.bool):
            raise ValueError(f"targets of shape {tuple(targets.shape)} ({targets.dtype}) for a batch of {len(idx)}: "
                             "expected integer class indices (B,), or target distributions (B, C) as floats")
        self._pending.append((np.asarray(idx, dtype=np.int64), a.detach(), logits.detach(), targets.detach()))
        self._pending_bytes += len(idx) * (a.shape[1] + logits.shape[1]) * 4
        if self._pending_bytes >= FLUSH_MB * 2 ** 20:
            self.flush()
        return True

    def flush(self):
        """Write the batches kept since the last flush into the arrays."""
        if not self._pending:
            return
        idx = np.concatenate([b[0] for b in self._pending])
        a = torch.cat([b[1] for b in self._pending]).float()
        p = torch.softmax(torch.cat([b[2] for b in self._pending]).float(), 1)
        if all(b[3].dim() == 1 for b in self._pending):
            targets = torch.cat([b[3] for b in self._pending]).to(p.device)
            delta = p.clone()
            delta[torch.arange(len(targets), device=p.device), targets] -= 1
        else:                               # target distributions: the gradient of their cross-entropy is p - t
            delta = p - torch.cat([b[3].float() if b[3].dim() == 2 else
                                   torch.nn.functional.one_hot(b[3].long(), p.shape[1]).float()
                                   for b in self._pending]).to(p.device)
        self._pending, self._pending_bytes = [], 0
        if self.a is None:
            self.allocate(a.shape[1], p.shape[1])
        self.a[idx] = a.cpu().numpy()
        self.delta[idx] = delta.cpu().numpy()
        self.p[idx] = p.cpu().numpy()

    def discard(self):
        """Drop the batches kept since the last flush (a resumed run's records start afresh)."""
        self._pending, self._pending_bytes = [], 0

    def allocate(self, width: int, classes: int):
        n = self.n
        if self.cache_mb is not None and n * (width + 2 * classes) * 4 > self.cache_mb * 2 ** 20:
            # Larger than the memory allowed (ImageNet: 1.28M x 2048 features): the records live in files.
            import tempfile

            self._spill = tempfile.TemporaryDirectory(prefix="dataprune-head-")

            def mm(name, cols):
                return np.lib.format.open_memmap(os.path.join(self._spill.name, name), mode="w+",
                                                 dtype=np.float32, shape=(n, cols))
            self.a, self.delta, self.p = mm("a.npy", width), mm("delta.npy", classes), mm("p.npy", classes)
        else:
            self.a = np.zeros((n, width), dtype=np.float32)
            self.delta = np.zeros((n, classes), dtype=np.float32)
            self.p = np.zeros((n, classes), dtype=np.float32)

    def detach(self):
        """Remove the forward hook."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


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
        self._seen = np.zeros(n, bool)
        self._any = False
        self.records = HeadRecords(n, cache_mb=cache_mb, what="fused scoring")

    @property
    def head(self):
        return self.records.head

    def on_train_begin(self, *, model):
        self.records.attach(model, self.dataset)

    def on_batch_end(self, *, epoch, step, indices, logits, targets):
        if epoch not in self.epochs:
            return
        idx = np.asarray(indices)
        if self.records.record(idx, logits, targets):
            self._seen[idx] = True
            self._any = True

    def on_epoch_end(self, *, epoch, model, lr):
        if epoch not in self.epochs or not self._any:
            return
        self._any = False
        seen = self._seen
        rec = self.records
        rec.flush()
        contrib, sq = classwise_head_terms(rec.a, rec.delta, self.groups, len(self.classes), seen, bias=rec.bias)
        self.score += lr * contrib
        self.gradnorm += lr * np.sqrt(sq)
        p = np.asarray(rec.p, dtype=np.float64)
        self.probs = p if self.probs is None else self.probs + p
        self.wrong += p.argmax(1) != self.labels
        self.count += 1
        self._seen[:] = False

    def result(self):
        self.records.detach()
        if not self.count:
            raise RuntimeError(f"fused scoring recorded no epoch (asked for epochs {sorted(self.epochs)})")
        aux = {"probs": (self.probs / self.count).astype(np.float32), "gradnorm": self.gradnorm,
               "disagreement": self.wrong / self.count}
        return finalize(self.score, [], method="moso_class (fused)"), aux
