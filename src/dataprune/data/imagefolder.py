"""Image-folder datasets (``train/<class>/*.png``, ``val/<class>/*.png``) read with Pillow."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".webp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

LAYOUT = """expected an image folder laid out as:
  <data-root>/train/<class_a>/xxx.png
  <data-root>/train/<class_b>/yyy.jpg
  <data-root>/val/<class_a>/zzz.png
  <data-root>/val/<class_b>/www.jpg
(one sub-folder per class, the same class names under train/ and val/; images in sub-folders of a class folder
count for that class; names starting with "." are skipped; val/ is read only by the commands that report accuracy:
bench, demo, evaluate)"""


def _images_under(folder: str) -> tuple[list[str], dict]:
    """Image files anywhere under ``folder`` (sub-folders included, links followed), in a fixed order; entries whose
    name starts with ``.`` are skipped (``.ipynb_checkpoints``, macOS ``._x.png`` resource forks). Also returns how
    many other files were passed over, by extension."""
    found, other = [], {}
    for here, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            ext = os.path.splitext(name)[1].lower()
            if ext in IMAGE_EXTENSIONS:
                found.append(os.path.join(here, name))
            else:
                other[ext or "(none)"] = other.get(ext or "(none)", 0) + 1
    return found, other


def _scan(split_dir: str, classes: list[str] | None):
    found = sorted(d.name for d in os.scandir(split_dir) if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"{split_dir} has class folders {unknown} that train/ does not have; " + LAYOUT)
    files, labels, other = [], [], {}
    for label, cls in enumerate(classes):
        folder = os.path.join(split_dir, cls)
        if not os.path.isdir(folder):
            continue
        names, skipped = _images_under(folder)
        files += names
        labels += [label] * len(names)
        for ext, n in skipped.items():
            other[ext] = other.get(ext, 0) + n
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {split_dir}; " + LAYOUT)
    return classes, files, np.asarray(labels, dtype=np.int64), other


class ImageFolderDataset(Dataset):
    """Images decoded on access, resized to ``image_size`` x ``image_size``, RGB, normalised."""

    def __init__(self, files, targets, classes, *, image_size: int = 64, name: str = "", skipped=None):
        self.files = list(files)
        self.skipped = dict(skipped or {})       # files under the class folders that are not images, by extension
        self.targets = np.asarray(targets, dtype=np.int64)
        self.classes = list(classes)
        self.image_size = int(image_size)
        self.name = name
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self):
        return len(self.files)

    def _load(self, i: int) -> torch.Tensor:
        from PIL import Image

        path = self.files[i]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB").resize((self.image_size, self.image_size), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"image {path} (sample {i}) has disappeared from disk since the "
                                    "dataset was opened") from exc
        except OSError as exc:
            raise ValueError(f"cannot decode image {path} (sample {i}): {exc}") from exc
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255
        return (x - self._mean) / self._std

    def __getitem__(self, i):
        return self._load(int(i)), int(self.targets[int(i)])

    def get_batch(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        x = torch.stack([self._load(int(i)) for i in idx]) if len(idx) else \
            torch.zeros(0, 3, self.image_size, self.image_size)
        return x, torch.from_numpy(self.targets[idx])


def load_imagefolder(root: str, image_size: int = 64, *, need_val: bool = True):
    """Train and val datasets from ``root/train`` and ``root/val``. With ``need_val=False`` (scoring and pruning
    read the training set only) a folder without ``val/`` gives ``(train, None)``."""
    if root is None:
        raise ValueError("dataset 'imagefolder' is read from disk: pass --data-root; " + LAYOUT)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--data-root {root!r} does not exist; " + LAYOUT)
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    if not os.path.isdir(train_dir):
        raise FileNotFoundError(f"{train_dir} is missing; " + LAYOUT)
    if need_val and not os.path.isdir(val_dir):
        raise FileNotFoundError(f"{val_dir} is missing (this command reports accuracy on it); " + LAYOUT)
    classes, files, labels, other = _scan(train_dir, None)
    train = ImageFolderDataset(files, labels, classes, image_size=image_size, name="imagefolder-train",
                               skipped=other)
    if not os.path.isdir(val_dir):
        return train, None
    _, vfiles, vlabels, vother = _scan(val_dir, classes)
    return train, ImageFolderDataset(vfiles, vlabels, classes, image_size=image_size, name="imagefolder-val",
                                     skipped=vother)
