"""The path a user walks: their dataset shapes, transforms, models and recipes, through dp.prune."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

import dataprune as dp
from dataprune.data import ArrayDataset
from dataprune.data.views import PairView, SeededView, as_pairs, deterministic_view, is_random
from dataprune.select import num_kept


def _blobs(n=240, d=8, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, d, generator=g) + 3 * nn.functional.one_hot(y, d).float()
    return x, y.numpy()


def _mlp(d=8, classes=3, bias=True):
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, classes, bias=bias))


class RandomNoiseSet(Dataset):
    """A user's dataset with a random transform in __getitem__ (Gaussian jitter from the global RNG)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i] + 0.1 * torch.randn_like(self.x[i]), int(self.y[i])


class DictSet(Dataset):
    def __init__(self, x, y, keys=("image", "label")):
        self.x, self.y, self.keys = x, y, keys

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {self.keys[0]: self.x[i], self.keys[1]: int(self.y[i]), "id": i}


def test_ratio_is_keyword_only():
    x, y = _blobs()
    with pytest.raises(TypeError):
        dp.prune(_mlp, ArrayDataset(x, y), 0.5)


def test_a_random_transform_dataset_is_scored_on_a_fixed_draw_and_fingerprints_are_stable():
    """Scoring a dataset with a random transform once crashed (two passes saw different inputs) and its
    fingerprint changed on every call."""
    x, y = _blobs()
    ds = RandomNoiseSet(x, y)
    assert is_random(ds)
    view, how = deterministic_view(ds)
    assert how == "seeded" and isinstance(view, SeededView)
    a, b = view[5][0], view[5][0]
    assert torch.equal(a, b) and not torch.equal(ds[5][0], ds[5][0])
    state = torch.random.get_rng_state()
    view[3]
    assert torch.equal(state, torch.random.get_rng_state())          # the caller's generator is untouched
    assert dp.io.dataset_fingerprint(ds) == dp.io.dataset_fingerprint(ds)
    res = dp.prune(_mlp, ds, ratio=0.5, method="moso", epochs=3, batch_size=32)
    assert res.decisions["view"] == "seeded" and res.n_kept == num_kept(len(ds), 0.5)
    assert "fixed draw" in res.summary()


