"""Bad input survives: clear messages, nothing poisoned, nothing half-written."""

import os

import numpy as np
import pytest
import torch

from dataprune import moso
from dataprune.data import ArrayDataset, load_dataset
from dataprune.methods.gradnorm import grand_score
from dataprune.models import SmallCNN
from dataprune.select import select


def test_empty_classes_do_not_break_scoring_or_selection():
    g = torch.Generator().manual_seed(0)
    y = np.array([0, 2, 5] * 10)           # classes 1, 3, 4, 6..9 are empty
    ds = ArrayDataset(torch.randn(30, 1, 12, 12, generator=g), y)
    torch.manual_seed(0)
    model = SmallCNN(1, 10)
    s = moso.score(model, [(model.state_dict(), 0.1)], ds)
    assert np.isfinite(s).all()
    keep = select(s, 0.5, labels=y, policy="class_balanced")
    assert np.bincount(y[keep]).tolist() == [5, 0, 5, 0, 0, 5]
    assert np.isfinite(grand_score(model, [(model.state_dict(), 0.1)], ds)).all()


def test_data_root_vanishing_mid_run_is_reported(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for c in ("a", "b"):
            os.makedirs(tmp_path / split / c)
            for i in range(6):
                Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(tmp_path / split / c / f"{i}.png")
    data = load_dataset("imagefolder", root=str(tmp_path), image_size=8)
    torch.manual_seed(0)
    model = SmallCNN(3, 2)
    import shutil

    shutil.rmtree(tmp_path / "train" / "b")
    with pytest.raises(FileNotFoundError, match=r"train/b/0.png \(sample 6\) has disappeared"):
        moso.score(model, [(model.state_dict(), 0.1)], data.train, batch_size=4)


def test_npy_memory_mapped_dataset_scores_like_in_memory(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (60, 1, 12, 12), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (60,), generator=g).numpy()
    for split in ("train", "test"):
        np.save(tmp_path / f"{split}_x.npy", x.numpy())
        np.save(tmp_path / f"{split}_y.npy", y)
    data = load_dataset("npy", root=str(tmp_path), normalize="none")
    assert isinstance(data.train.inputs, np.memmap)
    mem = ArrayDataset(x, y, scale=1 / 255)
    torch.manual_seed(0)
    model = SmallCNN(1, 10)
    ck = [(model.state_dict(), 0.1)]
    assert np.allclose(moso.score(model, ck, data.train, batch_size=7), moso.score(model, ck, mem, batch_size=7))
    with pytest.raises(FileNotFoundError, match="train_x.npy.*expected memory-mapped arrays"):
        load_dataset("npy", root=str(tmp_path / "nowhere"))


def test_npy_is_standardised_with_training_statistics_by_default(tmp_path):
    g = np.random.default_rng(0)
    x = g.integers(0, 256, (50, 3, 4, 4), dtype=np.uint8)
    y = g.integers(0, 3, 50)
    for split in ("train", "test"):
        np.save(tmp_path / f"{split}_x.npy", x if split == "train" else x[:10])
        np.save(tmp_path / f"{split}_y.npy", y if split == "train" else y[:10])
    data = load_dataset("npy", root=str(tmp_path))
    scaled = x.astype(np.float64) / 255
    mean, std = scaled.mean(axis=(0, 2, 3)), scaled.std(axis=(0, 2, 3))
    assert np.allclose(data.train.normalization["mean"], mean) and np.allclose(data.train.normalization["std"], std)
    batch = data.train.get_batch(np.arange(50))[0].numpy()
    assert np.allclose(batch.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert np.allclose(batch.std(axis=(0, 2, 3)), 1, atol=1e-4)
    assert np.allclose(data.test[0][0].numpy(), (scaled[0] - mean[:, None, None]) / std[:, None, None], atol=1e-5)
    with pytest.raises(ValueError, match="normalize must be one of train, none"):
        load_dataset("npy", root=str(tmp_path), normalize="imagenet")
