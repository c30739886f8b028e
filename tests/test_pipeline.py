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
    """Surrogate k saw part k and nothing else: training on part k alone, with the same seed, gives the
    same weights; and part k's scores are what MoSo gives with that surrogate's checkpoints."""
    import torch

    from dataprune import moso
    from dataprune.train import train
    from dataprune.utils import seed_everything

    split, ds = digits
    run = _run(ds, split.input_shape, 0, partitions=3)
    parts = run.parts
    assert sorted(np.concatenate(parts).tolist()) == list(range(300))
    make = lambda: build_model("cnn", 10, split.input_shape)  # noqa: E731
    for k, part in enumerate(parts):
        seed_everything(k)
        alone = train(make(), SubsetView(ds, part), config=TrainConfig(epochs=2, batch_size=32), seed=k,
                      checkpoint_epochs=[1, 2])
        for mine, theirs in zip(run.checkpoints[k], alone.checkpoints, strict=True):
            assert all(torch.equal(mine.state[n], theirs.state[n]) for n in mine.state)
        other = parts[(k + 1) % 3]
        seed_everything(k)
        wrong = train(make(), SubsetView(ds, other), config=TrainConfig(epochs=2, batch_size=32), seed=k,
                      checkpoint_epochs=[2])
        assert not torch.equal(wrong.checkpoints[0].state["fc.weight"], run.checkpoints[k][-1].state["fc.weight"])
        assert np.allclose(run.scores["moso"][part], moso.score(make(), run.checkpoints[k], SubsetView(ds, part)))


def test_partition_is_stratified_and_disjoint():
    labels = np.repeat(np.arange(4), 30)
    parts = partition(labels, 3, seed=1)
    assert sum(len(p) for p in parts) == 120
    for p in parts:
        assert np.bincount(labels[p]).tolist() == [10, 10, 10, 10]
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        partition(labels, 0)


def test_a_head_plan_scores_the_head_of_an_early_segment(digits):
    """Plan 'early2-head': 2 of 10 epochs, the recommended method's scores over the classifier head only
    (a regression: methods with a fused form once ignored the plan's parameters and scored them all)."""
    from dataprune.methods.moso_variants import classwise_score
    from dataprune.pipeline import PLAN_NAMES

    split, ds = digits
    make = lambda: build_model("cnn", 10, split.input_shape)  # noqa: E731
    run = surrogate_scores(["recommended"], ds, make, config=TrainConfig(epochs=10, batch_size=32),
                           checkpoint_epochs=[1, 3, 5, 7, 9], plan=PLAN_NAMES["early2-head"], seed=0)
    assert [c.epoch for c in run.checkpoints[0]] == [2] and len(run.surrogates[0].history) == 2
    head = classwise_score(make(), run.checkpoints[0], ds, params="last_layer")
    assert np.allclose(run.scores["recommended"], head)
    assert not np.allclose(head, classwise_score(make(), run.checkpoints[0], ds))


def test_an_annealed_plan_runs_the_whole_schedule_in_its_segment(digits):
    """early2-head anneals: 2 of 10 epochs trained on a 2-epoch cosine schedule (its checkpoint carries that
    schedule's last learning rate, not the 10-epoch schedule's second), charged as 2 epochs, and said so."""
    from dataprune.pipeline import PLAN_NAMES, Plan
    from dataprune.train import cosine_lr

    split, ds = digits
    make = lambda: build_model("cnn", 10, split.input_shape)  # noqa: E731
    cfg = TrainConfig(epochs=10, batch_size=32)
    plan = PLAN_NAMES["early2-head"]
    assert plan.anneal and "compressed" in plan.describe(10)
    run = surrogate_scores(["recommended"], ds, make, config=cfg, checkpoint_epochs=[1, 3], plan=plan, seed=0)
    (ck,) = run.checkpoints[0]
    assert ck.epoch == 2 and ck.lr == pytest.approx(cosine_lr(cfg.lr, 1, 2, cfg.min_lr))
    assert ck.lr != pytest.approx(cosine_lr(cfg.lr, 1, 10, cfg.min_lr))
    assert len(run.surrogates[0].history) == 2
    # The same plan without annealing is the 10-epoch trajectory's first two epochs: different weights.
    plain = surrogate_scores(["recommended"], ds, make, config=cfg, checkpoint_epochs=[1, 3],
                             plan=Plan("early2-plain", segment=0.2, params="last_layer", checkpoints=1), seed=0)
    assert plain.checkpoints[0][0].lr == pytest.approx(cosine_lr(cfg.lr, 1, 10, cfg.min_lr))
    assert not np.allclose(run.scores["recommended"], plain.scores["recommended"])
    # The full-run estimate is still one run of the user's 10-epoch recipe.
    assert run.full_seconds_estimate == pytest.approx(
        run.surrogate_seconds / run.surrogates[0].samples_seen * 10 * len(ds))
