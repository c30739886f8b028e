"""Loaders on data the tests write in the real on-disk formats, the built-in sets, label noise."""

import os
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from dataprune.data import ArrayDataset, SubsetView, get_targets, iter_batches, load_dataset, symmetric_noise
from dataprune.data.augment import flip_crop


def _write_cifar10(root, n_per_batch=20, seed=0):
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n_per_batch).tolist()
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n_per_batch}, f, protocol=2)
        batches[name] = (data, labels)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072}, f, protocol=2)
    return batches


def test_cifar10_pickles_are_read_exactly(tmp_path):
    batches = _write_cifar10(str(tmp_path))
    split = load_dataset("cifar10", root=str(tmp_path))
    assert len(split.train) == 100 and len(split.test) == 20
    assert split.train.classes[3] == "class3"
    assert split.augment == "flip_crop"
    data, labels = batches["data_batch_2"]
    x, y = split.train[20 + 7]           # 8th image of the 2nd batch
    assert y == labels[7]
    raw = data[7].reshape(3, 32, 32).astype(np.float32) / 255
    mean = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32).reshape(3, 1, 1)
    std = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32).reshape(3, 1, 1)
    assert np.allclose(x.numpy(), (raw - mean) / std, atol=1e-6)
    # also accepted: the batches folder itself as the root
    assert len(load_dataset("cifar10", root=str(tmp_path / "cifar-10-batches-py")).train) == 100


def test_cifar100_layout(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 30), ("test", 10)):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": rng.integers(0, 100, n).tolist(),
                         b"coarse_labels": rng.integers(0, 20, n).tolist()}, f)
    split = load_dataset("cifar100", root=str(tmp_path))
    assert (len(split.train), len(split.test), split.num_classes) == (30, 10, 100)


def test_missing_or_malformed_cifar_root_shows_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)does not exist.*cifar-10-batches-py/\n *data_batch_1"):
        load_dataset("cifar10", root=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="pass --data-root"):
        load_dataset("cifar10")
    _write_cifar10(str(tmp_path))
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="missing data_batch_3"):
        load_dataset("cifar10", root=str(tmp_path))
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        f.write(b"not a pickle")
    with pytest.raises(ValueError, match="data_batch_3 is not a readable CIFAR"):
        load_dataset("cifar10", root=str(tmp_path))
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((5, 100), dtype=np.uint8), b"labels": [0] * 5}, f)
    with pytest.raises(ValueError, match=r"shape \(5, 100\); expected uint8 of shape \(n, 3072\)"):
        load_dataset("cifar10", root=str(tmp_path))


def test_cifar_loader_refuses_code_in_pickles(tmp_path):
    _write_cifar10(str(tmp_path))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(ValueError, match="refusing to load"):
        load_dataset("cifar10", root=str(tmp_path))


def _write_image_folder(root, classes=("cat", "dog"), per_class=3, size=10):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            os.makedirs(os.path.join(root, split, c))
            for i in range(per_class if split == "train" else 1):
                arr = rng.integers(0, 256, (size, size + 2, 3), dtype=np.uint8)
                Image.fromarray(arr).save(os.path.join(root, split, c, f"{i}.png"))


def test_image_folder(tmp_path):
    _write_image_folder(str(tmp_path))
    split = load_dataset("imagefolder", root=str(tmp_path), image_size=16)
    assert split.num_classes == 2 and split.input_shape == (3, 16, 16)
    assert len(split.train) == 6 and len(split.test) == 2
    assert get_targets(split.train).tolist() == [0, 0, 0, 1, 1, 1]
    x, y = split.train[4]
    assert x.shape == (3, 16, 16) and y == 1
    xb, yb = split.train.get_batch([0, 5])
    assert xb.shape == (2, 3, 16, 16) and yb.tolist() == [0, 1]


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train/<class_a>/xxx.png"):
        load_dataset("imagefolder", root=str(tmp_path))
    _write_image_folder(str(tmp_path))
    os.makedirs(tmp_path / "val" / "bird")
    with pytest.raises(ValueError, match=r"class folders \['bird'\] that train/ does not have"):
        load_dataset("imagefolder", root=str(tmp_path))


def test_image_folder_without_val_loads_for_pruning_only(tmp_path, capsys):
    import shutil

    from dataprune import cli

    _write_image_folder(str(tmp_path), per_class=6)
    shutil.rmtree(tmp_path / "val")
    with pytest.raises(FileNotFoundError, match=r"val is missing \(this command reports accuracy on it\)"):
        load_dataset("imagefolder", root=str(tmp_path))
    split = load_dataset("imagefolder", root=str(tmp_path), image_size=8, need_test=False)
    assert split.test is None and len(split.train) == 12 and split.num_classes == 2
    # the commands that read the training set only take such a folder; those that report accuracy name val/
    args = ["--dataset", "imagefolder", "--data-root", str(tmp_path), "--image-size", "8", "--model", "mlp",
            "--epochs", "2", "--batch-size", "4", "--quiet"]
    assert cli.main(["prune", *args, "--ratio", "0.5", "--no-report", "--out", str(tmp_path / "p")]) == 0
    assert len(np.load(tmp_path / "p" / "keep.npy")) == 6
    assert cli.main(["evaluate", *args, "--indices", str(tmp_path / "p" / "keep.npy")]) == 2
    assert "val is missing (this command reports accuracy on it)" in capsys.readouterr().err


