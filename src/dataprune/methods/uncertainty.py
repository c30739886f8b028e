"""Scores from the surrogate's predicted probabilities at checkpoints.

Every score is float64 of shape (N,), **higher = keep**; ``keep="easy"`` reverses the order.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data import get_targets
from ..train import predict
from ..trajectory import as_checkpoints, load_state
from ..utils import resolve_device
from .common import finalize, orient, prepare_model

USE = ("all", "early", "last")


def pick_checkpoints(checkpoints, use: str):
    """``all`` of them, the ``early`` half (epochs up to half the last one, at least one), or the ``last``."""
    cks = as_checkpoints(checkpoints)
    if use == "all":
        return cks
    if use == "last":
        return cks[-1:]
    if use == "early":
        last = max(c.epoch for c in cks)
        early = [c for c in cks if c.epoch <= last / 2]
        return early or cks[:1]
    raise ValueError(f"use must be one of {USE}, got {use!r}")


def probabilities(model, checkpoints, dataset, *, batch_size=512, device=None, num_workers=0):
    """Yield softmax probabilities (N, C) of the dataset at each checkpoint, eval mode."""
    device = resolve_device(device)
    work = prepare_model(model, device)
    for ck in as_checkpoints(checkpoints):
        load_state(work, ck.state, what=f"checkpoint at epoch {ck.epoch}")
        logits = predict(work, dataset, batch_size=batch_size, device=device, num_workers=num_workers)
        yield F.softmax(logits.double(), 1)


def el2n_score(model, checkpoints, dataset, *, use: str = "early", keep: str = "hard", batch_size: int = 512,
               device=None, num_workers: int = 0) -> np.ndarray:
    """EL2N (Paul et al., NeurIPS 2021): ``||softmax(f(x)) - onehot(y)||_2``, averaged over checkpoints.

    Higher = harder = keep (``keep="hard"``, the paper's choice); ``keep="easy"`` keeps the
    low-error samples, which does better at high pruning ratios. ``use="early"`` (default)
    averages over the first half of the run's checkpoints, as the paper scores early in
    training; ``"all"`` or ``"last"`` are the alternatives.
    """
    cks = pick_checkpoints(checkpoints, use)
    y = torch.from_numpy(get_targets(dataset))
    total = np.zeros(len(y))
    for p in probabilities(model, cks, dataset, batch_size=batch_size, device=device, num_workers=num_workers):
        total += torch.linalg.vector_norm(p - F.one_hot(y, p.shape[1]).double(), dim=1).numpy()
    return finalize(orient(total / len(cks), keep), [], method="el2n")


def _uncertainty(kind, model, checkpoints, dataset, use, keep, batch_size, device, num_workers):
    cks = pick_checkpoints(checkpoints, use)
    total = None
    for p in probabilities(model, cks, dataset, batch_size=batch_size, device=device, num_workers=num_workers):
        if kind == "entropy":
            u = -(p * torch.log(p.clamp_min(1e-300))).sum(1)
        elif kind == "least_confidence":
            u = 1 - p.max(1).values
        else:  # margin between the two most probable classes, small = uncertain
            top2 = p.topk(2, dim=1).values
            u = -(top2[:, 0] - top2[:, 1])
        total = u.numpy() if total is None else total + u.numpy()
    return finalize(orient(total / len(cks), keep), [], method=kind)


def entropy_score(model, checkpoints, dataset, *, use: str = "last", keep: str = "hard", batch_size: int = 512,
                  device=None, num_workers: int = 0) -> np.ndarray:
    """Predictive entropy (Coleman et al., ICLR 2020, "selection via proxy"); higher = more uncertain = keep.

    Uses the last checkpoint by default (``use``), label-free.
    """
    return _uncertainty("entropy", model, checkpoints, dataset, use, keep, batch_size, device, num_workers)


def least_confidence_score(model, checkpoints, dataset, *, use: str = "last", keep: str = "hard",
                           batch_size: int = 512, device=None, num_workers: int = 0) -> np.ndarray:
    """Least confidence, ``1 - max_c p(c|x)`` (Coleman et al., 2020); higher = keep."""
    return _uncertainty("least_confidence", model, checkpoints, dataset, use, keep, batch_size, device,
                        num_workers)


def margin_score(model, checkpoints, dataset, *, use: str = "last", keep: str = "hard", batch_size: int = 512,
                 device=None, num_workers: int = 0) -> np.ndarray:
    """Negative margin between the two most probable classes (Coleman et al., 2020); higher = keep."""
    return _uncertainty("margin", model, checkpoints, dataset, use, keep, batch_size, device, num_workers)
