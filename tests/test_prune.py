"""dp.prune, its result object, exports and the HTML report."""

import csv
import os
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
import torch.nn as nn

import dataprune as dp
from dataprune.data import ArrayDataset, SubsetView, load_dataset
from dataprune.models import build_model
from dataprune.pipeline import PLAN_NAMES
from dataprune.select import num_kept
from dataprune.trajectory import default_checkpoint_epochs


@pytest.fixture(scope="module")
def digits():
    split = load_dataset("digits", label_noise=0.2, train_limit=300)
    return split, split.train


@pytest.fixture(scope="module")
def result(digits):
    split, ds = digits
    return dp.prune(build_model("cnn", 10, split.input_shape), ds, ratio=0.7, epochs=8, batch_size=32, lr=0.05)


def test_prune_returns_everything_that_led_to_the_kept_indices(digits, result):
    split, ds = digits
    assert result.method == "recommended" and result.policy == "auto"
    assert result.keep.dtype == np.int64 and np.all(np.diff(result.keep) > 0)
    assert len(result.keep) == num_kept(len(ds), 0.7) == result.n_kept
    assert result.scores.shape == (len(ds),) and result.scores.dtype == np.float64
    assert result.evidence["probs"].shape == (len(ds), 10)
    d = result.decisions
    assert set(d["estimated_noise_per_class"]) == set(range(10)) and 0 < result.estimated_noise < 0.6
    assert sum(d["quotas"].values()) == result.n_kept
    assert result.cost["cost_fraction"] > 0 and result.cost["plan"] == "full"
    assert result.provenance["fingerprint"]["n"] == len(ds)
    # the same selection through the step-by-step API, with the evidence under the same names
    again = dp.select(result.scores, 0.7, labels=result.labels, policy=result.policy, **result.evidence)
    assert np.array_equal(again, result.keep)
    # the mislabelled samples the default keeps are far fewer than a random subset would keep
    assert split.flipped[result.keep].mean() < 0.5 * split.flipped.mean()
    assert "labels that look wrong" in result.summary() and "pruning cost" in result.summary()


def test_subset_feeds_a_plain_dataloader(digits, result):
    _, ds = digits
    sub = result.subset()
    assert isinstance(sub, torch.utils.data.Subset) and len(sub) == result.n_kept
    xs, ys = next(iter(torch.utils.data.DataLoader(sub, batch_size=16)))
    assert xs.shape == (16, 1, 8, 8) and torch.equal(ys, torch.as_tensor(result.labels[result.keep[:16]]))
    with pytest.raises(ValueError, match="the dataset has 5 samples"):
        result.subset(SubsetView(ds, np.arange(5)))