def test_dict_items_and_hugging_face_datasets():
    datasets = pytest.importorskip("datasets")
    x, y = _blobs(n=150)
    hf = datasets.Dataset.from_dict({"pixel_values": x.numpy().tolist(), "label": y.tolist()})
    hf.set_format("torch")
    view = as_pairs(hf)
    assert isinstance(view, PairView) and view.input_key == "pixel_values" and view.label_key == "label"
    assert np.array_equal(view.targets, y)
    items = view.__getitems__([3, 4])
    assert torch.allclose(items[1][0], x[4]) and items[1][1] == y[4]
    res = dp.prune(_mlp, hf, ratio=0.6, method="moso_class", epochs=2, batch_size=32)
    ref = dp.prune(_mlp, ArrayDataset(x, y), ratio=0.6, method="moso_class", epochs=2, batch_size=32)
    # The same samples as tensors or as a Hugging Face dataset: the same scores and kept set.
    np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-4, atol=1e-9)
    assert np.array_equal(res.keep, ref.keep)
    assert res.class_names is None                      # plain integer labels: the summary prints indices
    # A ClassLabel column names the classes in the summary (and the saved result, the report)
    names = [f"kind-{c}" for c in range(int(y.max()) + 1)]
    features = datasets.Features({"pixel_values": datasets.Sequence(datasets.Value("float32")),
                                  "label": datasets.ClassLabel(names=names)})
    named = datasets.Dataset.from_dict({"pixel_values": x.numpy().tolist(), "label": y.tolist()}, features=features)
    named.set_format("torch")
    res = dp.prune(_mlp, named, ratio=0.6, method="moso_class", epochs=2, batch_size=32)
    assert res.class_names == names and res.class_name(1) == "kind-1" and np.array_equal(res.keep, ref.keep)
    renamed = named.rename_column("label", "cls")
    assert dp.prune(_mlp, renamed, ratio=0.6, method="moso_class", epochs=2, batch_size=32,
                    label_key="cls").class_names == names

    class Wrap(torch.utils.data.Dataset):                # a user's wrapper that keeps its dataset as .base
        def __init__(self, base):
            self.base = base

        def __len__(self):
            return len(self.base)

        def __getitem__(self, i):
            return self.base[i]

    assert dp.prune(_mlp, Wrap(named), ratio=0.6, method="moso_class", epochs=2, batch_size=32).class_names == names
    # Keys that cannot be detected are named in the error, with what to pass.
    odd = DictSet(x, y, keys=("pixels", "cls"))
    with pytest.raises(KeyError, match=r"fields are \['pixels', 'cls', 'id'\]; pass input_key=\.\.\. and label_key"):
        as_pairs(odd)
    res = dp.prune(_mlp, odd, ratio=0.5, method="moso_class", epochs=2, batch_size=32, input_key="pixels",
                   label_key="cls")
    assert res.n_kept == num_kept(len(odd), 0.5)
    with pytest.raises(KeyError, match="input_key='nope' is not a field"):
        as_pairs(odd, input_key="nope", label_key="cls")
    # dp.train / dp.accuracy read dict items as dp.prune does: fields detected (or given), the same run as on
    # the wrapped dataset (and the wrap's name imports from dataprune.data)
    from dataprune.data import as_pairs as public
    torch.manual_seed(0)
    direct = dp.train(_mlp(), hf, epochs=2, batch_size=32, seed=3).model
    torch.manual_seed(0)
    wrapped = dp.train(_mlp(), public(hf), epochs=2, batch_size=32, seed=3).model
    for a, b in zip(direct.parameters(), wrapped.parameters(), strict=True):
        assert torch.equal(a, b)
    assert dp.accuracy(direct, hf) == dp.accuracy(wrapped, ArrayDataset(x, y))
    assert dp.train(_mlp(), odd, epochs=1, batch_size=32, input_key="pixels", label_key="cls").steps > 0
    with pytest.raises(KeyError, match=r"pass input_key=\.\.\. and label_key"):
        dp.train(_mlp(), odd, epochs=1, batch_size=32)


def test_a_model_with_parameters_no_reset_reaches_is_refused():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _mlp()
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return self.body(x) * self.scale

    x, y = _blobs()
    with pytest.raises(ValueError, match=r"parameters \['scale'\] belong to modules without reset_parameters"):
        dp.prune(Scaled(), ArrayDataset(x, y), ratio=0.5, epochs=2)
    # A constructor is always fresh
    res = dp.prune(Scaled, ArrayDataset(x, y), ratio=0.5, method="moso_class", epochs=2, batch_size=32)
    assert res.n_kept == num_kept(len(y), 0.5)


def test_long_recipes_place_checkpoints_on_the_schedule_and_stop_after_the_last():
    x, y = _blobs(n=120)
    res = dp.prune(_mlp, ArrayDataset(x, y), ratio=0.5, method="moso_class", epochs=40, batch_size=60)
    assert [c["epoch"] for c in res.provenance["checkpoints"]] == [4, 12, 20, 28, 36]
    # 36 of 40 epochs trained (2 steps each), not 40; the cost is a share of one 40-epoch run.
    from dataprune.trajectory import default_checkpoint_epochs

    assert default_checkpoint_epochs(10) == [1, 3, 5, 7, 9] and default_checkpoint_epochs(3) == [1, 2, 3]
    assert default_checkpoint_epochs(200) == [20, 60, 100, 140, 180]
    run = dp.pipeline.surrogate_scores(["moso_class"], ArrayDataset(x, y), _mlp, config=dp.TrainConfig(epochs=40,
                                       batch_size=60), checkpoint_epochs=[4, 12, 20, 28, 36])
    assert len(run.surrogates[0].history) == 36


