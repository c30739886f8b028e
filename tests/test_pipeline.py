"""Surrogate training + scoring end to end: determinism, partitions."""

import numpy as np
import pytest

from dataprune.data import SubsetView, get_targets, load_dataset
from dataprune.models import build_model
from dataprune.pipeline import partition, surrogate_scores
from dataprune.select import select
from dataprune.train import TrainConfig


@pytest.fixture(scope="module")
def digits():
    split = load_dataset("digits")
    return split, SubsetView(split.train, np.arange(300))


def _run(ds, shape, seed, **kw):
    make = lambda: build_model("cnn", 10, shape)  # noqa: E731
    return surrogate_scores(["moso", "random"], ds, make, config=TrainConfig(epochs=2, batch_size=32),
                            checkpoint_epochs=[1, 2], seed=seed, **kw)


def test_same_seed_gives_identical_scores_and_indices(digits):
    split, ds = digits
    a, b, c = (_run(ds, split.input_shape, s) for s in (3, 3, 4))
    labels = get_targets(ds)
    for m in ("moso", "random"):
        assert np.array_equal(a.scores[m], b.scores[m])
        assert not np.array_equal(a.scores[m], c.scores[m])
        ka = select(a.scores[m], 0.5, labels=labels, policy="class_balanced")
        kb = select(b.scores[m], 0.5, labels=labels, policy="class_balanced")
        assert np.array_equal(ka, kb)


def test_partitioned_mode_scores_each_part_with_its_own_surrogate(digits):
    split, ds = digits
    run = _run(ds, split.input_shape, 0, partitions=3)
    assert len(run.surrogates) == 3 and len(run.parts) == 3
    parts = run.parts
    assert sorted(np.concatenate(parts).tolist()) == list(range(300))
    for p, sur in zip(parts, run.surrogates):
        assert sur.history[0]["epoch"] == 1
    assert np.isfinite(run.scores["moso"]).all()


def test_partition_is_stratified_and_disjoint():
    labels = np.repeat(np.arange(4), 30)
    parts = partition(labels, 3, seed=1)
    assert sum(len(p) for p in parts) == 120
    for p in parts:
        assert np.bincount(labels[p]).tolist() == [10, 10, 10, 10]
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        partition(labels, 0)