def test_save_load_and_csv(tmp_path, digits, result):
    split, ds = digits
    folder = tmp_path / "r"
    result.save(str(folder), positions=split.train_positions)
    with pytest.raises(FileExistsError):
        result.save(str(folder))
    loaded = dp.PruneResult.load(str(folder))
    assert np.array_equal(loaded.keep, result.keep) and np.array_equal(loaded.scores, result.scores)
    assert np.array_equal(loaded.labels, result.labels) and loaded.decisions["quotas"] == result.decisions["quotas"]
    assert np.array_equal(dp.select(loaded.scores, 0.7, labels=loaded.labels, policy=loaded.policy,
                                    **loaded.evidence), result.keep)
    with open(folder / "keep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == result.keep.tolist()
    assert [int(r["source_index"]) for r in rows] == split.train_positions[result.keep].tolist()
    assert np.array_equal(np.load(folder / "keep.npy"), result.keep)
    assert len(loaded.subset(ds)) == result.n_kept


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.ids, self.rows, self._id, self.shown = [], {}, [], None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        if "data-kind" in a:
            self.shown.append((a["data-kind"], [int(i) for i in a["data-indices"].split(",")], a.get("src")))
        if "id" in a:
            self._id = a["id"]
        if tag == "tr" and a.get("class") == "class-row":
            self.rows.append({k[5:]: int(v) for k, v in a.items() if k.startswith("data-")})

    def handle_data(self, data):
        if self._id and data.strip():
            self.ids[self._id] = data.strip()
            self._id = None


def _parse(path):
    page = _Page()
    with open(path) as f:
        page.feed(f.read())
    return page


def test_report_images_classes_and_numbers(tmp_path, result):
    path = result.report(str(tmp_path / "rep"))
    page = _parse(path)
    assert page.images and all(os.path.isfile(os.path.join(os.path.dirname(path), src)) for src in page.images)
    assert any("removed" in src for src in page.images) and any("-kept" in src for src in page.images)
    assert {r["class"] for r in page.rows} == set(range(10))
    expected = {r["class"]: (r["size"], r["kept"]) for r in result.per_class()}
    assert {r["class"]: (r["size"], r["kept"]) for r in page.rows} == expected
    assert int(page.ids["n-kept"]) == result.n_kept and int(page.ids["n-total"]) == len(result.scores)
    assert float(page.ids["ratio"]) == 0.7 and page.ids["policy"] == "auto"
    assert page.ids["estimated-noise"] == f"{100 * result.estimated_noise:.1f}%"
    assert int(page.ids["set-aside"]) == result.decisions["set_aside"]
    with pytest.raises(FileExistsError):
        result.report(str(tmp_path / "rep"))


def test_report_shows_kept_removed_and_set_aside_samples_apart_with_legible_captions(tmp_path, result):
    """Grids once mixed kept and set-aside samples under "highest scores" (a reader rarely saw a typical kept
    sample) with 6 px captions; now every grid holds one fate, and each tile is at least 100 px wide."""
    from PIL import Image

    from dataprune.select import confident_noise

    page = _parse(result.report(str(tmp_path / "rep")))
    kept = result.kept_mask()
    suspect = confident_noise(result.evidence["probs"], result.labels, result.decisions["noise_rule"])["suspect"]
    kinds = {kind for kind, _, _ in page.shown}
    assert kinds == {"kept", "removed", "aside"}
    for kind, idx, src in page.shown:
        assert len(set(result.labels[idx])) == 1                      # one class per grid
        if kind == "kept":
            assert kept[idx].all()
        elif kind == "removed":
            assert not kept[idx].any() and not suspect[idx].any()
        else:
            assert not kept[idx].any() and suspect[idx].all()
        width = Image.open(tmp_path / "rep" / src).size[0]
        assert width / len(idx) >= 100, (src, width, len(idx))
    text = open(tmp_path / "rep" / "report.html").read()
    assert "trusted class size" not in text and "<sup>" not in text


def test_report_of_non_image_data_uses_tables(tmp_path):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (90,), generator=g)
    x = torch.randn(90, 5, generator=g) + 3 * nn.functional.one_hot(y, 5).float()
    ds = ArrayDataset(x, y.numpy())
    make = lambda: nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))  # noqa: E731
    res = dp.prune(make, ds, ratio=0.5, epochs=3, batch_size=16)
    page = _parse(res.report(str(tmp_path / "t")))
    assert all("class" not in src for src in page.images)          # only the histograms are pictures
    text = open(tmp_path / "t" / "report.html").read()
    assert text.count("<th>index</th>") >= 3 and {r["class"] for r in page.rows} == {0, 1, 2}