def test_a_loaded_result_keeps_its_environment_and_checks_the_dataset(tmp_path):
    x, y = _blobs()
    ds = ArrayDataset(x, y)
    res = dp.prune(_mlp, ds, ratio=0.5, method="moso_class", epochs=2, batch_size=32)
    res.save(str(tmp_path / "r"))
    assert sorted(p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".")) == []   # no temp left
    back = dp.PruneResult.load(str(tmp_path / "r"))
    assert back.provenance["environment"]["torch"] == torch.__version__
    assert np.array_equal(back.subset(ds).indices, res.keep)
    other = ArrayDataset(x.flip(0), y)            # same size and labels, other inputs
    with pytest.raises(ValueError, match="different dataset: the inputs differ"):
        back.subset(other)


def test_plans_that_cannot_hold_are_refused_before_training():
    from dataprune.pipeline import Plan, resolve_plan, surrogate_scores

    with pytest.raises(ValueError, match="trains its own surrogate"):
        resolve_plan("dual", budget=0.3, recipe_epochs=10)
    with pytest.raises(ValueError, match="would cost several times the budget"):
        resolve_plan("moso_class", budget=0.25, recipe_epochs=10, checkpoint_epochs=[1, 3, 5, 7, 9],
                     options={"params": "all"})
    # Method options rule out the fused plan (it would ignore them).
    plan, evidence = resolve_plan("moso_class", budget=0.25, recipe_epochs=10, checkpoint_epochs=[1, 3, 5, 7, 9],
                                  policy="class_balanced")
    assert plan.fused and not evidence
    with_opts, _ = resolve_plan("moso_class", budget=0.25, recipe_epochs=10, checkpoint_epochs=[1, 3, 5, 7, 9],
                                policy="class_balanced", options={"backend": "functorch"})
    assert not with_opts.fused and with_opts.expected_cost(10, [1, 3, 5, 7, 9]) <= 0.25
    x, y = _blobs()
    with pytest.raises(ValueError, match="other samples would get no score"):
        surrogate_scores(["moso_class"], ArrayDataset(x, y), _mlp, config=dp.TrainConfig(epochs=2),
                         checkpoint_epochs=[1], plan=Plan("x", fused=True, data_fraction=0.5))
    # The expected cost counts the evidence passes.
    full = dp.pipeline.FULL
    assert full.expected_cost(10, [1, 3, 5, 7, 9], evidence=True) > full.expected_cost(10, [1, 3, 5, 7, 9])
    cheap, evidence = resolve_plan("recommended", budget=0.25, recipe_epochs=10, checkpoint_epochs=[1, 3, 5, 7, 9])
    assert evidence and cheap.expected_cost(10, [1, 3, 5, 7, 9], evidence=True, records_evidence=True) <= 0.25


def test_training_reads_with_one_persistent_worker_pool(monkeypatch):
    """A DataLoader (and its workers) was once built for every step; now one per training run, for
    datasets with get_batch too, with the same batches as without workers."""
    import dataprune.data.core as core

    made = []
    real = core.DataLoader

    class Counting(real):
        def __init__(self, *a, **k):
            made.append(k.get("num_workers"))
            super().__init__(*a, **k)

    monkeypatch.setattr(core, "DataLoader", Counting)
    x, y = _blobs(n=96)
    for ds in (ArrayDataset(x, y), DictSet(x, y)):
        ds = as_pairs(ds)
        runs = []
        for workers in (0, 2):
            torch.manual_seed(0)
            runs.append(dp.train(_mlp(), ds, epochs=3, batch_size=16, num_workers=workers, seed=1))
        assert [h["loss"] for h in runs[0].history] == pytest.approx([h["loss"] for h in runs[1].history], rel=1e-6)
    assert made == [2, 2]            # one pool per 3-epoch run (18 steps), none without workers


