"""DynamicPruner: the contract a user's loop relies on, InfoBatch as published (defects fixed), and the
project's dynamic method learning from the training step."""

import re

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

import dataprune as dp
from dataprune.data import ArrayDataset
from dataprune.dynamic import DELTA, DYNAMIC_DELTA, DynamicPruner


def _blobs(n=240, d=8, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centers = torch.randn(classes, d, generator=g) * 3
    return centers[y] + torch.randn(n, d, generator=g), y.numpy()


def _mlp(d=8, classes=3, bias=True):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, classes, bias=bias))


def _step(pruner, model, opt, idx, x, targets):
    """One step of a user's loop: the per-sample losses through pruner.update, then backward and step."""
    logits = model(x)
    loss = pruner.update(idx, F.cross_entropy(logits, targets, reduction="none"), logits=logits, targets=targets)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def _loop(pruner, model, epochs, batch_size=16, num_workers=0, lr=0.1, on_epoch=None):
    """A user's loop; ``on_epoch(epoch)`` runs right after each epoch's draw. Every step's loss must be finite."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    pruner.optimizer = opt
    loader = DataLoader(pruner.dataset, batch_size=batch_size, sampler=pruner.sampler, num_workers=num_workers)
    seen_per_epoch = []
    for epoch in range(epochs):
        pruner.set_epoch(epoch)
        if on_epoch is not None:
            on_epoch(epoch)
        seen = []
        for idx, x, y in loader:
            assert torch.isfinite(_step(pruner, model, opt, idx, x, y))
            seen += idx.tolist()
        seen_per_epoch.append(seen)
    return seen_per_epoch


@pytest.mark.parametrize("method", ["infobatch", "dynamic", "random_dynamic"])
def test_a_plain_loop_with_workers_reads_each_epochs_kept_set_once(method):
    x, y = _blobs()
    model = _mlp()
    pruner = DynamicPruner(ArrayDataset(x, y), model=model, epochs=8, ratio=0.5, method=method, seed=3)
    seen = _loop(pruner, model, 8, num_workers=2)
    for epoch, s in enumerate(seen):
        assert len(s) == len(set(s)) == pruner.kept_counts[epoch]     # the epoch ends; no sample twice
    assert pruner.passes == sum(len(s) for s in seen)
    assert pruner.saved_fraction == pytest.approx(1 - pruner.passes / (240 * 8))
    assert 0.0 < pruner.saved_fraction < 0.6
    trusted = 240 - int(pruner.suspect.sum())
    if method == "dynamic":                                  # prunes to the end (DYNAMIC_DELTA = 1)
        assert pruner.delta == DYNAMIC_DELTA == 1.0 and len(seen[-1]) < trusted
    else:                                                    # annealed: epoch 7 >= 0.875 x 8 reads all
        assert pruner.delta == DELTA and len(seen[-1]) == trusted
    scores = pruner.scores
    assert scores.shape == (240,) and scores.dtype == np.float64 and not np.isnan(scores).any()
    keep = dp.select(scores, 0.5, labels=y)                                # a static subset for the next run
    assert len(keep) == 120


def test_batch_sampler_folds_a_tail_too_small_for_batchnorm_and_reads_every_kept_sample_once():
    from dataprune.train import _batches, tail_folded

    assert [tail_folded(n, 32) for n in (1, 2, 3, 4)] == [True, True, True, False]
    assert [tail_folded(n, 8) for n in (1, 2)] == [True, False]
    assert [len(b) for b in _batches(np.arange(98), 32)] == [32, 32, 34]          # 98 = 3 x 32 + 2
    assert [len(b) for b in _batches(np.arange(100), 32)] == [32, 32, 32, 4]
    x, y = _blobs(n=326, classes=3)
    pruner = DynamicPruner(ArrayDataset(x, y), epochs=4, ratio=0.7, method="random_dynamic", seed=3)
    loader = DataLoader(pruner.dataset, batch_sampler=pruner.batch_sampler(32))
    for epoch in range(4):
        pruner.set_epoch(epoch)
        sizes, seen = [], []
        for _ in range(2):                                   # the same batches however often it is read
            got = [idx.tolist() for idx, _, _ in loader]
            seen.append(got)
            sizes = [len(b) for b in got]
        assert seen[0] == seen[1] and len(loader) == len(sizes)
        assert sorted(sum(seen[0], [])) == sorted(pruner.order.tolist())
        assert min(sizes) >= 4 or len(sizes) == 1
    assert pruner.kept_counts[0] == 98                                           # the tail of 2 was folded
    assert pruner.steps_in_epoch(32) == 4 and len(pruner.batch_sampler(32)) == 3


def test_dp_train_folds_a_pruned_epochs_tail_of_two_samples():
    from dataprune.train import TrainConfig

    x, y = _blobs(n=326, classes=3)
    model = _mlp()
    pruner = DynamicPruner(ArrayDataset(x, y), epochs=2, ratio=0.7, method="random_dynamic", seed=3)
    sizes = []

    class Sizes:
        def on_batch_end(self, epoch, step, indices, logits, targets):
            sizes.append(len(targets))

    dp.train(model, ArrayDataset(x, y), config=TrainConfig(epochs=2, batch_size=32, lr=0.05), pruner=pruner,
             callbacks=[Sizes()])
    assert pruner.kept_counts == [98, 98] and sizes == [32, 32, 34] * 2


def test_iterating_the_sampler_twice_gives_the_same_epoch():
    """The official InfoBatch re-prunes in __iter__, and BatchSampler's islice re-iterates: epochs never end."""
    x, y = _blobs()
    pruner = DynamicPruner(ArrayDataset(x, y), epochs=4, ratio=0.5, method="random_dynamic")
    first, again = list(pruner.sampler), list(pruner.sampler)
    assert first == again and len(first) == len(pruner.sampler) == 120
    batches = list(torch.utils.data.BatchSampler(pruner.sampler, 32, drop_last=False))
    assert sum(len(b) for b in batches) == 120


