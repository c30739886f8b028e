"""In-memory datasets, label access and batch iteration.

Every dataset in dataprune is a map-style ``torch.utils.data.Dataset`` yielding
``(input, integer_label)``. Datasets that hold their samples in one tensor
(:class:`ArrayDataset`) also offer ``get_batch(indices)``, which the training loop
and the scorers use to skip per-item Python calls; any other map-style dataset goes
through a ``DataLoader``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset


class ArrayDataset(Dataset):
    """Samples held in one tensor, labels in one int64 array.

    Parameters
    ----------
    inputs : torch.Tensor, shape (N, C, H, W) or (N, D)
        Raw inputs. uint8 inputs are stored as they are (4x less memory) and
        converted on access as ``(x * scale - mean) / std``; other integer inputs without ``scale`` or ``mean``
        (token ids, category codes) are handed out as they are; everything else as float32.
    targets : array-like of int, shape (N,)
    mean, std : sequence of float, one per channel, optional
        Per-channel normalisation applied on access.
    scale : float
        Multiplier applied before normalisation (e.g. 1/255 for uint8 images).
    classes : list of str, optional
        Class names, index = label.
    """

    def __init__(self, inputs: torch.Tensor, targets, *, mean=None, std=None,
                 scale: float = 1.0, classes: Sequence[str] | None = None, name: str = ""):
        targets = np.asarray(targets)
        if not np.issubdtype(targets.dtype, np.integer):
            raise TypeError(f"targets must be integers, got dtype {targets.dtype}")
        if len(targets) != len(inputs):
            raise ValueError(f"inputs has {len(inputs)} samples but targets has {len(targets)}")
        self.inputs = inputs
        self.targets = targets.astype(np.int64)
        self.scale = float(scale)
        self.name = name
        self.classes = list(classes) if classes is not None else None
        shape = (1, -1) + (1,) * (inputs.dim() - 2)
        self._mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).reshape(shape)
        self._std = None if std is None else torch.tensor(std, dtype=torch.float32).reshape(shape)

    def __len__(self) -> int:
        return len(self.targets)

    def _convert(self, x: torch.Tensor) -> torch.Tensor:
        if not (x.is_floating_point() or x.dtype == torch.uint8) and self.scale == 1.0 and self._mean is None:
            return x                 # integer codes (token ids for an embedding): as they are, as TensorDataset does
        x = x.to(torch.float32)
        if self.scale != 1.0:
            x = x * self.scale
        if self._mean is not None:
            x = (x - self._mean) / self._std
        return x

    def get_batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``(B, ...)`` float32 and labels ``(B,)`` int64 for an index array."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return self._convert(self.inputs[idx]), torch.from_numpy(self.targets[idx.numpy()])

    def __getitem__(self, i):
        x, y = self.get_batch([int(i)])
        return x[0], int(y[0])

    def subset(self, positions) -> ArrayDataset:
        """A dataset of the samples at ``positions`` (a copy of their inputs, same preprocessing)."""
        positions = np.asarray(positions, dtype=np.int64)
        out = ArrayDataset.__new__(ArrayDataset)
        out.__dict__.update(self.__dict__)
        out.inputs = self.inputs[torch.from_numpy(positions)]
        out.targets = self.targets[positions]
        return out

    def with_targets(self, targets) -> ArrayDataset:
        """A dataset sharing these inputs with other labels (used for label noise)."""
        out = ArrayDataset.__new__(ArrayDataset)
        out.__dict__.update(self.__dict__)
        targets = np.asarray(targets, dtype=np.int64)
        if targets.shape != self.targets.shape:
            raise ValueError(f"new targets have shape {targets.shape}, expected {self.targets.shape}")
        out.targets = targets
        return out


def _check_label(y, where: str) -> torch.Tensor:
    """A batch of labels, checked: one integer class label per sample."""
    if isinstance(y, torch.Tensor):
        if y.ndim > 1:
            raise TypeError(f"{where}: each label has shape {tuple(y.shape[1:])}; expected one integer class label "
                            "per sample. One-hot or soft labels: return label.argmax() from the dataset (the class "
                            "index); dataprune scores and selects by class.")
        if y.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool) \
                or y.is_complex():
            raise TypeError(f"{where}: labels have dtype {y.dtype}; expected integer class labels "
                            "(int or an integer tensor). Convert them with int(label).")
        return y.long()
    raise TypeError(f"{where}: labels are {type(y).__name__}; expected integer class labels")


def get_targets(dataset: Dataset, *, batch_size: int = 512, num_workers: int = 0) -> np.ndarray:
    """The integer label of every sample, shape ``(N,)`` int64.

    Uses a ``targets`` attribute when the dataset has one (``ArrayDataset``,
    torchvision datasets, ``Subset`` of those); otherwise reads the dataset once.
    """
    if isinstance(dataset, Subset):
        return get_targets(dataset.dataset, batch_size=batch_size)[np.asarray(dataset.indices)]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        arr = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
        if arr.ndim != 1 or len(arr) != len(dataset):
            raise ValueError(f"dataset.targets has shape {arr.shape}, expected ({len(dataset)},)")
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"dataset.targets has dtype {arr.dtype}; expected integer class labels")
        return arr.astype(np.int64)
    out = []
    for _, _, y in iter_batches(dataset, np.arange(len(dataset)), batch_size, num_workers=num_workers):
        out.append(y.numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


class _BatchDataset(Dataset):
    """A dataset read a batch at a time: ``__getitems__`` returns ``(inputs, labels)`` of the batch
    (``get_batch`` when the dataset has one, else its items collated), so a ``DataLoader`` worker
    reads whole batches."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.__getitems__([i])

    def __getitems__(self, idx):
        if hasattr(self.dataset, "get_batch"):
            return self.dataset.get_batch(np.asarray(idx, dtype=np.int64))
        getitems = getattr(self.dataset, "__getitems__", None)
        items = getitems(list(idx)) if getitems is not None else [self.dataset[int(i)] for i in idx]
        return _collate_pairs(items)