def test_own_loss_is_used_by_training_and_scoring_and_refused_by_closed_forms():
    import torch.nn.functional as F

    x, y = _blobs()
    ds = ArrayDataset(x, y)
    smooth = lambda z, t: F.cross_entropy(z, t, reduction="none", label_smoothing=0.2)  # noqa: E731
    res = dp.prune(_mlp, ds, ratio=0.5, method="moso_class", epochs=3, batch_size=32, loss_fn=smooth, holdout=0)
    plain = dp.prune(_mlp, ds, ratio=0.5, method="moso_class", epochs=3, batch_size=32, holdout=0)
    assert not np.allclose(res.scores, plain.scores)
    # The same scores step by step: train with the loss, score the checkpoints with it.
    torch.manual_seed(0)
    from dataprune.utils import seed_everything

    seed_everything(0)
    model = _mlp()
    run = dp.train(model, ds, epochs=3, batch_size=32, checkpoint_epochs=[1, 2, 3], loss_fn=smooth, seed=0)
    again = dp.score(_mlp(), run.checkpoints, ds, method="moso_class", loss_fn=smooth)
    np.testing.assert_allclose(again, res.scores, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="cannot use loss_fn"):
        dp.prune(_mlp, ds, ratio=0.5, method="el2n", epochs=2, loss_fn=smooth)
    with pytest.raises(ValueError, match="one loss per sample"):
        dp.train(_mlp(), ds, epochs=1, loss_fn=lambda z, t: F.cross_entropy(z, t))


def test_bf16_autocast_and_bf16_models():
    x, y = _blobs()
    ds = ArrayDataset(x, y)
    res = dp.prune(_mlp, ds, ratio=0.5, method="moso_class", epochs=2, batch_size=32, precision="bf16")
    assert res.n_kept == num_kept(len(y), 0.5) and np.isfinite(res.scores).all()
    # A bfloat16 model: trained on inputs cast to its dtype, scored in float32.
    res = dp.prune(lambda: _mlp().to(torch.bfloat16), ds, ratio=0.5, method="moso", epochs=2, batch_size=32)
    assert np.isfinite(res.scores).all()
    with pytest.raises(ValueError, match="fp16' needs a CUDA device"):
        dp.train(_mlp(), ds, epochs=1, precision="fp16")


def test_json_files_are_strict(tmp_path):
    """Sidecars once held bare NaN (cost_fraction of given checkpoints), which strict parsers reject."""
    import json

    x, y = _blobs(n=120)
    ds = ArrayDataset(x, y)
    run = dp.train(_mlp(), ds, epochs=2, batch_size=32, checkpoint_epochs=[1, 2])
    res = dp.prune(_mlp(), ds, ratio=0.5, method="moso_class", checkpoints=run.checkpoints)
    assert res.cost["cost_fraction"] is None and "no training run was timed" in res.cost["cost_unknown"]
    res.save(str(tmp_path / "r"))
    for name in ("result.json", "keep.npy.json", "scores.npy.json"):
        text = open(tmp_path / "r" / name).read()
        json.loads(text, parse_constant=lambda c, name=name: pytest.fail(f"{name} holds {c}"))
    dp.io.write_json(str(tmp_path / "x.json"), {"a": float("nan"), "b": [np.float32("inf"), 1.5]})
    assert json.load(open(tmp_path / "x.json")) == {"a": None, "b": [None, 1.5]}


@pytest.mark.parametrize("bad, match", [
    (dict(ratio=70), "ratio is the fraction of samples removed"),
    (dict(ratio=0.5, policy="nope"), "unknown policy"),
    (dict(ratio=0.5, policy_options={"alpha": 2}), "policy 'auto' has no option"),
    (dict(ratio=0.5, options={"nope": 1}), "has no option"),
    (dict(ratio=0.5, holdout=-0.1), "holdout must be"),
    (dict(ratio=0.5, method="el2n", loss_fn=lambda z, y: z.sum(1)), "cannot use loss_fn"),
    (dict(ratio=0.5, method="dual", budget=0.3), "trains its own surrogate"),
    (dict(ratio=0.5, budget=0.001), "no plan fits a budget"),
    (dict(ratio=0.5, epochs=0), "epochs must be >= 1"),
    (dict(ratio=0.5, precision="fp8"), "precision must be one of"),
])
def test_bad_arguments_are_refused_before_anything_trains(monkeypatch, bad, match):
    """dp.prune(ratio=70) once trained and scored for a minute before saying the ratio was wrong."""
    import dataprune.pipeline as pipeline

    def no_training(*a, **k):
        raise AssertionError("trained before checking its arguments")

    monkeypatch.setattr(pipeline, "train", no_training)
    x, y = _blobs(n=60)
    with pytest.raises((ValueError, TypeError), match=match):
        dp.prune(_mlp, ArrayDataset(x, y), **bad)