def test_infobatch_as_published_with_weights_set_afresh_every_epoch():
    x, y = _blobs()
    epochs, r = 10, 0.4
    pruner = DynamicPruner(ArrayDataset(x, y), epochs=epochs, ratio=r, method="infobatch", seed=0)
    assert pruner.kept_counts[0] == 240                                     # nothing seen yet: full data
    losses = torch.linspace(0.1, 2.4, 240)                                   # sample i has loss losses[i]
    for epoch in range(epochs):
        pruner.set_epoch(epoch)
        order = pruner.shard()
        kept = np.zeros(240, bool)
        kept[order] = True
        w = pruner._weights
        if epoch == 0 or epoch >= DELTA * epochs:                          # epochs 9 (>= 8.75): full data, weight 1
            assert kept.all() and np.all(w == 1.0)
        else:
            below = losses.numpy() < losses.numpy().mean()
            assert kept[~below].all()                                       # above the mean: always kept
            share = 1 - kept[below].mean()
            assert abs(share - r) < 0.15                                     # r is a share of the below-mean ones
            assert np.allclose(w[kept & below], 1 / (1 - r)) and np.all(w[kept & ~below] == 1.0)
        out = pruner.update(torch.from_numpy(order), losses[order].clone().requires_grad_())
        expected = (losses[order] * torch.from_numpy(w[order])).mean()
        assert torch.allclose(out, expected)
    assert np.allclose(pruner.scores, losses.numpy())                        # score = latest loss


def test_hugging_face_dataset_items_through_getitems():
    datasets = pytest.importorskip("datasets")
    x, y = _blobs(n=60)
    hf = datasets.Dataset.from_dict({"features": x.numpy(), "label": y.tolist()}).with_format("torch")
    pruner = DynamicPruner(hf, epochs=3, ratio=0.5, method="random_dynamic", input_key="features")
    batch = pruner.dataset.__getitems__([3, 1, 2])
    assert [b[0] for b in batch] == [3, 1, 2] and torch.equal(batch[1][1], x[1]) and int(batch[2][2]) == y[2]
    seen = _loop(pruner, _mlp(), 3)
    assert [len(s) for s in seen] == pruner.kept_counts


def test_shards_of_two_ranks_cover_the_epoch_and_agree_on_it():
    x, y = _blobs()
    ranks = [DynamicPruner(ArrayDataset(x, y), epochs=4, ratio=0.3, method="random_dynamic", seed=5,
                           num_replicas=2, rank=r) for r in (0, 1)]
    single = DynamicPruner(ArrayDataset(x, y), epochs=4, ratio=0.3, method="random_dynamic", seed=5)
    for epoch in range(3):
        for p in (*ranks, single):
            p.set_epoch(epoch)
        a, b = ranks[0].shard(), ranks[1].shard()
        assert len(a) == len(b)
        assert set(a) | set(b) == set(single.shard())
        assert np.array_equal(ranks[0]._order, single._order)


def test_dynamic_sets_aside_the_labels_its_own_predictions_contradict():
    x, y = _blobs(n=300, classes=3)
    noisy = y.copy()
    flipped = np.zeros(300, bool)
    flipped[::10] = True                                                     # 10% pair-flipped labels
    noisy[flipped] = (y[flipped] + 1) % 3
    model = _mlp()
    pruner = DynamicPruner(ArrayDataset(x, noisy), model=model, epochs=10, ratio=0.3, method="dynamic")
    dp.train(model, ArrayDataset(x, noisy), epochs=10, batch_size=16, lr=0.05, pruner=pruner)
    d = pruner.evidence_decision
    assert d["credible"] and d["evidence_epochs"] == [2, 3]
    caught = pruner.suspect & flipped
    assert caught.sum() >= 0.6 * flipped.sum() and (pruner.suspect & ~flipped).sum() <= 3    # "confident": recall ~0.7
    assert np.isneginf(pruner.scores[pruner.suspect]).all()
    # the last epoch prunes too (DYNAMIC_DELTA = 1): about 0.7 of the trusted samples, never a set-aside one
    assert abs(pruner.kept_counts[-1] - 0.7 * (300 - pruner.suspect.sum())) <= 3
    assert not pruner.suspect[pruner.shard()].any()
    assert 0.2 < pruner.saved_fraction < 0.45
    pruner.close()


def test_dynamic_trusts_a_run_through_heavy_noise_but_not_a_collapsed_one():
    """The evidence is believed unless the run's predictions collapsed onto few classes; contradicting more
    than half of the labels (60% symmetric noise over 3 classes) is not collapse."""
    x, y = _blobs(n=300, classes=3)
    rng = np.random.default_rng(0)
    noisy = y.copy()
    flipped = rng.random(300) < 0.6
    noisy[flipped] = (y[flipped] + rng.integers(1, 3, flipped.sum())) % 3

    def judged(probs):
        pruner = DynamicPruner(ArrayDataset(x, noisy), model=_mlp(), epochs=10, ratio=0.3, method="dynamic")
        pruner._probs_sum = probs.astype(np.float64)
        pruner._probs_count[:] = 1
        pruner._judge_labels()
        pruner.close()
        return pruner

    truth = np.full((300, 3), 0.05)
    truth[np.arange(300), y] = 0.9                         # predicts every true class, confidently
    good = judged(truth)
    assert good.evidence_decision["flagged_share"] > 0.5 and good.evidence_decision["credible"]
    assert good.suspect.sum() == (noisy != y).sum() and not good.suspect[noisy == y].any()
    one = np.tile([0.9, 0.05, 0.05], (300, 1))             # everything in class 0
    bad = judged(one)
    assert not bad.evidence_decision["credible"] and not bad.suspect.any()
    assert "collapsed" in bad.evidence_decision["why"]