def test_image_that_vanishes_mid_run(tmp_path):
    _write_image_folder(str(tmp_path))
    split = load_dataset("imagefolder", root=str(tmp_path), image_size=8)
    os.remove(split.train.files[2])
    with pytest.raises(FileNotFoundError, match="has disappeared from disk"):
        split.train.get_batch([1, 2])


def test_builtin_splits_are_fixed_and_stratified():
    m = load_dataset("mnist5k")
    assert (len(m.train), len(m.test), m.input_shape) == (4000, 1000, (1, 28, 28))
    assert np.bincount(get_targets(m.train)).tolist() == [400] * 10
    assert np.bincount(get_targets(m.test)).tolist() == [100] * 10
    again = load_dataset("mnist5k")
    assert torch.equal(m.train.inputs, again.train.inputs)
    d = load_dataset("digits")
    assert (len(d.train), len(d.test)) == (1438, 359)
    x, _ = d.train.get_batch(np.arange(len(d.train)))
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05


def test_symmetric_noise_flips_exactly_and_never_to_the_same_class():
    y = np.repeat(np.arange(10), 100)
    noisy, flipped = symmetric_noise(y, 0.2, 10, seed=3)
    assert flipped.sum() == 200
    assert np.all(noisy[flipped] != y[flipped]) and np.all(noisy[~flipped] == y[~flipped])
    # flips are spread over the other classes
    assert len(np.unique(noisy[flipped])) == 10
    noisy2, _ = symmetric_noise(y, 0.2, 10, seed=3)
    assert np.array_equal(noisy, noisy2)
    split = load_dataset("digits", label_noise=0.2)
    assert split.flipped.sum() == round(0.2 * len(split.train))
    assert np.array_equal(get_targets(split.train)[~split.flipped], split.clean_targets[~split.flipped])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        symmetric_noise(y, 1.0, 10)
    # the CLI's --label-noise-kind by its own name: the same pair-flip variant as noise_kind
    pair = load_dataset("digits", label_noise=0.2, noise_kind="pair")
    named = load_dataset("digits", label_noise=0.2, label_noise_kind="pair")
    assert np.array_equal(get_targets(pair.train), get_targets(named.train))
    assert not np.array_equal(get_targets(pair.train), get_targets(split.train))
    with pytest.raises(ValueError, match="disagree"):
        load_dataset("digits", label_noise=0.2, noise_kind="pair", label_noise_kind="symmetric")


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="valid names: mnist5k, digits, mnist5k-8x8, cifar10"):
        load_dataset("mnist")
    from dataprune.models import build_model

    with pytest.raises(ValueError, match="valid names: mlp, cnn, resnet18, resnet50"):
        build_model("vgg", 10, (3, 32, 32))