@pytest.mark.parametrize("bad, match", [
    (dict(epochs="3"), "epochs must be an integer"),
    (dict(epochs=2, momentum=2), r"momentum must be in \[0, 1\)"),
    (dict(epochs=2, weight_decay=-1), "weight_decay must be >= 0"),
    (dict(epochs=2, min_lr=1.0), "min_lr must be in"),
    (dict(epochs=2, loss_fn=3), "loss_fn must be a callable"),
    (dict(epochs=2, indices=[0, 500]), r"indices must be positions in \[0, 60\)"),
    (dict(epochs=2, checkpoint_epochs=[5]), "outside"),
])
def test_dp_train_checks_its_arguments_before_a_step(monkeypatch, bad, match):
    x, y = _blobs(n=60)
    model = _mlp()
    monkeypatch.setattr(model, "forward", lambda *a: pytest.fail("a training step ran before the checks"))
    with pytest.raises((ValueError, TypeError), match=match):
        dp.train(model, ArrayDataset(x, y), **bad)


@pytest.mark.parametrize("bad, match", [
    (dict(params="zz"), "params must be 'all', 'last_layer'"),
    (dict(params=["nope.weight"]), "model has no parameter 'nope.weight'"),
    (dict(num_workers=-1), "num_workers must be an integer >= 0"),
    (dict(loss_fn=3), "loss_fn must be a callable"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
])
def test_dp_score_checks_its_options_before_a_pass_over_the_data(monkeypatch, bad, match):
    import dataprune.methods.moso as mm

    monkeypatch.setattr(mm, "checkpoint_terms", lambda *a, **k: pytest.fail("scored before the checks"))
    x, y = _blobs(n=60)
    model = _mlp()
    with pytest.raises((ValueError, TypeError), match=match):
        dp.score(model, [(model.state_dict(), 0.1)], ArrayDataset(x, y), method="moso", **bad)


@pytest.mark.parametrize("bad, match", [
    (dict(ratios=[70]), r"ratios are fractions of samples removed, each in \[0, 1\)"),
    (dict(ratios=[]), "no pruning ratios"),
    (dict(seeds=[]), "no seeds"),
    (dict(seeds=[-1]), "seeds must be integers >= 0"),
    (dict(retrain=dict(epochs=2, lr=-1)), "the retrain recipe: lr must be > 0"),
    (dict(surrogate=dict(epochs=0)), "the surrogate recipe: epochs must be >= 1"),
    (dict(checkpoint_epochs=[50]), "checkpoint epochs must be within the surrogate's"),
    (dict(options={"el2n": {"zz": 1}}), "has no option"),
])
def test_the_bench_checks_its_grid_before_any_unit_runs(monkeypatch, bad, match):
    import dataprune.bench as bench
    from dataprune.data import DataSplit
    from dataprune.models import ModelFactory

    for unit in ("_score_unit", "_retrain_unit"):
        monkeypatch.setattr(bench, unit, lambda *a, **k: pytest.fail("a unit ran before the checks"))
    x, y = _blobs(n=60)
    split = DataSplit("blobs", ArrayDataset(x, y), ArrayDataset(x, y), 3, (8,))
    spec = dict(methods=["random", "el2n"], ratios=[0.5], seeds=[0], dataset="blobs", model="mlp",
                surrogate=dict(epochs=2), retrain=dict(epochs=2), checkpoint_epochs=[1, 2])
    with pytest.raises((ValueError, TypeError), match=match):
        bench.run_grid(bench.GridSpec(**{**spec, **bad}), split, ModelFactory("mlp", 3, (8,)), None)


def test_token_ids_reach_an_embedding_model_as_integers():
    """Integer inputs (token ids) stay integers in ArrayDataset, as in a TensorDataset: an nn.Embedding model prunes
    the same from both (they were cast to float32, which an embedding refuses)."""
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)
    y = np.arange(240) % 3
    tok = torch.randint(0, 30, (240, 6), generator=g)
    tok[:, 0] = torch.as_tensor(y) * 10                 # one token that tells the class

    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.head = nn.Embedding(30, 8), nn.Linear(8, 3)

        def forward(self, t):
            return self.head(self.emb(t).mean(1))

    a = dp.prune(Bag, ArrayDataset(tok, y), ratio=0.5, epochs=2, batch_size=32)
    b = dp.prune(Bag, TensorDataset(tok, torch.as_tensor(y)), ratio=0.5, epochs=2, batch_size=32)
    np.testing.assert_array_equal(a.keep, b.keep)
    assert ArrayDataset(tok, y)[0][0].dtype == torch.int64
    assert ArrayDataset(tok.to(torch.uint8), y)[0][0].dtype == torch.float32      # uint8 is an image: scaled