def test_dynamic_keeps_every_label_when_the_run_is_unsure_of_its_predictions():
    """The same pattern of contradicted labels is believed from a run sure of its predictions and not from one
    that has learnt the task only partly (its own low per-class confidences make every doubt "confident")."""
    from dataprune.dynamic import CREDIBLE_CONFIDENCE

    rng = np.random.default_rng(3)
    y = np.arange(400) % 10
    noisy = y.copy()
    flipped = rng.random(400) < 0.2
    noisy[flipped] = (y[flipped] + rng.integers(1, 10, flipped.sum())) % 10

    def judged(top):
        probs = np.full((400, 10), (1 - top) / 9)
        probs[np.arange(400), y] = top                      # predicts every true class, with this probability
        pruner = DynamicPruner(ArrayDataset(torch.zeros(400, 2), noisy), model=_mlp(d=2, classes=10), epochs=10,
                               ratio=0.3, method="dynamic")
        pruner._probs_sum = probs
        pruner._probs_count[:] = 1
        pruner._judge_labels()
        pruner.close()
        return pruner

    sure = judged(0.8)
    assert sure.evidence_decision["credible"] and (sure.suspect == flipped).all()
    unsure = judged(CREDIBLE_CONFIDENCE - 0.06)
    d = unsure.evidence_decision
    assert d["flagged_share"] == pytest.approx(flipped.mean())         # it contradicts the same labels ...
    assert not d["credible"] and not unsure.suspect.any() and d["set_aside_share"] == 0.0   # ... and keeps them
    assert d["confidence"] == pytest.approx(CREDIBLE_CONFIDENCE - 0.06) and "not sure" in d["why"]
    assert "why" not in sure.evidence_decision


def test_a_rare_class_the_run_has_not_learnt_keeps_its_labels_while_even_noise_is_set_aside(monkeypatch):
    """Label noise flags every class's labels at about the same rate; a rare class the run has not learnt by the
    evidence window is flagged far above the overall rate, and is not noise: its labels stay."""
    import dataprune.dynamic as dyn

    y = np.repeat([0, 1, 2], [150, 120, 30])
    x = torch.randn(300, 8)
    rng = np.random.default_rng(1)
    noisy = y.copy()
    flipped = (y < 2) & (rng.random(300) < 0.08)
    noisy[flipped] = 1 - y[flipped]
    probs = np.full((300, 3), 0.05)
    probs[np.arange(300), y] = 0.9                          # the first two classes learnt
    unlearnt = np.flatnonzero(y == 2)[:18]                  # 60% of the rare class predicted as class 0
    probs[unlearnt] = [0.9, 0.05, 0.05]

    def judged():
        pruner = DynamicPruner(ArrayDataset(x, noisy), model=_mlp(), epochs=10, ratio=0.3, method="dynamic")
        pruner._probs_sum = probs.copy()
        pruner._probs_count[:] = 1
        pruner._judge_labels()
        pruner.close()
        return pruner

    guarded = judged()
    d = guarded.evidence_decision
    assert d["classes_kept_whole"] == [2] and d["class_flagged_share"][2] == pytest.approx(0.6)
    assert not guarded.suspect[y == 2].any()
    assert (guarded.suspect == flipped).all()               # the noise in the learnt classes: all of it, only it
    monkeypatch.setattr(dyn, "CLASS_FLAG_FACTOR", None)
    unguarded = judged()
    assert unguarded.suspect[unlearnt].all() and unguarded.evidence_decision["classes_kept_whole"] == []


def test_a_class_the_run_cannot_recognise_keeps_its_labels_under_noise(monkeypatch):
    """Imbalance plus noise: a rare class whose labels are half wrong is flagged at less than twice the overall
    rate (the per-class rate guard does not fire), but the run gives it a tiny probability even on the samples
    labelled with it: it cannot tell its clean samples from its wrong ones, so all of them stay."""
    import dataprune.dynamic as dyn

    rng = np.random.default_rng(2)
    y = np.repeat([0, 1, 2, 0], [200, 200, 10, 10])       # the last 10: class 0 samples labelled 2
    noisy = np.where(np.arange(420) >= 410, 2, y)
    big = np.flatnonzero(np.arange(420) < 400)
    swap = rng.choice(big, size=160, replace=False)         # 40% of the big classes' labels swapped 0 <-> 1
    noisy[swap] = 1 - y[swap]
    probs = np.full((420, 3), 0.05)
    probs[np.arange(420), y] = 0.9                          # classes 0 and 1 recognised
    probs[400:406] = [0.05, 0.9, 0.05]                      # class 2 not: 6 of its clean samples taken for 1s,
    probs[406:410] = [0.3, 0.4, 0.3]                        # 4 unsure
    clean_rare = np.arange(400, 410)

    def judged():
        pruner = DynamicPruner(ArrayDataset(torch.zeros(420, 2), noisy), model=_mlp(d=2), epochs=10, ratio=0.3,
                               method="dynamic")
        pruner._probs_sum = probs.copy()
        pruner._probs_count[:] = 1
        pruner._judge_labels()
        pruner.close()
        return pruner

    monkeypatch.setattr(dyn, "CLASS_UNLEARNT_FACTOR", None)
    unguarded = judged()
    d = unguarded.evidence_decision
    assert d["classes_kept_whole"] == [] and d["class_flagged_share"][2] < 2 * d["flagged_share"]
    assert unguarded.suspect[clean_rare].sum() == 6                   # clean rare samples set aside
    monkeypatch.setattr(dyn, "CLASS_UNLEARNT_FACTOR", 0.2)
    guarded = judged()
    assert guarded.evidence_decision["classes_kept_whole"] == [2]
    assert not guarded.suspect[noisy == 2].any()
    assert (guarded.suspect == (unguarded.suspect & (noisy != 2))).all()   # the other classes as before