class FloatLabels(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.zeros(3), 0.5 * i


class OneHotLabels(Dataset):
    def __init__(self, dtype):
        self.dtype = dtype

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.zeros(3), torch.nn.functional.one_hot(torch.tensor(i % 2), 2).to(self.dtype)


def test_non_integer_labels_are_refused():
    with pytest.raises(TypeError, match="expected integer class labels"):
        get_targets(FloatLabels())
    # one-hot labels, float or integer (an integer one-hot vector used to pass as two labels per sample)
    for dtype in (torch.float32, torch.int64):
        with pytest.raises(TypeError, match=r"each label has shape \(2,\).*label.argmax\(\)"):
            get_targets(OneHotLabels(dtype))


def test_subset_view_and_generic_datasets_batch_alike():
    x = torch.randn(10, 3)
    ds = ArrayDataset(x, np.arange(10) % 3)
    view = SubsetView(ds, [9, 2, 4])
    assert get_targets(view).tolist() == [0, 2, 1]
    (idx, xb, yb), = iter_batches(view, [0, 1, 2], 8)
    assert torch.equal(xb, x[[9, 2, 4]])

    class Plain(Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return x[i], int(i % 3)

    batches = list(iter_batches(Plain(), [5, 1, 7], 2))
    assert [b[0].tolist() for b in batches] == [[5, 1], [7]]
    assert torch.equal(torch.cat([b[1] for b in batches]), x[[5, 1, 7]])


def test_flip_crop_keeps_shapes_and_is_seeded():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    a = flip_crop(x, torch.Generator().manual_seed(0))
    b = flip_crop(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)


def test_flip_crop_flips_and_translates_each_sample_by_the_drawn_amounts():
    """Against a per-sample reference: flip (mirror columns) when drawn, then a crop of the zero-padded
    image at the drawn offset. The identity would fail: on 64 samples some are flipped and shifted."""
    g0 = torch.Generator().manual_seed(3)
    x = torch.randn(64, 2, 6, 5, generator=g0)
    pad = 2
    out = flip_crop(x, torch.Generator().manual_seed(11), padding=pad)
    g = torch.Generator().manual_seed(11)           # replay the draws in the same order
    flip = torch.rand(64, generator=g) < 0.5
    dx = torch.randint(0, 2 * pad + 1, (64,), generator=g)
    dy = torch.randint(0, 2 * pad + 1, (64,), generator=g)
    for i in range(64):
        img = x[i].flip(2) if flip[i] else x[i]
        padded = torch.nn.functional.pad(img, (pad,) * 4)
        ref = padded[:, dy[i]:dy[i] + 6, dx[i]:dx[i] + 5]
        assert torch.equal(out[i], ref), i
    assert flip.any() and (~flip).any() and ((dx != pad) | (dy != pad)).any()
    assert not torch.equal(out, x)


def test_a_data_root_for_a_built_in_dataset_is_refused_not_ignored():
    with pytest.raises(ValueError, match="'digits' ships with its dependency and reads no data root.*cifar10"):
        load_dataset("digits", root="/some/where")


def test_image_folder_nested_hidden_and_other_files(tmp_path, capsys):
    """Images in sub-folders of a class count for it (as torchvision's ImageFolder reads them); hidden entries
    (.ipynb_checkpoints, macOS ._x.png forks) are skipped, not taken for a class or an image; other files are
    named, not read."""
    from PIL import Image

    from dataprune import cli

    _write_image_folder(str(tmp_path))
    rng = np.random.default_rng(1)
    for sub in ("cat/session2", "cat/session2/deeper", "dog/.ipynb_checkpoints", ".ipynb_checkpoints"):
        os.makedirs(tmp_path / "train" / sub, exist_ok=True)
    for rel in ("cat/session2/a.png", "cat/session2/deeper/b.jpg", "dog/.ipynb_checkpoints/c.png"):
        Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)).save(tmp_path / "train" / rel)
    (tmp_path / "train" / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 not an image")
    (tmp_path / "train" / "dog" / "notes.txt").write_text("labelled by hand")
    (tmp_path / "train" / "dog" / "meta.json").write_text("{}")
    split = load_dataset("imagefolder", root=str(tmp_path), image_size=8)
    assert split.train.classes == ["cat", "dog"]
    assert get_targets(split.train).tolist() == [0] * 5 + [1] * 3
    names = [os.path.relpath(f, tmp_path / "train") for f in split.train.files]
    assert names[:5] == ["cat/0.png", "cat/1.png", "cat/2.png", "cat/session2/a.png", "cat/session2/deeper/b.jpg"]
    assert split.train.skipped == {".txt": 1, ".json": 1}
    assert split.train[3][0].shape == (3, 8, 8)              # a nested image is read
    args = cli.build_parser().parse_args(["prune", "--dataset", "imagefolder", "--data-root", str(tmp_path),
                                          "--image-size", "8", "--ratio", "0.5", "--out", str(tmp_path / "o")])
    cli._load_split(args, need_test=False)
    assert "note: 2 files under train/ are not images and were not read (1 .json, 1 .txt)" in capsys.readouterr().err


def test_mnist_drawn_as_digits_follows_the_digits_recipe():
    """mnist_as_digits (the digits-like validation family): the ink box stretched to 32x32, 4x4 blocks counted."""
    from dataprune.data.builtin import mnist_as_digits

    square = np.zeros((28, 28), np.uint8)
    square[4:24, 6:20] = 255                                  # a solid box: every block full
    bar = np.zeros((28, 28), np.uint8)
    bar[4:24, 13:15] = 255                                    # a "1": 20 tall, 2 wide -> widened to 10, centred
    blank = np.zeros((28, 28), np.uint8)
    out = mnist_as_digits(np.stack([square, bar, blank]))
    assert out.shape == (3, 8, 8) and out.dtype == np.uint8
    assert (out[0] == 16).all() and (out[2] == 0).all()
    assert (out[1][:, [0, 1, 6, 7]] == 0).all()               # the widening margins stay blank ...
    assert (out[1][:, 3:5].sum(axis=1) >= 16).all()           # ... the stroke runs the full height, in the middle
    assert (out[1] == out[1][:, ::-1]).all()                  # and is centred