def test_class_means_that_do_not_fit_in_memory_fall_back_to_the_head_plan_or_say_what_to_do(monkeypatch, tmp_path):
    """Class-wise MoSo over all parameters keeps one mean gradient per class (ImageNet-1k with a ResNet-50:
    ~300 GB). Where that exceeds the free memory, dp.prune and `dataprune score` score the classifier head (plan
    head: the same scores as asking for params='last_layer') and say why; a direct call says what to do."""
    import json

    import dataprune.grads.terms as terms
    from dataprune import cli
    from dataprune.methods.moso_variants import classwise_score
    from dataprune.pipeline import PlanMemoryWarning

    x, y = _blobs(n=120)
    ds = ArrayDataset(x, y)
    params = sum(p.numel() for p in _mlp().parameters())                        # 8*16+16 + 16*3+3 = 195
    assert terms.group_means_bytes(3, params) == 3 * 195 * 12
    ref = dp.prune(_mlp, ds, ratio=0.5, epochs=3, batch_size=32, options={"params": "last_layer"})
    full = dp.prune(_mlp, ds, ratio=0.5, epochs=3, batch_size=32)
    assert "plan_memory" not in full.decisions and full.provenance["plan"] == "full"
    monkeypatch.setattr(terms, "available_memory", lambda device: 3 * 195 * 12)     # 80% of it does not fit
    with pytest.warns(PlanMemoryWarning, match=r"3 classes x 195 parameters = 0.0 GiB, more than 80% of the"):
        res = dp.prune(_mlp, ds, ratio=0.5, epochs=3, batch_size=32)
    assert res.provenance["plan"] == "head" and "plan head scores the classifier head" in res.decisions["plan_memory"]
    assert np.array_equal(res.scores, ref.scores) and np.array_equal(res.keep, ref.keep)
    with pytest.raises(terms.ScoringMemoryError, match=r"one mean gradient per class: 3 classes x 195 parameters.*"
                                                       r"params='last_layer'"):
        classwise_score(_mlp(), [(_mlp().state_dict(), 0.1)], ds)
    monkeypatch.setattr(terms, "available_memory", lambda device: 10 ** 12)
    assert np.isfinite(classwise_score(_mlp(), [(_mlp().state_dict(), 0.1)], ds)).all()
    # the command line: the same switch, in the log and the scores' sidecar
    monkeypatch.setattr(terms, "available_memory", lambda device: 1000)
    out = str(tmp_path / "s.npy")
    assert cli.main(["score", "--dataset", "digits", "--train-limit", "200", "--model", "mlp", "--epochs", "2",
                     "--checkpoints", "1,2", "--out", out, "--quiet"]) == 0
    meta = json.load(open(out + ".json"))
    assert "plan head scores the classifier head" in meta["plan_memory"]