def test_dp_train_with_a_pruner_is_reproducible_and_skips_samples():
    """dp.train with a pruner: the same kept sets, scores and weights on a second run, fewer passes."""
    x, y = _blobs()
    runs = []
    for _ in range(2):
        model = _mlp()
        pruner = DynamicPruner(ArrayDataset(x, y), epochs=4, ratio=0.5, method="infobatch", seed=1)
        res = dp.train(model, ArrayDataset(x, y), epochs=4, batch_size=16, lr=0.05, pruner=pruner)
        runs.append((res.samples_seen if hasattr(res, "samples_seen") else None, pruner.kept_counts,
                     pruner.scores, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][1] == runs[1][1] and np.array_equal(runs[0][2], runs[1][2])      # reproducible
    assert all(torch.equal(a, b) for a, b in zip(runs[0][3], runs[1][3], strict=True))
    assert sum(runs[0][1]) < 4 * 240


@pytest.mark.parametrize("bad, match", [
    (dict(method="nope"), "unknown dynamic pruning method"),
    (dict(ratio=1.5), r"ratio must be in \[0, 1\)"),
    (dict(epochs=0), "epochs must be an integer >= 1"),
    (dict(method="dynamic", model=None), "pass model="),
])
def test_bad_arguments(bad, match):
    x, y = _blobs(n=30)
    kw = dict(epochs=3, ratio=0.5, method="infobatch", model=_mlp())
    with pytest.raises(ValueError, match=match):
        DynamicPruner(ArrayDataset(x, y), **{**kw, **bad})


class _Dicts(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "label": int(self.y[i])}


def test_dict_items_and_a_bias_free_head():
    x, y = _blobs(n=90)
    model = _mlp(bias=False)
    pruner = DynamicPruner(_Dicts(x, y), model=model, epochs=4, ratio=0.5, method="dynamic")
    seen = _loop(pruner, model, 4)
    assert [len(s) for s in seen] == pruner.kept_counts and pruner._scored.all()


def test_cli_train_with_dynamic_pruning_writes_scores_for_a_static_subset(tmp_path, capsys):
    import json

    from dataprune import cli

    out = tmp_path / "ck.pt"
    args = ["train", "--dataset", "digits", "--train-limit", "200", "--epochs", "8", "--dynamic", "infobatch",
            "--ratio", "0.5", "--out", str(out)]
    assert cli.main(args) == 0
    assert "dynamic pruning (infobatch, ratio 0.5): skipped" in capsys.readouterr().err
    meta = json.loads((tmp_path / "ck.pt.scores.npy.json").read_text())
    assert meta["method"] == "dynamic:infobatch" and 0 < meta["saved_fraction"] < 0.5
    assert meta["kept_per_epoch"][0] == 200 and meta["kept_per_epoch"][-1] == 200
    assert cli.main(["select", "--dataset", "digits", "--train-limit", "200", "--scores",
                     str(tmp_path / "ck.pt.scores.npy"), "--ratio", "0.5", "--out", str(tmp_path / "keep.npy")]) == 0
    assert len(np.load(tmp_path / "keep.npy")) == 100
    assert cli.main(args) == 2                                           # not overwritten without --force
    assert cli.main([*args[:-2], "--ratio", "1.5", "--out", str(tmp_path / "x.pt")]) == 2
    ours = ["train", "--dataset", "digits", "--train-limit", "300", "--label-noise", "0.2", "--epochs", "6",
            "--dynamic", "dynamic", "--ratio", "0.3", "--out", str(tmp_path / "d.pt")]
    assert cli.main(ours) == 0
    err = capsys.readouterr().err
    meta = json.loads((tmp_path / "d.pt.scores.npy.json").read_text())
    ev = meta["evidence"]
    assert len(ev["class_flagged_share"]) == 10 and ev["evidence_epochs"] == [2]
    aside = int(np.isneginf(np.load(tmp_path / "d.pt.scores.npy")).sum())
    assert f"set aside {aside} samples whose labels" in err
    # a run that has hardly learnt by the evidence window: its doubts are no evidence, and the user is told so
    assert cli.main([*ours[:-2], "--lr", "0.004", "--out", str(tmp_path / "slow.pt")]) == 0
    err = capsys.readouterr().err
    ev = json.loads((tmp_path / "slow.pt.scores.npy.json").read_text())["evidence"]
    assert not ev["credible"] and ev["confidence"] < 0.36 and ev["flagged_share"] > 0
    assert "nothing set aside: the run was not sure of its predictions" in err
    assert not np.isneginf(np.load(tmp_path / "slow.pt.scores.npy")).any()


def test_bench_rows_carry_saved_fraction_and_total_cost_for_static_and_dynamic_methods(tmp_path):
    from dataprune import cli
    from dataprune.results import read_results

    out = tmp_path / "b"
    args = ["bench", "--dataset", "digits", "--train-limit", "300", "--model", "mlp", "--epochs", "8",
            "--methods", "random,infobatch,random_dynamic", "--ratios", "0.5", "--seeds", "1", "--out", str(out),
            "--quiet"]
    assert cli.main(args) == 0
    rows = {r["method"]: r for r in read_results(str(out / "results.csv"))}
    assert rows["full"]["total_cost"] == 1.0 and rows["full"]["saved_fraction"] == 0.0
    # static: the subset saves its share of the passes; total = (pruning + its training) / the full run
    r = rows["random"]
    assert r["saved_fraction"] == pytest.approx(0.5, abs=0.01)
    assert r["total_cost"] == pytest.approx((r["prune_seconds"] + r["train_cpu_seconds"])
                                            / rows["full"]["train_cpu_seconds"], rel=1e-4)
    # dynamic: the measured share of passes skipped; no pruning cost outside the run
    assert 0.0 < rows["infobatch"]["saved_fraction"] < 0.5 < rows["random_dynamic"]["saved_fraction"] + 0.1
    assert rows["infobatch"]["plan"] == "in-training" and rows["infobatch"]["prune_seconds"] == 0.0
    for m in ("infobatch", "random_dynamic"):
        assert rows[m]["total_cost"] == pytest.approx(rows[m]["train_cpu_seconds"] /
                                                      rows["full"]["train_cpu_seconds"], rel=1e-4)
    assert (out / "accuracy_vs_total_cost.png").exists()
    assert "Best test accuracy (%) within a total compute" in (out / "results.md").read_text()
    before = read_results(str(out / "results.csv"))
    assert cli.main(args) == 0                                   # finished cells are kept, not rerun
    after = read_results(str(out / "results.csv"))
    assert [(r["method"], r["train_cpu_seconds"]) for r in after] == [(r["method"], r["train_cpu_seconds"])
                                                                       for r in before]
    with pytest.raises(ValueError, match="prunes while training; it takes no"):
        from dataprune.bench import parse_entry
        parse_entry("infobatch+topk")


def test_dynamic_records_spill_to_files_above_cache_mb_with_the_same_result():
    x, y = _blobs(n=120)
    got = []
    for cache_mb in (None, 0.0):
        model = _mlp()
        pruner = DynamicPruner(ArrayDataset(x, y), model=model, epochs=6, ratio=0.5, method="dynamic",
                               cache_mb=cache_mb)
        dp.train(model, ArrayDataset(x, y), epochs=6, batch_size=16, lr=0.05, pruner=pruner)
        assert isinstance(pruner.records.a, np.memmap) == (cache_mb == 0.0)
        got.append((pruner.kept_counts, pruner.scores))
        pruner.close()
    assert got[0][0] == got[1][0] and np.array_equal(got[0][1], got[1][1])


def test_end_epoch_folds_the_last_epoch_of_a_users_loop_into_the_scores():
    x, y = _blobs()
    model = _mlp()
    pruner = DynamicPruner(ArrayDataset(x, y), model=model, epochs=3, ratio=0.5, method="dynamic", seed=2)
    seen = _loop(pruner, model, 3)
    before = pruner.scores.copy()
    loss_before = pruner.latest_loss.copy()
    pruner.end_epoch()
    after = pruner.scores.copy()
    last = np.unique(seen[-1])
    assert not np.array_equal(before, after)                      # the last epoch counted only now
    assert not np.array_equal(loss_before[last], pruner.latest_loss[last])
    pruner.end_epoch()                                            # twice: nothing more to fold in
    assert np.array_equal(after, pruner.scores)
    pruner.close()


@pytest.mark.parametrize("ratio", [0.3, 0.9])
def test_dynamic_keeps_class_quotas_at_the_recipes_step_size(ratio):
    """A long-tailed set (class sizes 160 / 60 / 20): each pruned epoch keeps every class's water-filled share
    (equal counts where sizes allow, the small classes whole) and skips within a class only among its
    lowest-scored; every kept sample weighs 1. (Weights of 1 / keep probability, 10 at ratio 0.9, made every
    step ten times larger and training diverged.)"""
    from dataprune.quotas import waterfill_quotas

    x, y = _blobs(n=480)
    keep_rows = np.concatenate([np.flatnonzero(y == 0)[:160], np.flatnonzero(y == 1)[:60], np.flatnonzero(y == 2)[:20]])
    x, y = x[keep_rows], y[keep_rows]
    n = len(y)
    model = _mlp()
    epochs = 10
    pruner = DynamicPruner(ArrayDataset(x, y), model=model, epochs=epochs, ratio=ratio, method="dynamic", seed=1)
    pruned = []

    def check(epoch):
        kept = pruner.order
        assert np.all(pruner._weights[kept] == 1.0)
        assert np.all(pruner._weights[np.setdiff1d(np.arange(n), kept)] == 0)
        trusted = np.flatnonzero(~pruner.suspect)
        if len(kept) < len(trusted):                                      # a pruned epoch
            pruned.append(epoch)
            sizes = {c: int((y[trusted] == c).sum()) for c in range(3)}
            quota = waterfill_quotas(sizes, len(trusted) - int(round(ratio * len(trusted))), alpha=0.0)
            assert {c: int((y[kept] == c).sum()) for c in range(3)} == quota
            score = pruner._score
            for c in range(3):                                            # skipped only from the low end
                members = trusted[y[trusted] == c]
                skipped = np.setdiff1d(members, kept)
                if len(skipped):
                    rank = np.argsort(np.argsort(score[members], kind="stable"), kind="stable")
                    assert rank[np.isin(members, skipped)].max() < 2 * len(skipped)

    _loop(pruner, model, epochs, lr=0.5, on_epoch=check)            # every step's loss finite
    pruner.end_epoch()
    assert len(pruned) >= 5
    with torch.no_grad():
        assert (model(x).argmax(1).numpy() == y).mean() > 0.9


def test_a_diverged_bench_cell_is_named_and_the_finished_cells_stay(tmp_path, monkeypatch, capsys):
    """A cell whose training diverges (InfoBatch's 1 / (1 - r) weights at r = 0.9 did on mnist5k-MLP): the error
    names the cell in one line (exit status 1), and the cells finished before it are in results.csv."""
    from dataprune import cli, evaluate
    from dataprune.results import read_results

    real = evaluate.retrain

    def retrain(*a, dynamic=None, **k):
        if dynamic is not None:
            raise FloatingPointError("training diverged at epoch 3 (loss nan); lower the learning rate (now 0.05)")
        return real(*a, dynamic=dynamic, **k)

    monkeypatch.setattr(evaluate, "retrain", retrain)
    out = tmp_path / "b"
    args = ["bench", "--dataset", "digits", "--train-limit", "200", "--model", "mlp", "--epochs", "4",
            "--methods", "infobatch", "--ratios", "0.9", "--seeds", "1", "--jobs", "1", "--out", str(out), "--quiet"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert re.search(r"^dataprune bench: error: infobatch r=0.9, seed 0: training diverged.*InfoBatch's weights", err)
    assert err.count("\n") == 1 and "Traceback" not in err
    monkeypatch.setenv("DATAPRUNE_DEBUG", "1")           # the traceback, for whoever asks for it
    with pytest.raises(FloatingPointError, match=r"infobatch r=0.9, seed 0: training diverged"):
        cli.main(args)
    assert [r["method"] for r in read_results(str(out / "results.csv"))] == ["full"]


def test_head_records_written_in_bulk_equal_records_written_every_step(monkeypatch):
    """update() defers the host copies to the epoch's end (HeadRecords flushes every FLUSH_MB): flushing after
    every step instead gives the same scores, evidence and kept sets, bit for bit."""
    from dataprune.methods import fused

    x, y = _blobs()
    runs = []
    for flush_mb in (fused.FLUSH_MB, 1e-9):
        monkeypatch.setattr(fused, "FLUSH_MB", flush_mb)
        model = _mlp()
        pruner = DynamicPruner(ArrayDataset(x, y), model=model, epochs=8, ratio=0.5, method="dynamic", seed=1)
        seen = _loop(pruner, model, 8)
        pruner.end_epoch()
        runs.append((seen, pruner.scores, pruner.evidence["probs"], pruner.latest_loss))
    (seen_a, scores_a, probs_a, loss_a), (seen_b, scores_b, probs_b, loss_b) = runs
    assert seen_a == seen_b
    assert np.array_equal(scores_a, scores_b) and np.array_equal(probs_a, probs_b)
    assert np.array_equal(loss_a, loss_b, equal_nan=True)
    assert np.isfinite(scores_a).sum() > 0 and len(set(seen_a[-1])) < 240      # it scored and pruned


def test_a_run_still_learning_in_its_window_keeps_labels_it_flags_but_not_wrong_ones():
    """Between the window's last two epochs a run still learning comes to predict as labelled the samples it
    flagged as fast as the ones it was unsure of: its flags were not learnt yet, and nothing is set aside. Wrong
    labels it flagged stay flagged while it learns the rest: they are set aside."""
    rng = np.random.default_rng(4)
    n, c = 400, 10
    y = np.arange(n) % c
    kind = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])         # 0 right, 1 predicted as another class, 2 unsure
    other = (y + 1) % c

    def probs_of(target, top):
        p = np.full((n, c), (1 - top[:, None]) / (c - 1))
        p[np.arange(n), target] = top
        return p

    resolves = rng.random(n) < 0.7                           # learnt by the last epoch of the window

    def judged(labels, before, after):
        pruner = DynamicPruner(ArrayDataset(torch.zeros(n, 2), labels), model=_mlp(d=2, classes=c), epochs=10,
                               ratio=0.3, method="dynamic")
        seen = np.ones(n, bool)
        pruner._before = pruner._mistakes(before, seen)
        pruner._probs_sum = before + after
        pruner._probs_count[:] = 2
        pruner._judge_labels(after, seen)
        pruner.close()
        return pruner

    # Clean labels, the run still learning: what it got wrong (confidently or not) it learns at the same rate.
    before = probs_of(np.where(kind == 0, y, other), np.where(kind == 2, 0.3, 0.8))
    after = probs_of(np.where((kind == 0) | resolves, y, other), np.where(kind == 2, 0.3, 0.8))
    learning = judged(y, before, after)
    d = learning.evidence_decision
    m = d["window_moved"]
    assert m["flagged"] >= 20 and m["flags_resolved"] >= 0.8 * m["unsure_resolved"]
    assert m["accuracy_after"] - m["accuracy_before"] >= 0.1
    assert d["flagged_share"] > 0.05 and d["confidence"] >= 0.36       # credible on the other tests ...
    assert not d["credible"] and not learning.suspect.any() and "still learning" in d["why"]   # ... not this one
    # The same flags as wrong labels (the run predicts the true class all along): they stay flagged, set aside.
    noisy = np.where(kind == 1, other, y)
    before = probs_of(np.where(kind == 2, other, y), np.where(kind == 2, 0.3, 0.8))
    after = probs_of(np.where((kind == 2) & ~resolves, other, y), np.where(kind == 2, 0.3, 0.8))
    noise = judged(noisy, before, after)
    d = noise.evidence_decision
    assert d["window_moved"]["flags_resolved"] == 0.0 and d["credible"] and "why" not in d
    assert (noise.suspect == (kind == 1)).all()


