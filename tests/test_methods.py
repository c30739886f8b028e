"""Every scoring method: known answers on tiny data, and the shared conventions."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from dataprune.data import ArrayDataset
from dataprune.methods import METHODS, call_method, dynamics, geometry, uncertainty
from dataprune.pipeline import surrogate_scores
from dataprune.select import ccs_indices, select
from dataprune.train import TrainConfig
from dataprune.trajectory import Checkpoint

# ---------------------------------------------------------------- known answers --

def test_forgetting_counts_a_scripted_history():
    # epochs x samples: 1 = correct
    correct = np.array([[0, 1, 1, 0],
                        [1, 0, 1, 0],
                        [1, 1, 0, 0],
                        [0, 1, 1, 0]], dtype=bool)
    counts = dynamics.forgetting_counts(correct)
    # sample 0: learned at 1, forgotten at 3 -> 1; sample 1: forgotten at 1 -> 1;
    # sample 2: forgotten at 2 -> 1; sample 3: never learned -> max + 1 = 2
    assert counts.tolist() == [1, 1, 1, 2]
    # unseen presentations do not count: sample 0 is not presented in epoch 2
    seen = np.ones_like(correct)
    seen[3, 0] = False
    assert dynamics.forgetting_counts(correct, seen)[0] == 0


def test_aum_dynunc_tdds_hand_computed():
    margin = np.array([[2.0, -1.0], [0.0, -3.0]])
    assert dynamics.area_under_margin(margin).tolist() == [1.0, -2.0]
    p = np.array([[0.2, 0.5], [0.4, 0.5], [0.9, 0.5]])
    # windows of 2: std of (0.2, 0.4) = 0.1, of (0.4, 0.9) = 0.25 -> mean 0.175; constant sample -> 0
    assert np.allclose(dynamics.dynamic_uncertainty(p, window=2), [0.175, 0.0])
    change = np.array([[np.nan, np.nan], [1.0, 2.0], [3.0, 2.0], [3.0, 2.0]])
    # windows of 2 over changes (1,3) and (3,3): R = sqrt(2)*1 and 0; weights 0.9*0.1 and 0.9
    expected = 0.9 * 0.1 * np.sqrt(2.0)
    assert np.allclose(dynamics.temporal_dual_depth(change, window=2, decay=0.9), [expected, 0.0])


def test_el2n_by_hand_on_three_samples():
    model = nn.Linear(2, 3, bias=False)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 0, 2])
    ds = ArrayDataset(x, y)
    ck = [Checkpoint({"weight": w}, 0.1, 1)]
    got = uncertainty.el2n_score(model, ck, ds, use="all")
    p = torch.softmax(x @ w.t(), 1).double()
    onehot = torch.nn.functional.one_hot(torch.from_numpy(y), 3).double()
    assert np.allclose(got, torch.linalg.vector_norm(p - onehot, dim=1).numpy())
    # uniform prediction (1/3 each) for sample 0 with label 0: sqrt((2/3)^2 + 2 (1/3)^2)
    assert np.isclose(got[0], np.sqrt(6) / 3)
    assert np.allclose(uncertainty.el2n_score(model, ck, ds, use="all", keep="easy"), -got)


def test_kcenter_picks_the_farthest_points():
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [0.0, 5.0], [0.2, 0.1]], dtype=torch.float64)
    order = geometry.kcenter_order(x)
    # starts at the point nearest the mean (2.06, 1.02) -> (0.2, 0.1); the farthest from it is (10, 0);
    # then the farthest from both is (0, 5)
    assert order[:3].tolist() == [4, 2, 3]


def test_herding_running_mean_approaches_the_class_mean():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g, dtype=torch.float64) * 3 + 1
    order = geometry.herding_order(x)
    mu = x.mean(0)
    herd_err = [float(torch.linalg.vector_norm(x[order[:k]].mean(0) - mu)) for k in (5, 20, 80)]
    rand_err = [float(torch.linalg.vector_norm(x[:k].mean(0) - mu)) for k in (5, 20, 80)]
    assert herd_err[0] > herd_err[1] > herd_err[2]
    assert all(h < r / 3 for h, r in zip(herd_err, rand_err, strict=True))
    assert sorted(order.tolist()) == list(range(200))


def test_moderate_keeps_the_middle_band_and_ssp_the_far_ones():
    # one class: distances to the mean 0, 1, 2, 3, 4 (mean at the origin)
    feats = np.array([[0, 0], [1, 0], [-2, 0], [3, 0], [-2, 0]], dtype=float)
    feats = feats - feats.mean(0)
    ds = ArrayDataset(torch.zeros(5, 1), np.zeros(5, dtype=int))
    mod = geometry.moderate_score(None, [], ds, features=feats)
    d = np.abs(feats[:, 0])
    assert np.argmax(mod) == np.argmin(np.abs(d - np.median(d)))
    ssp = geometry.ssp_score(None, [], ds, features=feats)
    assert np.allclose(ssp, d)


def test_ccs_drops_the_hardest_then_covers_every_stratum():
    rng = np.random.default_rng(0)
    scores = rng.random(1000)
    keep = ccs_indices(scores, 100, beta=0.1, strata=10, rng=np.random.default_rng(1))
    assert len(keep) == 100 and len(np.unique(keep)) == 100
    hardest = np.argsort(-scores)[:100]
    assert not set(keep) & set(hardest)
    counts = np.histogram(scores[keep], bins=10, range=(scores[keep].min(), scores[keep].max()))[0]
    assert counts.min() >= 5          # every stratum represented, not just the top
    via_select = select(scores, 0.9, policy="ccs", beta=0.1, strata=10, seed=1)
    assert len(via_select) == 100
    with pytest.raises(TypeError, match="policy 'topk' takes no option"):
        select(scores, 0.9, beta=0.1)


# ------------------------------------------------------------- conventions ---

def _planted_data():
    """Four well-separated classes, every 10th label flipped to the next class: (x, clean labels,
    given labels, class centres, flipped positions)."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 12, generator=g) * 3
    y = torch.randint(0, 4, (160,), generator=g)
    x = centers[y] + torch.randn(160, 12, generator=g)
    noisy = y.clone()
    flipped = np.arange(0, 160, 10)
    noisy[flipped] = (y[flipped] + 1) % 4
    return x, y, noisy, centers, flipped