def _collate_pairs(items):
    from torch.utils.data import default_collate

    first = items[0] if len(items) else None
    if not isinstance(first, (list, tuple)) or len(first) != 2:
        raise TypeError("the dataset must yield (input, integer_label) pairs; got "
                        f"{type(first).__name__}" + (f" of length {len(first)}" if hasattr(first, "__len__") else "")
                        + " (for dict samples, wrap it: dataprune.data.as_pairs(dataset, input_key=..., "
                        "label_key=...))")
    return tuple(default_collate(list(items)))


def _identity(batch):
    return batch


class _Batches:
    """A batch sampler whose batches are set before each pass (one DataLoader, and one worker pool, for
    every pass)."""

    def __init__(self):
        self.batches: list = []

    def __iter__(self):
        return iter([b.tolist() for b in self.batches])

    def __len__(self):
        return len(self.batches)


_HANGUPS = (EOFError, ConnectionResetError, BrokenPipeError)


def _quiet_hangups(worker_id):
    """In a loader worker: a batch's tensors reach the main process through a file-descriptor handshake
    served by a thread of this worker; when the main process stops mid-handshake (Ctrl-C, SIGTERM) that
    thread reports the hang-up with a traceback on the user's terminal. The main process says why it
    stopped; the worker stays quiet about the peer going away (other errors are reported as before)."""
    import sys

    default = sys.excepthook

    def hook(kind, value, tb):
        if not issubclass(kind, _HANGUPS):
            default(kind, value, tb)

    sys.excepthook = hook


class BatchReader:
    """Reads batches of dataset positions, with ``num_workers`` worker processes that persist from one
    call to the next (a training run builds one reader, not a DataLoader per step).

    ``reader(batches)`` yields ``(positions, inputs, labels)`` for each index array of ``batches``, in
    order; labels are checked to be integers, tensors moved to ``device`` and floating inputs cast to
    ``dtype``. Works for every map-style dataset: ``get_batch`` (in-memory sets, image folders),
    ``__getitems__`` (Hugging Face) or item by item.
    """

    def __init__(self, dataset, *, num_workers: int = 0, device=None, dtype=None):
        self.dataset = dataset
        self.num_workers = int(num_workers or 0)
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.device, self.dtype = device, dtype
        self.non_blocking = device is not None and torch.device(device).type == "cuda"
        self._sampler = _Batches()
        self._batch_set = _BatchDataset(dataset)
        self._loader = None
        if self.num_workers:
            self._loader = DataLoader(self._batch_set, batch_sampler=self._sampler, collate_fn=_identity,
                                      num_workers=self.num_workers, persistent_workers=True,
                                      pin_memory=self.non_blocking, worker_init_fn=_quiet_hangups)

    def __call__(self, batches) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        batches = [np.asarray(b, dtype=np.int64) for b in batches]
        if self._loader is None:
            source = (self._batch_set.__getitems__(b) for b in batches)
        else:
            self._sampler.batches = batches
            source = iter(self._loader)
        for idx, (x, y) in zip(batches, source, strict=False):
            y = _check_label(y, f"dataset at indices {idx[:3].tolist()}...")
            if len(y) != len(idx):
                raise RuntimeError(f"the dataset returned {len(y)} labels for a batch of {len(idx)} positions")
            yield idx, *_place(x, y, self.device, self.dtype, self.non_blocking)

    def close(self):
        """Stop the worker processes now (they also stop when the reader is garbage-collected)."""
        if self._loader is not None and getattr(self._loader, "_iterator", None) is not None:
            self._loader._iterator._shutdown_workers()
            self._loader._iterator = None