def _stretched_loop(pruner, model, opt, sched, loader, epochs, lrs, orders):
    for epoch in epochs:
        pruner.set_epoch(epoch)
        orders.append(pruner.order.copy())
        for idx, x, y in loader:
            _step(pruner, model, opt, idx, x, y)
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])


def test_a_per_step_scheduler_stretched_over_pruned_epochs_ends_where_the_full_run_ends():
    """OneCycleLR built for the full data's steps: stepped plainly, a pruned run stops part way through it; through
    pruner.stretch every epoch covers its own part of the schedule and the run ends at its last step."""
    x, y = _blobs(n=200)
    epochs = 6
    lrs = {}
    for stretched in (False, True):
        model = _mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        pruner = DynamicPruner(ArrayDataset(x, y), model=model, epochs=epochs, ratio=0.5, method="random_dynamic",
                               delta=1.0, optimizer=opt)
        loader = DataLoader(pruner.dataset, batch_sampler=pruner.batch_sampler(16))
        total = epochs * 13                                       # 13 batches of 16 in the full data
        inner = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total)
        sched = pruner.stretch(inner, loader, total) if stretched else inner
        lrs[stretched] = []
        _stretched_loop(pruner, model, opt, sched, loader, range(epochs), lrs[stretched], [])
    ref_opt = torch.optim.SGD(_mlp().parameters(), lr=0.1)
    ref_sched = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.1, total_steps=total)
    ref = [ref_opt.param_groups[0]["lr"]]
    for _ in range(total):
        ref_opt.step()
        ref_sched.step()
        ref.append(ref_opt.param_groups[0]["lr"])
    assert len(lrs[True]) == len(lrs[False]) == 6 * 7                           # 100 of 200 samples an epoch
    assert lrs[False][-1] == pytest.approx(ref[42]) and lrs[False][-1] > 0.05   # plainly: stopped near the peak
    assert inner.last_epoch == total and lrs[True][-1] == pytest.approx(ref[-1]) and ref[-1] < 1e-4
    # after the j-th of an epoch's n batches the schedule stands where the full run's would: step 13 (e + j / n)
    step = 0
    for e, n in enumerate([7] * 6):
        for j in range(1, n + 1):
            assert lrs[True][step] == pytest.approx(ref[round(total * (e + j / n) / epochs)])
            step += 1


