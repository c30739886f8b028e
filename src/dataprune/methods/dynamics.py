"""Scores from training dynamics: how a sample's prediction moves over training.

Each method reads a :class:`History`: per epoch and sample, whether the prediction was
correct, the margin of the assigned label, the probability of the assigned label, and
how much the predicted distribution changed since the previous epoch. A history comes
either from the surrogate's training itself (:class:`DynamicsRecorder`, a training
callback that sees every presentation, with augmentation, as the papers do) or from
eval-mode predictions at saved checkpoints (:func:`history_from_checkpoints`).

Conventions: every score is float64 of shape (N,), **higher = keep**. Difficulty-type
scores keep the hard samples by default (``keep="hard"``); ``keep="easy"`` reverses the
order, which the literature prefers at high pruning ratios.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data import get_targets
from ..train import predict
from ..trajectory import as_checkpoints, load_state
from ..utils import resolve_device
from .common import finalize, orient, prepare_model


@dataclass
class History:
    """Per-epoch records, each (E, N): rows are epochs in order."""

    correct: np.ndarray        # bool: prediction == assigned label
    margin: np.ndarray         # logit of the assigned label minus the largest other logit
    target_prob: np.ndarray    # softmax probability of the assigned label
    change: np.ndarray         # sum_c p_t(c) |log p_t(c) - log p_{t-1}(c)|; NaN in the first epoch
    seen: np.ndarray           # bool: the sample was presented in that epoch

    def arrays(self) -> dict:
        """The fields that hold arrays (for saving)."""
        return dict(self.__dict__)


def _stats(logits: torch.Tensor, targets: torch.Tensor, prev_logp: torch.Tensor | None):
    logp = F.log_softmax(logits.float(), 1)
    p = logp.exp()
    rows = torch.arange(len(targets), device=logits.device)
    target_logit = logits[rows, targets]
    others = logits.clone()
    others[rows, targets] = -torch.inf
    margin = target_logit - others.max(1).values
    change = None if prev_logp is None else (p * (logp - prev_logp).abs()).sum(1)
    return logits.argmax(1) == targets, margin, p[rows, targets], change, logp


class DynamicsRecorder:
    """Training callback recording every presentation of every sample (see :class:`History`).

    Memory: four float arrays of (epochs x N) plus the last log-probabilities (N x C).
    """

    def __init__(self, n: int):
        self.n = n
        self.rows: list[dict] = []
        self._prev = None  # (N, C) last log-probabilities of each sample
        self._pending: list = []

    def _row(self, epoch):
        while len(self.rows) < epoch:
            self.rows.append({"correct": np.zeros(self.n, bool), "margin": np.full(self.n, np.nan),
                              "target_prob": np.full(self.n, np.nan), "change": np.full(self.n, np.nan),
                              "seen": np.zeros(self.n, bool)})
        return self.rows[epoch - 1]

    def on_batch_end(self, *, epoch, step, indices, logits, targets):
        # Only a copy per batch; the per-sample statistics are computed once per epoch, vectorised
        # (the per-batch work was most of the cost of recording on small models).
        self._pending.append((epoch, np.asarray(indices), logits.detach().float().cpu(), targets.detach().cpu()))

    def on_epoch_end(self, *, epoch, model=None, lr=None):
        self._flush()

    def state_dict(self) -> dict:
        """The record so far, as tensors (for a resumed training run: :func:`dataprune.train`'s ``resume_file``)."""
        self._flush()
        return {"rows": [{k: torch.from_numpy(v.copy()) for k, v in row.items()} for row in self.rows],
                "prev": self._prev}

    def load_state_dict(self, state: dict) -> None:
        self.rows = [{k: v.numpy().copy() for k, v in row.items()} for row in state["rows"]]
        self._prev, self._pending = state["prev"], []

    def _flush(self):
        if not self._pending:
            return
        by_epoch: dict = {}
        for epoch, idx, logits, targets in self._pending:
            by_epoch.setdefault(epoch, []).append((idx, logits, targets))
        self._pending = []
        for epoch, parts in sorted(by_epoch.items()):
            indices = np.concatenate([p[0] for p in parts])
            logits = torch.cat([p[1] for p in parts])
            targets = torch.cat([p[2] for p in parts])
            self._record(epoch, indices, logits, targets)

    def _record(self, epoch, indices, logits, targets):
        row = self._row(epoch)
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self._prev is None:
            self._prev = torch.full((self.n, logits.shape[1]), float("nan"))
        prev = self._prev[idx]
        have_prev = ~torch.isnan(prev[:, 0])
        correct, margin, tp, change, logp = _stats(logits, targets, prev)
        change = torch.where(have_prev, change, torch.full_like(change, float("nan")))
        row["correct"][indices] = correct.numpy()
        row["margin"][indices] = margin.double().numpy()
        row["target_prob"][indices] = tp.double().numpy()
        row["change"][indices] = change.double().numpy()
        row["seen"][indices] = True
        self._prev[idx] = logp

    def history(self) -> History:
        """The recorded history; under DDP every rank saw only its share of each batch, so the
        ranks' records are merged (each sample's entries come from the rank that saw it)."""
        from .. import distributed as dist

        self._flush()
        rows = self.rows
        if dist.is_distributed():
            merged = []
            for per_rank in zip(*dist.gather_objects(rows), strict=True):
                row = {k: v.copy() for k, v in per_rank[0].items()}
                for other in per_rank[1:]:
                    seen = other["seen"]
                    for k in row:
                        row[k][seen] = other[k][seen]
                merged.append(row)
            rows = merged
        if not rows:
            raise RuntimeError("no training batches were recorded")
        return History(**{k: np.stack([r[k] for r in rows]) for k in rows[0]})


def history_from_checkpoints(model, checkpoints, dataset, *, batch_size: int = 512, device=None,
                             num_workers: int = 0) -> History:
    """A :class:`History` from eval-mode predictions of the whole dataset at every checkpoint."""
    cks = as_checkpoints(checkpoints)
    device = resolve_device(device)
    work = prepare_model(model, device)
    targets = torch.from_numpy(get_targets(dataset))
    out = {k: [] for k in ("correct", "margin", "target_prob", "change", "seen")}
    prev = None
    for ck in cks:
        load_state(work, ck.state, what=f"checkpoint at epoch {ck.epoch}")
        logits = predict(work, dataset, batch_size=batch_size, device=device, num_workers=num_workers)
        correct, margin, tp, change, prev = _stats(logits, targets, prev)
        out["correct"].append(correct.numpy())
        out["margin"].append(margin.double().numpy())
        out["target_prob"].append(tp.double().numpy())
        out["change"].append(np.full(len(targets), np.nan) if change is None else change.double().numpy())
        out["seen"].append(np.ones(len(targets), bool))
    return History(**{k: np.stack(v) for k, v in out.items()})


def forgetting_counts(correct: np.ndarray, seen: np.ndarray | None = None) -> np.ndarray:
    """Forgetting events per sample (Toneva et al. 2019) from (E, N) correctness records.

    A forgetting event is a presentation classified incorrectly after one classified
    correctly. Samples never classified correctly count as most forgettable: they get
    ``max count + 1``.
    """
    correct = np.asarray(correct, bool)
    seen = np.ones_like(correct) if seen is None else np.asarray(seen, bool)
    n = correct.shape[1]
    counts = np.zeros(n, dtype=np.float64)
    ever = np.zeros(n, bool)
    last = np.zeros(n, bool)       # last seen state
    for t in range(correct.shape[0]):
        s, c = seen[t], correct[t]
        counts += s & last & ~c
        last = np.where(s, c, last)
        ever |= s & c
    counts[~ever] = counts.max(initial=0) + 1
    return counts


def area_under_margin(margin: np.ndarray, seen: np.ndarray | None = None) -> np.ndarray:
    """Mean margin of the assigned label over presentations (Pleiss et al. 2020)."""
    margin = np.asarray(margin, np.float64)
    seen = ~np.isnan(margin) if seen is None else np.asarray(seen, bool) & ~np.isnan(margin)
    return np.where(seen, margin, 0).sum(0) / np.maximum(seen.sum(0), 1)


def dynamic_uncertainty(target_prob: np.ndarray, window: int = 10) -> np.ndarray:
    """Dyn-Unc (He et al. 2023): over sliding windows of ``window`` epochs, the standard deviation
    of the assigned label's probability; averaged over windows."""
    p = np.asarray(target_prob, np.float64)
    e = p.shape[0]
    window = min(window, e)
    if window < 2:
        raise ValueError(f"Dyn-Unc needs at least 2 epochs of history, got {e}")
    stds = [p[k:k + window].std(0) for k in range(e - window + 1)]
    return np.mean(stds, 0)


def temporal_dual_depth(change: np.ndarray, window: int = 10, decay: float = 0.9) -> np.ndarray:
    """TDDS (Zhang et al., CVPR 2024).

    ``change[t]`` approximates sample i's contribution at epoch t by how much its predicted
    distribution moved (sum_c p_t |log p_t - log p_{t-1}|). Inner depth: within each window
    of ``window`` consecutive contributions, the L2 norm of their deviations from the
    window mean (how unevenly the sample contributes). Outer depth: an exponential moving
    average over windows, ``sum_k decay (1 - decay)^(K-1-k) R_k``, weighting the latest windows
    most. Higher = the sample keeps shaping training = keep.
    """
    c = np.asarray(change, np.float64)
    c = c[~np.all(np.isnan(c), axis=1)]          # the first epoch has no previous distribution
    c = np.nan_to_num(c, nan=0.0)
    e = c.shape[0]
    window = min(window, e)
    if window < 2:
        raise ValueError(f"TDDS needs at least 3 epochs of history (2 changes), got {e + 1}")
    windows = e - window + 1
    total = np.zeros(c.shape[1])
    for k in range(windows):
        block = c[k:k + window]
        r = np.linalg.norm(block - block.mean(0), axis=0)
        total += decay * (1 - decay) ** (windows - 1 - k) * r
    return total


def _history(model, checkpoints, dataset, history, batch_size, device, num_workers):
    if history is not None:
        return history
    return history_from_checkpoints(model, checkpoints, dataset, batch_size=batch_size, device=device,
                                    num_workers=num_workers)


def forgetting_score(model, checkpoints, dataset, *, keep: str = "hard", history: History | None = None,
                     batch_size: int = 512, device=None, num_workers: int = 0) -> np.ndarray:
    """Forgetting events (Toneva et al., ICLR 2019), shape (N,), higher = keep.

    Counts correct-to-incorrect transitions of each sample's prediction over training;
    never-learned samples rank as the most forgettable. ``keep="hard"`` (default) keeps the
    most forgettable; ``"easy"`` keeps the unforgettable ones. Without a recorded
    ``history`` (from :class:`DynamicsRecorder`), the transitions are counted between the
    given checkpoints.
    """
    h = _history(model, checkpoints, dataset, history, batch_size, device, num_workers)
    return finalize(orient(forgetting_counts(h.correct, h.seen), keep), [], method="forgetting")


def aum_score(model, checkpoints, dataset, *, keep: str = "hard", history: History | None = None,
              batch_size: int = 512, device=None, num_workers: int = 0) -> np.ndarray:
    """Area under the margin (Pleiss et al., NeurIPS 2020), returned as ``-AUM``, higher = keep.

    AUM is the mean, over training, of (logit of the assigned label - largest other logit);
    low or negative AUM marks hard and mislabelled samples. ``keep="hard"`` keeps low-AUM
    samples first; ``"easy"`` keeps high-AUM ones.
    """
    h = _history(model, checkpoints, dataset, history, batch_size, device, num_workers)
    return finalize(orient(-area_under_margin(h.margin, h.seen), keep), [], method="aum")


def dynunc_score(model, checkpoints, dataset, *, window: int = 10, keep: str = "hard",
                 history: History | None = None, batch_size: int = 512, device=None,
                 num_workers: int = 0) -> np.ndarray:
    """Dynamic uncertainty (He et al., 2023), higher = keep (more uncertain over training)."""
    h = _history(model, checkpoints, dataset, history, batch_size, device, num_workers)
    return finalize(orient(dynamic_uncertainty(h.target_prob, window), keep), [], method="dynunc")


def tdds_score(model, checkpoints, dataset, *, window: int = 10, decay: float = 0.9, keep: str = "hard",
               history: History | None = None, batch_size: int = 512, device=None,
               num_workers: int = 0) -> np.ndarray:
    """Temporal dual-depth scoring (Zhang et al., CVPR 2024), higher = keep; see
    :func:`temporal_dual_depth`."""
    h = _history(model, checkpoints, dataset, history, batch_size, device, num_workers)
    return finalize(orient(temporal_dual_depth(h.change, window, decay), keep), [], method="tdds")