def test_budget_and_given_checkpoints(digits):
    split, ds = digits
    make = lambda: build_model("cnn", 10, split.input_shape)  # noqa: E731
    cheap = dp.prune(make, ds, ratio=0.5, budget=0.25, epochs=10, batch_size=32)
    assert cheap.cost["expected_cost_fraction"] <= 0.25 and cheap.cost["budget"] == 0.25
    assert cheap.provenance["plan"] != "full" and max(c["epoch"] for c in cheap.provenance["checkpoints"]) <= 3
    # a budgeted head plan's features (the off-centre rule) come from its head-scoring pass: no pass of their
    # own, so the plan and its expected cost stay those without them
    assert cheap.provenance["plan"] == "early2-head" and cheap.evidence["features"].shape == (len(ds), 128)
    assert cheap.cost["expected_cost_fraction"] == PLAN_NAMES["early2-head"].expected_cost(
        10, default_checkpoint_epochs(10), evidence=True, records_evidence=True)
    # its label evidence reads the neighbours' labels too (a plan that stops early), where label noise is evident
    # (20% of these labels are wrong)
    assert cheap.decisions["evidence"]["neighbours"] == PLAN_NAMES["early2-head"].neighbours > 0
    assert cheap.decisions["noise_evident"] and cheap.decisions["neighbours"] == PLAN_NAMES["early2-head"].neighbours
    assert "nearest neighbours in its feature space" in cheap.summary()
    tight = dp.prune(make, ds, ratio=0.5, budget=0.1, epochs=10, batch_size=32)
    assert tight.cost["expected_cost_fraction"] <= 0.1 and tight.evidence["features"].shape[0] == len(ds)
    # batch_size= is the surrogate's recipe (it once went to the scoring passes instead)
    assert cheap.provenance["recipe"]["batch_size"] == 32 and cheap.provenance["recipe"]["epochs"] == 10
    run = dp.train(make(), ds, epochs=2, batch_size=32, checkpoint_epochs=[1, 2])
    given = dp.prune(make(), ds, ratio=0.5, checkpoints=run.checkpoints)
    assert given.cost["plan"] == "given checkpoints" and given.n_kept == num_kept(len(ds), 0.5)
    assert given.evidence["features"].shape[0] == len(ds) and "off_centre" in given.decisions
    with pytest.raises(ValueError, match="with checkpoints= there is none to train"):
        dp.prune(make(), ds, ratio=0.5, checkpoints=run.checkpoints, budget=0.5)
    other = dp.prune(make(), ds, ratio=0.5, method="el2n", checkpoints=run.checkpoints)
    assert other.policy == "class_balanced" and other.evidence == {}


def test_a_budget_too_short_to_judge_labels_says_which_budget_trains_more():
    from dataprune.pipeline import FULL, PLANS, choose_plan, more_training

    split = load_dataset("digits", label_noise=0.2)
    make = lambda: build_model("cnn", 10, split.input_shape)  # noqa: E731
    res = dp.prune(make, split.train, ratio=0.5, budget=0.1, epochs=10, batch_size=32)
    assert res.decisions["evidence"]["credible"] is False         # about a dozen steps: nothing learnt
    # ... but its features already group the digits: their neighbours' labels judge the labels instead
    assert res.decisions["evidence"]["neighbours_judged"]["credible"] and res.decisions["neighbours"] == 1.0
    assert res.decisions["noise_evident"] and res.decisions["sampling"] == "random"
    assert split.flipped[res.keep].mean() < 0.5 * split.flipped.mean()          # 20% wrong -> about 3% kept
    assert "nearest neighbours in its feature space judged them instead" in res.summary()
    # on the same digits with clean labels they judge too, and find no evident noise: nothing is set aside
    clean = dp.prune(make, load_dataset("digits").train, ratio=0.5, budget=0.1, epochs=10, batch_size=32)
    assert clean.decisions["evidence"]["neighbours_judged"]["credible"]          # (held-out explained 0.95)
    assert clean.decisions["set_aside"] == 0 and clean.decisions["noise_rule"] == "none"
    assert "no label noise was evident in them" in clean.summary()
    adv = res.decisions["evidence_advice"]
    ck = default_checkpoint_epochs(10)

    def trains(name):
        return PLAN_NAMES[name].presentations(10, ck, evidence=True)

    assert adv["plan"] == res.provenance["plan"] and adv["steps"] == PLAN_NAMES[adv["plan"]].steps(
        10, len(split.train), 32, ck, evidence=True)
    # the advised budget buys the advised plan, which trains at least twice as much ...
    assert choose_plan(adv["next_budget"], 10, ck, evidence=True, records_evidence=True).name == adv["next_plan"]
    assert trains(adv["next_plan"]) >= 2 * trains(adv["plan"]) and adv["next_steps"] >= 2 * adv["steps"] - 1
    # ... and no plan that trains that much is cheaper
    cost = {p.name: p.expected_cost(10, ck, evidence=True, records_evidence=True) for p in PLANS}
    assert all(cost[p.name] >= cost[adv["next_plan"]] - 1e-9 for p in PLANS
               if trains(p.name) >= 2 * trains(adv["plan"]))
    assert f"a budget of {adv['next_budget']:g} buys {adv['next_plan']}" in res.summary()
    import tempfile

    with tempfile.TemporaryDirectory() as folder:                  # and the HTML report says it too
        res.report(folder)
        assert f"buys {adv['next_plan']}" in open(os.path.join(folder, "report.html")).read()
    assert more_training(FULL, 10, ck, evidence=True) is None
    # a credible run gives no advice; nor does one without a budget
    full = dp.prune(make, split.train, ratio=0.5, epochs=3, batch_size=32)
    assert "evidence_advice" not in full.decisions