def test_a_stretched_scheduler_refuses_more_steps_than_the_epoch_has_batches():
    x, y = _blobs(n=64)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = DynamicPruner(ArrayDataset(x, y), model=model, epochs=2, ratio=0.5, method="random_dynamic")
    loader = DataLoader(pruner.dataset, batch_sampler=pruner.batch_sampler(16))
    sched = pruner.stretch(torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=8), loader, 8)
    for _ in range(2):                                            # 32 of 64 samples: 2 batches
        opt.step()
        sched.step()
    with pytest.raises(ValueError, match="stepped 3 times in epoch 0, which has 2 batches"):
        sched.step()
    with pytest.raises(ValueError, match="total_steps must be"):
        pruner.stretch(torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=8), loader, 0)


def test_a_run_resumed_from_state_dict_draws_and_scores_as_the_uninterrupted_run():
    """Saved mid-way through dynamic's evidence window (epochs 1-2 of 10) with torch.save and read back with
    weights_only=True: the same kept set every epoch, scores, set-aside labels, decision and learning rates."""
    import io

    x, y = _blobs(n=300, classes=3)
    noisy = y.copy()
    noisy[::10] = (y[::10] + 1) % 3

    def make():
        model = _mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        pruner = DynamicPruner(ArrayDataset(x, noisy), model=model, epochs=10, ratio=0.3, method="dynamic", seed=4,
                               optimizer=opt)
        loader = DataLoader(pruner.dataset, batch_sampler=pruner.batch_sampler(16))
        total = 10 * len(loader)
        sched = pruner.stretch(torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=total), loader, total)
        return model, opt, pruner, loader, sched

    model, opt, pruner, loader, sched = make()
    lrs, orders = [], []
    torch.manual_seed(1)
    _stretched_loop(pruner, model, opt, sched, loader, range(10), lrs, orders)
    pruner.end_epoch()
    assert pruner.evidence_decision["credible"] and pruner.suspect.sum() >= 15

    model, opt, first, loader, sched = make()
    lrs2, orders2 = [], []
    torch.manual_seed(1)
    _stretched_loop(first, model, opt, sched, loader, range(2), lrs2, orders2)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                "pruner": first.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    model, opt, resumed, loader, sched = make()
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    resumed.load_state_dict(saved["pruner"])
    _stretched_loop(resumed, model, opt, sched, loader, range(2, 10), lrs2, orders2)
    resumed.end_epoch()
    assert all(np.array_equal(a, b) for a, b in zip(orders, orders2, strict=True))
    assert np.allclose(lrs, lrs2)
    assert np.allclose(pruner.scores, resumed.scores) and np.array_equal(pruner.suspect, resumed.suspect)
    assert pruner.evidence_decision == resumed.evidence_decision
    assert pruner.saved_fraction == resumed.saved_fraction
    other = DynamicPruner(ArrayDataset(x, noisy), model=_mlp(), epochs=10, ratio=0.5, method="dynamic", seed=4)
    with pytest.raises(ValueError, match="ratio 0.3 saved, 0.5 here"):
        other.load_state_dict(saved["pruner"])


