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


def test_float_index_files_are_refused_not_truncated(tmp_path, capsys):
    from dataprune import cli

    path = tmp_path / "keep.npy"
    np.save(path, np.array([0.0, 3.7, 5.0]))
    assert cli.main(["evaluate", "--dataset", "digits", "--train-limit", "50", "--indices", str(path),
                     "--epochs", "1", "--quiet"]) == 2
    assert "holds float64 values; indices must be integers" in capsys.readouterr().err


def test_cifar_batches_pickled_with_protocol_5(tmp_path):
    import pickle

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 12), ("test", 4)):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": rng.integers(0, 100, n).tolist()}, f, protocol=5)
    split = load_dataset("cifar100", root=str(tmp_path))
    assert (len(split.train), len(split.test)) == (12, 4)


def test_image_folder_exports_carry_file_paths_and_size_mismatch_is_named(tmp_path, capsys):
    from dataprune import cli
    from test_data import _write_image_folder

    root = tmp_path / "imgs"
    _write_image_folder(str(root), per_class=6)
    out = tmp_path / "p"
    data = ["--dataset", "imagefolder", "--data-root", str(root), "--image-size", "16"]
    assert cli.main(["prune", *data, "--model", "cnn", "--epochs", "2", "--checkpoints", "1,2", "--ratio", "0.5",
                     "--out", str(out), "--no-report", "--quiet"]) == 0
    lines = (out / "keep.csv").read_text().splitlines()
    assert lines[0] == "index,label,score,source_index,path" and len(lines) == 7
    assert all(line.split(",")[-1].startswith(str(root / "train")) for line in lines[1:])
    capsys.readouterr()
    assert cli.main(["select", "--dataset", "imagefolder", "--data-root", str(root), "--image-size", "12",
                     "--scores", str(out / "scores.npy"), "--ratio", "0.5", "--out", str(tmp_path / "k.npy"),
                     "--quiet"]) == 2
    assert "image_size 16 there vs 12 here" in capsys.readouterr().err


def test_an_explicit_epoch_count_also_sets_a_presets_surrogate():
    from dataprune import cli

    args = cli.build_parser().parse_args(["bench", "--preset", "mnist5k-cpu", "--epochs", "3"])
    from dataprune.presets import get_preset

    cli._resolve_grid(args, cli.BENCH, get_preset("mnist5k-cpu"))
    assert args.epochs == 3 and args.surrogate_epochs is None          # the surrogate follows --epochs
    assert args.checkpoints is None                                    # and the default checkpoints fit it
    assert cli.parse_checkpoints(args.checkpoints, 3) == [1, 2, 3]
    args = cli.build_parser().parse_args(["bench", "--preset", "mnist5k-cpu"])
    cli._resolve_grid(args, cli.BENCH, get_preset("mnist5k-cpu"))
    assert (args.epochs, args.surrogate_epochs, args.checkpoints) == (10, 10, "1,3,5,7,9")


@pytest.mark.parametrize("item, match", [
    (lambda x, y: (__import__("PIL.Image").Image.fromarray((x[0].numpy() * 255).astype(np.uint8)), y),
     r"input is a PIL image .*ToTensor\(\).*set_format\('torch'\)"),
    (lambda x, y: ("images/0001.png", y), r"input is str 'images/0001.png'.*load the file in __getitem__"),
    (lambda x, y: (x, str(y)), r"label is str '\d'; expected an integer class label: map the class names"),
    (lambda x, y: {"image": __import__("PIL.Image").Image.fromarray((x[0].numpy() * 255).astype(np.uint8)),
                   "label": y}, r"input is a PIL image"),
    (lambda x, y: (x,), r"items have 1 field\(s\); position 1 does not exist: dataprune needs an input and an "
                        r"integer label"),
])
def test_items_dataprune_cannot_batch_are_named_before_training(item, match):
    import torch.nn as nn

    import dataprune as dp

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 1, 8, 8, generator=g), np.arange(40) % 4

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            return item(x[i], int(y[i]))

    built = []

    def make():
        built.append(1)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 4))

    with pytest.raises((TypeError, IndexError), match=match):
        dp.prune(make, Items(), ratio=0.5, epochs=1, batch_size=8)
    assert not built                                     # refused before any model was built


def test_a_stream_is_refused_with_what_to_do_by_prune_train_and_the_pruner():
    """An IterableDataset (or anything without indexing and a length) cannot be pruned by index: a specific
    message instead of "object of type ... has no len()" from deep inside."""
    from torch.utils.data import IterableDataset

    import dataprune as dp

    class Stream(IterableDataset):
        def __iter__(self):
            for i in range(10):
                yield torch.randn(4), i % 2

    model = torch.nn.Linear(4, 2)
    match = r"Stream is not a map-style dataset \(indexable, with a length\).*Write the samples out first"
    with pytest.raises(TypeError, match=match):
        dp.prune(model, Stream(), ratio=0.5, epochs=1)
    with pytest.raises(TypeError, match=match):
        dp.DynamicPruner(Stream(), model=model, epochs=2)
    with pytest.raises(TypeError, match=match):
        dp.train(model, Stream(), epochs=1)
    with pytest.raises(TypeError, match=r"generator is not a map-style dataset"):
        dp.prune(model, ((torch.randn(4), i % 2) for i in range(10)), ratio=0.5, epochs=1)
