"""CIFAR-10 / CIFAR-100 read from the standard python-pickle batches (no torchvision)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from .core import ArrayDataset

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                b"labels", "batches.meta", b"label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels", "meta", b"fine_label_names"),
}


def expected_layout(name: str, root: str) -> str:
    folder, train, test, *_ = _LAYOUT[name]
    lines = [f"  {os.path.join(root, folder)}/"] + [f"      {f}" for f in train + test]
    url = "https://www.cs.toronto.edu/~kriz/cifar.html"
    archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
    return ("expected the python-pickle batches laid out as:\n" + "\n".join(lines) +
            f"\n(download {archive} from {url} and unpack it inside {root})")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a data file cannot run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
                # pickle protocol 5 rebuilds arrays from their raw buffer
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file (only dicts, "
                                     "lists, bytes and numpy arrays are read; re-save the batch as a dict of "
                                     "numpy arrays and lists, e.g. with pickle.dump(batch, f, protocol=4))")


def _read_batch(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not a readable CIFAR python-pickle batch ({exc})") from exc
    if not isinstance(batch, dict):
        raise ValueError(f"{path} holds a {type(batch).__name__}; expected a dict with b'data'")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _find_folder(name: str, root: str) -> str:
    folder = _LAYOUT[name][0]
    for candidate in (os.path.join(root, folder), root):
        if all(os.path.isfile(os.path.join(candidate, f)) for f in _LAYOUT[name][1] + _LAYOUT[name][2]):
            return candidate
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--data-root {root!r} does not exist; {name} " + expected_layout(name, root))
    missing = [f for f in _LAYOUT[name][1] + _LAYOUT[name][2]
               if not os.path.isfile(os.path.join(root, folder, f))]
    raise FileNotFoundError(f"{name}: missing {', '.join(missing)} under {os.path.join(root, folder)}; "
                            + expected_layout(name, root))


def _load_split(name: str, folder: str, files: list[str]) -> tuple[np.ndarray, np.ndarray]:
    label_key = _LAYOUT[name][3].decode()
    xs, ys = [], []
    for f in files:
        path = os.path.join(folder, f)
        batch = _read_batch(path)
        if "data" not in batch or label_key not in batch:
            raise ValueError(f"{path} has keys {sorted(batch)}; a {name} batch needs 'data' and "
                             f"'{label_key}'")
        data = np.asarray(batch["data"])
        labels = np.asarray(batch[label_key])
        if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
            raise ValueError(f"{path}: 'data' is {data.dtype} of shape {data.shape}; expected uint8 "
                             "of shape (n, 3072) (3 x 32 x 32, channel-major)")
        if labels.shape != (len(data),):
            raise ValueError(f"{path}: {len(labels)} labels for {len(data)} images")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels.astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar(name: str, root: str):
    """Train and test :class:`ArrayDataset` for ``cifar10`` or ``cifar100`` under ``root``."""
    if root is None:
        raise ValueError(f"dataset {name!r} is read from disk: pass --data-root (data_root=...); "
                         + expected_layout(name, "<data-root>"))
    folder = _find_folder(name, root)
    _, train_files, test_files, _, meta_file, names_key = _LAYOUT[name]
    classes = None
    meta_path = os.path.join(folder, meta_file)
    if os.path.isfile(meta_path):
        meta = _read_batch(meta_path)
        raw = meta.get(names_key.decode())
        if raw is not None:
            classes = [c.decode() if isinstance(c, bytes) else str(c) for c in raw]
    num_classes = 10 if name == "cifar10" else 100
    out = []
    for split, files in (("train", train_files), ("test", test_files)):
        x, y = _load_split(name, folder, files)
        if y.min() < 0 or y.max() >= num_classes:
            raise ValueError(f"{name} {split} labels range over [{y.min()}, {y.max()}]; "
                             f"expected [0, {num_classes - 1}]")
        out.append(ArrayDataset(torch.from_numpy(x), y, mean=CIFAR_MEAN, std=CIFAR_STD, scale=1 / 255,
                                classes=classes or [str(i) for i in range(num_classes)],
                                name=f"{name}-{split}"))
    return out[0], out[1]
