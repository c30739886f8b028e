"""A user's dataset as dataprune reads it: ``(input, label)`` pairs, and a deterministic view.

Users bring datasets whose items are dicts (Hugging Face ``datasets`` with ``set_format("torch")``,
``{"pixel_values": ..., "label": ...}``) or tuples with more than two fields, and training transforms
that draw random numbers (a random crop or flip in ``__getitem__``). dataprune trains on the data as
it is, but everything that must give the same answer twice -- the scoring passes, the label
evidence, the dataset fingerprint -- reads a *deterministic view*: either one the user gives
(``score_set=``, the same samples with evaluation preprocessing), or the same dataset read with the
random number generators seeded by the sample's position, so a random transform draws the same
augmentation for a sample every time it is read (:class:`SeededView`).
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset

INPUT_KEYS = ("pixel_values", "image", "img", "input", "inputs", "x", "input_ids", "features")
LABEL_KEYS = ("label", "labels", "y", "target", "targets", "fine_label", "class")


def _columns(dataset):
    names = getattr(dataset, "column_names", None)
    if isinstance(names, dict):          # a DatasetDict
        raise TypeError("got a DatasetDict; pass one split, e.g. dataset['train']")
    return list(names) if names is not None else None


def check_item(x, y, where: str = "item 0") -> None:
    """A ``TypeError`` that says what to do where a sample's input or label is of a kind dataprune cannot batch: a
    PIL image (no ``ToTensor`` transform; a Hugging Face image column without ``set_format("torch")``), a file
    path, a class name as the label."""
    kind = type(x).__module__.split(".")[0]
    if kind == "PIL":
        raise TypeError(f"{where}'s input is a PIL image ({type(x).__name__}); dataprune reads tensors or arrays: add "
                        "a transform that makes a tensor (e.g. torchvision.transforms.ToTensor()), or for a Hugging "
                        "Face dataset set_format('torch') / with_transform(...)")
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{where}'s input is {type(x).__name__} {str(x)[:60]!r}; dataprune reads tensors or arrays: "
                        "load the file in __getitem__ (or use the imagefolder dataset for a folder of images)")
    if isinstance(y, (str, bytes)):
        raise TypeError(f"{where}'s label is {type(y).__name__} {str(y)[:40]!r}; expected an integer class label: map "
                        "the class names to 0..C-1 (e.g. {name: i for i, name in enumerate(sorted(names))})")


def check_map_style(dataset) -> None:
    """A ``TypeError`` that says what to do where ``dataset`` is a stream (``torch.utils.data.IterableDataset``,
    a Hugging Face ``IterableDataset``, a generator) rather than indexable with a length: pruning keeps samples
    by their index and every method reads each sample several times."""
    if isinstance(dataset, torch.utils.data.IterableDataset) or not (hasattr(dataset, "__getitem__")
                                                                     and hasattr(dataset, "__len__")):
        raise TypeError(f"{type(dataset).__name__} is not a map-style dataset (indexable, with a length): dataprune "
                        "keeps samples by their index and reads each several times, which a stream cannot give. "
                        "Write the samples out first (e.g. a Hugging Face Dataset, arrays for "
                        "dataprune.data.ArrayDataset, the npy or imagefolder layouts), or pass the map-style "
                        "dataset the stream reads from")


def _first_item(dataset):
    if len(dataset) == 0:
        raise ValueError("the dataset is empty")
    return dataset[0]


def detect_keys(dataset, input_key: str | None = None, label_key: str | None = None) -> tuple[str, str]:
    """The input and label keys of a dataset whose items are dicts: the given ones, else the first of
    :data:`INPUT_KEYS` / :data:`LABEL_KEYS` present. A clear error names the keys found."""
    names = _columns(dataset)
    if names is None:
        item = _first_item(dataset)
        if not isinstance(item, dict):
            raise TypeError(f"input_key/label_key are for datasets whose items are dicts; item 0 is "
                            f"{type(item).__name__}")
        names = list(item)
    for key, what in ((input_key, "input_key"), (label_key, "label_key")):
        if key is not None and key not in names:
            raise KeyError(f"{what}={key!r} is not a field of the dataset; its fields: {names}")
    if input_key is None:
        input_key = next((k for k in INPUT_KEYS if k in names), None)
    if label_key is None:
        label_key = next((k for k in LABEL_KEYS if k in names), None)
    if input_key is None or label_key is None:
        missing = [w for w, k in (("input_key", input_key), ("label_key", label_key)) if k is None]
        raise KeyError(f"cannot tell which field is the {' and the '.join(m.split('_')[0] for m in missing)}: "
                       f"the dataset's fields are {names}; pass {' and '.join(f'{m}=...' for m in missing)}")
    return input_key, label_key


class PairView(Dataset):
    """A dataset of dict (or longer tuple) items read as ``(input, integer_label)`` pairs.

    ``input_key`` / ``label_key`` name the fields (dict items; detected when not given) or their
    positions (tuple items). ``targets`` is read from the label column without decoding the inputs
    where the dataset has columns (Hugging Face). ``__getitems__`` is used when the dataset has it.
    """

    def __init__(self, dataset, *, input_key=None, label_key=None):
        self.dataset = dataset
        item = _first_item(dataset)
        if isinstance(item, dict):
            self.input_key, self.label_key = detect_keys(dataset, input_key, label_key)
        elif isinstance(item, (list, tuple)):
            self.input_key = 0 if input_key is None else int(input_key)
            self.label_key = 1 if label_key is None else int(label_key)
            for k in (self.input_key, self.label_key):
                if not -len(item) <= k < len(item):
                    raise IndexError(f"items have {len(item)} field(s); position {k} does not exist: dataprune "
                                     "needs an input and an integer label in each item (input_key= / label_key= "
                                     "name their positions)")
        else:
            raise TypeError(f"items must be (input, label) pairs, tuples or dicts; item 0 is {type(item).__name__}")
        check_item(item[self.input_key], item[self.label_key])
        self.targets = self._read_targets()

    def _read_targets(self):
        labels = None
        if isinstance(self.label_key, str) and _columns(self.dataset) is not None:
            labels = self.dataset[self.label_key]          # a column: no inputs decoded
        elif getattr(self.dataset, "targets", None) is not None and self.label_key == 1:
            labels = self.dataset.targets
        if labels is None:
            labels = [self._label(self.dataset[i], i) for i in range(len(self.dataset))]
        arr = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
        if arr.shape != (len(self.dataset),):
            raise ValueError(f"the label field {self.label_key!r} has shape {arr.shape}; expected "
                             f"({len(self.dataset)},) integer class labels")
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"the label field {self.label_key!r} holds {arr.dtype} values; expected integer "
                            "class labels")
        return arr.astype(np.int64)

    def _label(self, item, i):
        y = item[self.label_key]
        if isinstance(y, torch.Tensor):
            if y.numel() != 1 or y.is_floating_point():
                raise TypeError(f"sample {i}: label {y!r} is not one integer class label")
            return int(y)
        if isinstance(y, (bool, float)) or not isinstance(y, (int, np.integer)):
            raise TypeError(f"sample {i}: label {y!r} is not an integer class label")
        return int(y)

    def _pair(self, item, i):
        x = item[self.input_key]
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        return x, self._label(item, i)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self._pair(self.dataset[int(i)], int(i))

    def __getitems__(self, idx):
        getitems = getattr(self.dataset, "__getitems__", None)
        if getitems is None:
            return [self[i] for i in idx]
        items = getitems([int(i) for i in idx])
        if isinstance(items, dict):       # a batch as columns
            keys = list(items)
            items = [{k: items[k][j] for k in keys} for j in range(len(idx))]
        return [self._pair(item, int(i)) for item, i in zip(items, idx, strict=True)]


def as_pairs(dataset, *, input_key=None, label_key=None):
    """``dataset`` as dataprune reads it: unchanged when its items are already ``(input, label)`` pairs
    (or it has ``get_batch``), else a :class:`PairView` (dict items: keys detected or given)."""
    check_map_style(dataset)
    if input_key is None and label_key is None:
        if hasattr(dataset, "get_batch") or isinstance(dataset, PairView):
            return dataset                           # (a view already: no item read to find out)
        item = _first_item(dataset)
        if isinstance(item, (list, tuple)) and len(item) == 2:
            check_item(item[0], item[1])
            return dataset
    return PairView(dataset, input_key=input_key, label_key=label_key)


class SeededView(Dataset):
    """``dataset`` read with torch's, numpy's and Python's random generators seeded by ``(seed, i)``
    for sample ``i`` (the caller's generator states are restored after each read): a random
    transform draws the same augmentation for a sample on every read, so two scoring passes, the
    evidence and the fingerprint see the same inputs."""

    def __init__(self, dataset, seed: int = 0):
        self.dataset = dataset
        self.seed = int(seed)
        if getattr(dataset, "targets", None) is not None:
            self.targets = dataset.targets

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        i = int(i)
        s = (self.seed * 1_000_003 + i) % (2 ** 31)
        py, npy = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            random.seed(s)
            np.random.seed(s)
            try:
                return self.dataset[i]
            finally:
                random.setstate(py)
                np.random.set_state(npy)


def is_random(dataset, probes: int = 2) -> bool:
    """Whether reading the same sample twice can give different inputs (a random transform)."""
    if hasattr(dataset, "get_batch") or len(dataset) == 0:
        return False
    for i in np.unique(np.linspace(0, len(dataset) - 1, num=min(probes, len(dataset)), dtype=np.int64)):
        a, b = dataset[int(i)], dataset[int(i)]
        xa, xb = a[0] if isinstance(a, (list, tuple)) else a, b[0] if isinstance(b, (list, tuple)) else b
        if isinstance(xa, dict):
            xa, xb = list(xa.values())[0], list(xb.values())[0]
        xa, xb = torch.as_tensor(np.asarray(xa)), torch.as_tensor(np.asarray(xb))
        if xa.shape != xb.shape or not torch.equal(xa, xb):
            return True
    return False


def deterministic_view(dataset, score_set=None, *, seed: int = 0):
    """``(view, how)``: the dataset that scoring, evidence and fingerprints read, and how it was made
    (``"given"``, ``"as is"`` or ``"seeded"``: seeded with ``seed``, 0 by default so that the view and
    the fingerprint are the same whatever the run's seed). ``score_set`` must hold the same samples in
    the same order (same length and labels)."""
    if score_set is not None:
        from .core import get_targets

        if len(score_set) != len(dataset):
            raise ValueError(f"score_set has {len(score_set)} samples but the training set has {len(dataset)}; "
                             "it must be the same samples, in the same order, with evaluation preprocessing")
        if not np.array_equal(get_targets(score_set), get_targets(dataset)):
            raise ValueError("score_set's labels differ from the training set's; it must be the same samples, in "
                             "the same order, with evaluation preprocessing")
        return score_set, "given"
    if is_random(dataset):
        return SeededView(dataset, seed), "seeded"
    return dataset, "as is"