def _planted_model():
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 4))


@pytest.fixture(scope="module")
def planted():
    """The planted data as a dataset, a small model constructor, the flipped positions."""
    x, _, noisy, _, flipped = _planted_data()
    return ArrayDataset(x, noisy.numpy()), _planted_model, flipped


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_shape_dtype_determinism(name, planted):
    ds, make, _ = planted
    run = lambda: surrogate_scores([name], ds, make, config=TrainConfig(epochs=6, batch_size=16, lr=0.05),  # noqa
                                   checkpoint_epochs=[1, 2, 3, 4, 5, 6], seed=0).scores[name]
    a, b = run(), run()
    assert a.shape == (len(ds),) and a.dtype == np.float64
    assert np.isfinite(a).all()
    assert np.array_equal(a, b)


@pytest.mark.parametrize("name", ["el2n", "grand", "forgetting", "aum"])
def test_difficulty_scores_rank_mislabelled_samples_as_hard(name, planted):
    ds, make, flipped = planted
    s = surrogate_scores([name], ds, make, config=TrainConfig(epochs=8, batch_size=16, lr=0.05),
                         checkpoint_epochs=range(1, 9), seed=0).scores[name]
    ranks = np.argsort(np.argsort(-s))            # 0 = kept first
    assert ranks[flipped].mean() < 0.3 * len(s), f"{name}: mislabelled samples not among the hardest"
    easy = surrogate_scores([name], ds, make, config=TrainConfig(epochs=8, batch_size=16, lr=0.05),
                            checkpoint_epochs=range(1, 9), seed=0, options={name: {"keep": "easy"}}).scores[name]
    assert np.array_equal(easy, -s)


def test_unknown_method_option_is_refused(planted):
    ds, make, _ = planted
    with pytest.raises(TypeError, match="method 'el2n' has no option"):
        call_method(METHODS["el2n"], make(), [Checkpoint(make().state_dict(), 0.1, 1)], ds,
                    options={"windw": 3})