def _mixup_loop(pruner, model, epochs, targets_of, mix=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    pruner.optimizer = opt
    loader = DataLoader(pruner.dataset, batch_sampler=pruner.batch_sampler(16))
    for epoch in range(epochs):
        pruner.set_epoch(epoch)
        for idx, x, y in loader:
            t = targets_of(y)
            if mix:                                           # mixup with a partner from the same batch
                lam = float(torch.distributions.Beta(0.4, 0.4).sample())
                perm = torch.randperm(len(x), generator=g)
                x, t = lam * x + (1 - lam) * x[perm], lam * t + (1 - lam) * t[perm]
            _step(pruner, model, opt, idx, x, t)
    pruner.end_epoch()


def test_target_distributions_score_as_class_indices_and_mixup_sets_no_label_aside():
    """(B, C) targets (mixup / cutmix) are the gradient's softmax - t: one-hot distributions give the class
    indices' scores exactly; mixed inputs are no evidence about one label, so nothing is set aside, while the
    same run on smoothed (unmixed) distributions sets aside the 10% wrong labels."""
    x, y = _blobs(n=300, classes=3)
    runs = {}
    for kind in ("indices", "onehot"):
        model = _mlp()
        pruner = DynamicPruner(ArrayDataset(x, y), model=model, epochs=6, ratio=0.5, method="dynamic", seed=2)
        _mixup_loop(pruner, model, 6, (lambda t: t) if kind == "indices" else (lambda t: F.one_hot(t, 3).float()))
        runs[kind] = pruner
    assert runs["indices"].suspect.sum() == 0 and runs["indices"].evidence_decision["credible"]
    assert np.allclose(runs["indices"].scores, runs["onehot"].scores, rtol=1e-5, atol=1e-8)
    assert runs["indices"].kept_counts == runs["onehot"].kept_counts
    noisy = y.copy()
    noisy[::10] = (y[::10] + 1) % 3
    for mix in (False, True):
        torch.manual_seed(0)
        model = _mlp()
        torch.manual_seed(1)
        pruner = DynamicPruner(ArrayDataset(x, noisy), model=model, epochs=10, ratio=0.3, method="dynamic")
        _mixup_loop(pruner, model, 10, lambda t: F.one_hot(t, 3).float() * 0.9 + 0.1 / 3, mix=mix)
        d = pruner.evidence_decision
        if mix:
            assert pruner.suspect.sum() == 0 and not d["credible"] and "target distributions" in d["why"]
            assert np.isfinite(pruner.scores).all()
        else:                                                 # smoothed labels: read as the labels
            assert d["credible"] and pruner.suspect[::10].sum() >= 15
            assert pruner.suspect[np.arange(300) % 10 > 0].sum() <= 3


def test_targets_neither_class_indices_nor_distributions_are_refused_at_the_step():
    x, y = _blobs(n=64)
    model = _mlp()
    pruner = DynamicPruner(ArrayDataset(x, y), model=model, epochs=2, ratio=0.5, method="dynamic")
    logits = model(x[:8])
    losses = F.cross_entropy(logits, torch.as_tensor(y[:8]), reduction="none")
    with pytest.raises(ValueError, match=r"targets of shape \(8,\) \(torch.float32\) for a batch of 8: expected"):
        pruner.update(torch.arange(8), losses, logits=logits, targets=torch.as_tensor(y[:8]).float())
    model(x[:8])
    with pytest.raises(ValueError, match=r"targets of shape \(8, 2\)"):
        pruner.update(torch.arange(8), losses, logits=logits, targets=torch.zeros(8, 2))


def test_cli_train_with_dynamic_pruning_killed_part_way_resumes_to_the_same_checkpoints_and_scores(tmp_path,
                                                                                                  monkeypatch, capsys):
    """`dataprune train --dynamic` keeps OUT.progress (here after every epoch); interrupted in epoch 4 of 6 it says
    the same command resumes, and that command trains epochs 4-6 to the uninterrupted run's checkpoints and
    scores (the pruner's state included), then removes the progress file."""
    import sys

    from dataprune import cli, load_checkpoints

    monkeypatch.setattr(sys.modules["dataprune.train"], "RESUME_EVERY_S", 0.0)
    args = ["train", "--dataset", "digits", "--train-limit", "300", "--label-noise", "0.2", "--epochs", "6",
            "--checkpoints", "2,4,6", "--dynamic", "dynamic", "--ratio", "0.5", "--quiet"]
    assert cli.main([*args, "--out", str(tmp_path / "whole.pt")]) == 0
    draw = DynamicPruner._draw
    drawn = []

    def interrupted(self, rng):
        drawn.append(self.epoch)
        if self.epoch == 3 and kill["on"]:
            raise KeyboardInterrupt
        return draw(self, rng)

    kill = {"on": True}
    monkeypatch.setattr(DynamicPruner, "_draw", interrupted)
    out = tmp_path / "run.pt"
    assert cli.main([*args, "--out", str(out)]) == 130
    assert "the same command resumes from it" in capsys.readouterr().err
    assert (tmp_path / "run.pt.progress").exists() and not out.exists()
    kill["on"], drawn[:] = False, []
    assert cli.main([*args, "--out", str(out)]) == 0
    assert drawn == [0, 3, 4, 5]                       # the pruner built (epoch 0), then epochs 4-6 (0-based 3-5)
    assert not (tmp_path / "run.pt.progress").exists()
    a, b = load_checkpoints(tmp_path / "whole.pt")[0], load_checkpoints(out)[0]
    assert [c.epoch for c in a] == [c.epoch for c in b] == [2, 4, 6]
    assert all(torch.equal(x.state[k], y.state[k]) for x, y in zip(a, b, strict=True) for k in x.state)
    assert np.array_equal(np.load(tmp_path / "whole.pt.scores.npy"), np.load(tmp_path / "run.pt.scores.npy"))


def test_a_loop_that_never_calls_set_epoch_is_told_instead_of_training_unpruned():
    """Without set_epoch the sampler would give epoch 0's set (all of the data for `dynamic`) every epoch and
    nothing would be pruned, silently; update() stops the second pass with what to call."""
    x, y = _blobs(n=64)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = DynamicPruner(ArrayDataset(x, y), model=model, epochs=3, ratio=0.5, method="dynamic", optimizer=opt)
    loader = DataLoader(pruner.dataset, batch_sampler=pruner.batch_sampler(16))
    for idx, xb, yb in loader:                                  # epoch 0, as drawn when the pruner was built
        _step(pruner, model, opt, idx, xb, yb)
    with pytest.raises(RuntimeError, match=r"update\(\) got 80 samples in epoch 0, which keeps 64: call "
                                           r"pruner.set_epoch\(epoch\) at the start of every epoch"):
        for idx, xb, yb in loader:                              # the next epoch, set_epoch forgotten
            _step(pruner, model, opt, idx, xb, yb)