def iter_batches(dataset: Dataset, indices, batch_size: int, *, num_workers: int = 0,
                 device=None, dtype=None) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Yield ``(batch_indices, inputs, labels)`` over ``indices`` in the given order.

    Labels are validated to be integers; inputs and labels are moved to ``device``, and
    floating-point inputs are cast to ``dtype`` when one is given (a float64 model). With
    ``num_workers`` the batches are read by that many worker processes (one pool for the pass).
    """
    indices = np.asarray(indices, dtype=np.int64)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batches = [indices[start:start + batch_size] for start in range(0, len(indices), batch_size)]
    reader = BatchReader(dataset, num_workers=num_workers if len(batches) > 1 else 0, device=device, dtype=dtype)
    try:
        yield from reader(batches)
    finally:
        reader.close()


def _place(x, y, device, dtype, non_blocking):
    if dtype is not None and x.is_floating_point() and x.dtype != dtype:
        x = x.to(dtype)
    if device is not None:
        x, y = x.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking)
    return x, y


class SubsetView(Dataset):
    """``dataset[indices]`` that keeps ``get_batch`` and ``targets`` (unlike ``torch.utils.data.Subset``).

    ``targets`` (one integer label per kept sample) replaces the base dataset's labels: a relabelled
    view (label noise) of a dataset that cannot be copied.
    """

    def __init__(self, dataset: Dataset, indices, targets=None):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(dataset)):
            raise IndexError(f"subset indices must lie in [0, {len(dataset)}); got "
                             f"[{self.indices.min()}, {self.indices.max()}]")
        if targets is None:
            self.targets = get_targets(dataset)[self.indices]
        else:
            self.targets = np.asarray(targets, dtype=np.int64)
            if self.targets.shape != self.indices.shape:
                raise ValueError(f"targets has shape {self.targets.shape}; expected {self.indices.shape}")
        if hasattr(dataset, "get_batch"):
            self.get_batch = self._get_batch

    def _get_batch(self, idx):
        idx = np.asarray(idx, dtype=np.int64)
        x, _ = self.dataset.get_batch(self.indices[idx])
        return x, torch.from_numpy(self.targets[idx])

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        x, _ = self.dataset[int(self.indices[i])]
        return x, int(self.targets[i])


class NpyDataset(Dataset):
    """Inputs and labels in ``.npy`` files, memory-mapped: only the batches being used are read.

    ``inputs`` is (N, ...) of any numeric dtype (uint8 images are scaled by ``scale``), ``labels``
    (N,) integers. Datasets larger than memory score with flat memory use.
    """

    def __init__(self, inputs_path: str, labels_path: str, *, scale: float = 1.0, mean=None, std=None,
                 name: str = ""):
        import os

        for p in (inputs_path, labels_path):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{p} does not exist")
        self.inputs = np.load(inputs_path, mmap_mode="r")
        self.targets = np.asarray(np.load(labels_path, mmap_mode="r"))
        if not np.issubdtype(self.targets.dtype, np.integer):
            raise TypeError(f"{labels_path} holds {self.targets.dtype} labels; expected integers")
        if self.targets.shape != (len(self.inputs),):
            raise ValueError(f"{labels_path} has shape {self.targets.shape}; expected ({len(self.inputs)},) to "
                             f"match {inputs_path}")
        self.targets = self.targets.astype(np.int64)
        self.scale = float(scale)
        self.name = name
        shape = (1, -1) + (1,) * (self.inputs.ndim - 2)
        self._mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).reshape(shape)
        self._std = None if std is None else torch.tensor(std, dtype=torch.float32).reshape(shape)

    def __len__(self):
        return len(self.targets)

    def get_batch(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        # Sorted reads from the memory map, then back to the requested order.
        order = np.argsort(idx, kind="stable")
        x = np.empty((len(idx),) + self.inputs.shape[1:], dtype=self.inputs.dtype)
        x[order] = self.inputs[idx[order]]
        x = torch.from_numpy(x).to(torch.float32)
        if self.scale != 1.0:
            x = x * self.scale
        if self._mean is not None:
            x = (x - self._mean) / self._std
        return x, torch.from_numpy(self.targets[idx])

    def __getitem__(self, i):
        x, y = self.get_batch([int(i)])
        return x[0], int(y[0])