@pytest.fixture(scope="module")
def planted_easy():
    """The planted fixture plus a duplicated easy sample (the sample nearest its class centre, twice)."""
    x, y, noisy, centers, flipped = _planted_data()
    d = (x - centers[y]).norm(dim=1)
    d[flipped] = float("inf")
    easy = int(d.argmin())
    x = torch.cat([x, x[easy:easy + 1], x[easy:easy + 1]])
    noisy = torch.cat([noisy, noisy[easy:easy + 1], noisy[easy:easy + 1]])
    run = lambda name: surrogate_scores([name], ArrayDataset(x, noisy.numpy()), _planted_model,  # noqa: E731
                                        config=TrainConfig(epochs=8, batch_size=16, lr=0.05),
                                        checkpoint_epochs=range(1, 9), seed=0)
    return run, flipped, np.array([160, 161]), noisy.numpy()


def dp_suspects(probs, labels):
    from dataprune.select import confident_noise

    return confident_noise(probs, labels, "adaptive")["suspect"]


@pytest.mark.parametrize("name", ["moso", "moso_norm"])
def test_moso_keeps_a_duplicated_easy_sample_before_flipped_labels(name, planted_easy):
    run, flipped, dup, _ = planted_easy
    s = run(name).scores[name]
    ranks = np.argsort(np.argsort(-s)) / len(s)          # 0 = kept first
    assert ranks[dup].max() < ranks[flipped].mean(), f"{name}: flipped labels ranked above a typical sample"


def test_classwise_moso_ranks_flipped_labels_first_which_auto_corrects(planted_easy):
    """The measured failure of class-wise alignment under label noise (the wrong labels of a class agree
    with each other), and the recommended default's answer: its policy sets them aside."""
    from dataprune.select import selection

    run, flipped, dup, labels = planted_easy
    r = run("moso_class")
    ranks = np.argsort(np.argsort(-r.scores["moso_class"])) / len(labels)
    assert ranks[flipped].mean() < 0.3 and ranks[flipped].mean() < ranks[dup].min()
    rec = run("recommended")
    assert np.array_equal(rec.scores["recommended"], r.scores["moso_class"])
    sel = selection(rec.scores["recommended"], 0.5, labels=labels, policy="auto", **rec.aux["recommended"])
    # 10% noise is below the adaptive rule's switch: confident learning alone, precise, finds most of it
    # (a random half would keep half of the flipped labels)
    assert np.isin(flipped, sel.keep).mean() <= 0.2, "the default kept the flipped labels"
    assert np.isin(dup, sel.keep).all()
    assert sel.decisions["noise_rule"] == "adaptive" and sel.decisions["set_aside"] >= 0.6 * len(flipped)
    kept_out = np.setdiff1d(np.arange(len(labels)), sel.keep)
    suspects = np.flatnonzero(dp_suspects(rec.aux["recommended"]["probs"], labels))
    assert np.isin(suspects, flipped).mean() >= 0.9 and np.isin(suspects, kept_out).all()


def test_dual_terms_and_beta_weights_by_hand():
    """DUAL on numbers worked out by hand: the windowed (sample std x (1 - mean)) of the label probability,
    averaged over windows; the Beta(16 - b, b) weights times the score."""
    from scipy.stats import beta

    from dataprune.methods.dual import beta_weights, dual_terms

    p = np.array([[0.2, 0.9], [0.4, 0.9], [0.6, 0.9]])          # 3 epochs, 2 samples
    score, mean = dual_terms(p, window=2)
    # sample 0: windows (0.2, 0.4) and (0.4, 0.6): std 0.141421 each, 1 - mean 0.7 and 0.5
    s0 = (np.sqrt(0.02) * 0.7 + np.sqrt(0.02) * 0.5) / 2
    assert np.allclose(score, [s0, 0.0]) and np.allclose(mean, [0.4, 0.9])
    scores = np.array([2.0, 1.0, 0.5])
    label_prob = np.array([0.3, 0.6, 0.9])
    w = beta_weights(label_prob, scores, ratio=0.5, c_d=4.0, anchor=1)
    b = 15 * (1 - 0.3) * (1 - 0.5 ** 4)                          # m = label_prob of the top-scored sample
    expected = beta.pdf(label_prob, 16 - b, b) * scores
    assert np.allclose(w, expected + 1e-12 * max(expected.max(), 1.0))
    # at a large ratio the density moves toward easy samples (high label probability)
    w_hi = beta_weights(label_prob, np.ones(3), ratio=0.95, anchor=1)
    w_lo = beta_weights(label_prob, np.ones(3), ratio=0.1, anchor=1)
    assert np.argmax(w_hi) == 2 and np.argmax(w_lo) < 2
