"""Retrain from scratch on a kept subset and report test accuracy.

:func:`retrain` is the unit of every evaluation: one model, one subset, one seed. The
experiment grid over methods x ratios x seeds is :mod:`dataprune.bench`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .data import get_targets
from .train import TrainConfig, train
from .utils import seed_everything


def retrain(make_model: Callable[[], torch.nn.Module], train_set, test_set, keep_indices=None, *,
            config: TrainConfig | None = None, seed: int = 0, device=None, num_workers: int = 0,
            progress: bool = False, desc: str = "retrain", val_set=None, dynamic: tuple | None = None,
            **overrides) -> dict:
    """Train a fresh ``make_model()`` on ``train_set[keep_indices]`` and measure test accuracy.

    The model is built after seeding with ``seed``, so the same seed gives the same
    initialisation for every subset. With ``config.length == "steps"`` a subset trains
    as many optimizer steps as the full training set would.

    Returns
    -------
    dict with ``test_acc`` (fraction in [0, 1]), ``test_bacc`` (balanced accuracy: the mean of the
    per-class recalls), ``val_acc``/``val_bacc`` on ``val_set`` when given, ``n_kept``, ``steps``, ``epochs``,
    ``train_seconds`` (wall), ``train_cpu_seconds`` (CPU time of the process) and ``length``.
    """
    n = len(train_set)
    keep = np.arange(n) if keep_indices is None else np.asarray(keep_indices, dtype=np.int64)
    if keep.ndim != 1 or len(keep) == 0:
        raise ValueError(f"keep_indices must be a non-empty 1-D array, got shape {keep.shape}")
    if keep.min() < 0 or keep.max() >= n:
        raise ValueError(f"keep_indices must lie in [0, {n}); got values in [{keep.min()}, {keep.max()}]")
    if len(np.unique(keep)) != len(keep):
        raise ValueError("keep_indices contains duplicates")
    cfg = (config or TrainConfig()).replace(**overrides)
    seed_everything(seed)
    model = make_model()
    pruner = None
    if dynamic is not None:                       # (method, ratio): prune while training on the whole set
        from .dynamic import DynamicPruner

        if keep_indices is not None:
            raise ValueError("dynamic pruning trains on the whole training set: pass no keep_indices")
        method, ratio = dynamic
        pruner = DynamicPruner(train_set, model=model, epochs=cfg.epochs, ratio=ratio, method=method, seed=seed)
    result = train(model, train_set, config=cfg, indices=keep, reference_size=n, seed=seed, device=device,
                   num_workers=num_workers, progress=progress, desc=desc, pruner=pruner)
    acc, bacc = accuracies(result.model, test_set, device=device, num_workers=num_workers)
    out = {"test_acc": acc, "test_bacc": bacc, "n_kept": int(len(keep)), "steps": result.steps,
           "epochs": len(result.history), "train_seconds": result.seconds, "train_cpu_seconds": result.cpu_seconds,
           "length": cfg.length}
    if val_set is not None:
        out["val_acc"], out["val_bacc"] = accuracies(result.model, val_set, device=device, num_workers=num_workers)
    if pruner is not None:
        pruner.close()
        out["saved_fraction"] = pruner.saved_fraction
        out["n_kept"] = int(round(n * (1 - pruner.saved_fraction)))      # samples read per epoch, on average
        out["set_aside"] = int(pruner.suspect.sum())
    return out


def accuracies(model, dataset, *, device=None, num_workers: int = 0) -> tuple[float, float]:
    """Top-1 accuracy and balanced accuracy (the mean of per-class recalls, over the classes present)."""
    from .train import predict

    pred = predict(model, dataset, device=device, num_workers=num_workers).argmax(1).numpy()
    y = get_targets(dataset)
    if len(y) == 0:
        return float("nan"), float("nan")
    recalls = [float(np.mean(pred[y == c] == c)) for c in np.unique(y)]
    return float(np.mean(pred == y)), float(np.mean(recalls))