def test_only_runs_of_the_whole_schedule_judge_the_accuracy_trend(digits, monkeypatch):
    import dataprune.pipeline as pipeline

    assert PLAN_NAMES["full"].judges_trend and PLAN_NAMES["head"].judges_trend
    assert not any(PLAN_NAMES[p].judges_trend for p in ("half-head", "early3-head", "early2-head",
                                                         "quarter-data-early1-head"))
    seen = []
    judge = pipeline.judge
    monkeypatch.setattr(pipeline, "judge", lambda *a, **k: seen.append(k["trend"]) or judge(*a, **k))
    split, ds = digits
    make = lambda: build_model("mlp", 10, split.input_shape)  # noqa: E731
    for budget in (0.41, None):
        dp.prune(make, ds, ratio=0.5, budget=budget, epochs=10, batch_size=32)
    assert seen == [False, True]



def test_budget_advice_follows_the_judgment():
    from dataprune.pipeline import budget_advice
    from dataprune.train import TrainConfig

    kw = dict(recipe=TrainConfig(epochs=10, batch_size=32), checkpoint_epochs=default_checkpoint_epochs(10), n=3200)
    plan = PLAN_NAMES["early2-head"]
    assert budget_advice(plan, "recommended", [{"credible": True}], **kw) is None
    assert budget_advice(plan, "recommended", [], **kw) is None
    for reports in ([{"credible": False, "why": "x"}], [{"credible": True, "caution": "flags may be hard samples"}],
                    [None, {"credible": False}]):
        advice = budget_advice(plan, "recommended", reports, **kw)
        assert advice["plan"] == "early2-head" and advice["steps"] == 2 * 90       # 2 epochs of 2,880 at batch 32
        assert advice["next_plan"] == "half-head" and advice["next_steps"] >= 2 * advice["steps"]


def test_advice_for_more_training_names_a_typeable_budget_and_says_when_only_no_budget_does():
    from dataprune.pipeline import advice_text, more_training

    ck = default_checkpoint_epochs(30)
    plan, budget = more_training(PLAN_NAMES["half-head"], 30, ck, evidence=True)
    assert plan.name == "full" and budget == round(budget, 2) and budget > 1      # rounded up to 0.01
    text = advice_text({"plan": "half-head", "steps": 615, "next_plan": "full", "next_budget": budget,
                        "next_steps": 1107})
    assert "without a budget the full plan" in text and f"about {budget:g} of a training run" in text
    assert "a budget of" not in text
