"""Class-wise and normalised MoSo against a brute-force loop; the noise-aware policies."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dataprune.methods import moso_variants
from dataprune.models import SmallCNN
from dataprune.select import auto_cutoff, auto_plan, noise_cutoff_indices, select
from test_moso import _data, _rel, _trajectory


def brute_force_classwise(model, checkpoints, x, y, normalized=False):
    import copy

    model = copy.deepcopy(model).double()
    n = len(x)
    score, gradnorm, wrong = np.zeros(n), np.zeros(n), np.zeros(n)
    for state, lr in checkpoints:
        model.load_state_dict(state)
        model.eval()
        rows = []
        for i in range(n):
            loss = F.cross_entropy(model(x[i:i + 1].double()), y[i:i + 1])
            rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))]))
        G = torch.stack(rows)
        for i in range(n):
            same = (y == y[i]).nonzero().squeeze(1)
            others = [j for j in same.tolist() if j != i]
            mean_others = G[others].mean(0) if others else torch.zeros_like(G[i])
            s = float(G[i] @ mean_others)
            if normalized:
                s /= float(G[i].norm())
            score[i] += lr * s
            gradnorm[i] += lr * float(G[i].norm())
        with torch.no_grad():
            wrong += (model(x.double()).argmax(1) != y).double().numpy()
    return score, gradnorm, wrong / len(checkpoints)


@pytest.mark.parametrize("normalized", [False, True])
def test_classwise_matches_brute_force(normalized):
    torch.manual_seed(0)
    model = SmallCNN(1, 4).double()
    x, y, ds = _data((1, 12, 12), 31, classes=4)
    cks = _trajectory(model, 3)
    fn = moso_variants.normalized_score if normalized else moso_variants.classwise_score
    got, aux = fn(model, cks, ds, batch_size=6, return_aux=True)
    ref, ref_norm, ref_wrong = brute_force_classwise(model, cks, x, y, normalized)
    assert _rel(got, ref) <= 1e-5
    assert _rel(aux["gradnorm"], ref_norm) <= 1e-5
    assert np.array_equal(aux["disagreement"], ref_wrong)


def test_noise_cutoff_sets_aside_the_most_suspicious_per_class():
    labels = np.array([0] * 10 + [1] * 10)
    scores = np.arange(20, dtype=float)                 # later samples score higher
    evidence = np.zeros(20)
    evidence[[9, 8, 19]] = [5.0, 4.0, 3.0]              # suspicious: the two best of class 0, the best of class 1
    keep = noise_cutoff_indices(scores, labels, 6, evidence, cutoff=0.2)
    # class 1 sets aside 19 (evidence 3) and, among the ties at 0, the last one (18)
    assert sorted(keep.tolist()) == [5, 6, 7, 15, 16, 17]
    # the cutoff never empties a class below its quota
    keep = noise_cutoff_indices(scores, labels, 18, evidence, cutoff=0.5)
    assert np.bincount(labels[keep]).tolist() == [9, 9]
    via = select(scores, 0.7, labels=labels, policy="noise_cutoff", evidence=evidence, cutoff=0.2)
    assert via.tolist() == [5, 6, 7, 15, 16, 17]
    # auto = noise_cutoff with the cutoff from the disagreement share: 2 of 20 look mislabeled
    disagreement = np.zeros(20)
    disagreement[[9, 19]] = 1.0
    auto = select(scores, 0.5, labels=labels, policy="auto", evidence=evidence, disagreement=disagreement)
    assert auto.tolist() == select(scores, 0.5, labels=labels, policy="noise_cutoff", evidence=evidence,
                                   cutoff=0.1).tolist() == [4, 5, 6, 7, 8, 14, 15, 16, 17, 18]
    with pytest.raises(ValueError, match="needs evidence"):
        select(scores, 0.5, labels=labels, policy="auto", disagreement=np.zeros(20))


def test_auto_cutoff_follows_the_estimated_noise_and_the_ratio():
    clean, noisy = np.zeros(1000), np.r_[np.ones(200), np.zeros(800)]
    assert auto_cutoff(clean, 0.5) < auto_cutoff(noisy, 0.5)
    assert auto_cutoff(clean, 0.5) <= auto_cutoff(clean, 0.9)
    for d in (clean, noisy):
        for r in (0.1, 0.5, 0.9):
            assert 0 <= auto_cutoff(d, r) <= 0.9 * r + 1e-12
    # up to ratio 0.7 the cutoff is the noise estimate; at 0.9 it is 0.1 more
    assert auto_cutoff(noisy, 0.7) == pytest.approx(0.2)
    assert auto_cutoff(clean, 0.7) == 0.0
    assert auto_cutoff(clean, 0.9) == pytest.approx(0.1)
    assert auto_cutoff(noisy, 0.8) == pytest.approx(0.25)
    assert auto_cutoff(noisy, 0.9) == pytest.approx(0.3)
    assert [auto_plan(clean, r)["sampling"] for r in (0.5, 0.7, 0.8, 0.9)] == ["top", "top", "stratified", "stratified"]


def test_stratified_sampling_covers_the_score_range_of_the_trusted_samples():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    scores = np.tile(np.arange(100, dtype=float), 2)
    evidence = np.tile(np.arange(100, dtype=float), 2)        # the highest scores are the most suspicious
    keep = noise_cutoff_indices(scores, labels, 20, evidence, cutoff=0.3, sampling="stratified", strata=10,
                                rng=np.random.default_rng(1))
    assert np.bincount(labels[keep]).tolist() == [10, 10]
    kept = scores[keep]
    assert kept.max() < 70                                     # the set-aside 30% never comes back
    # one sample from each tenth of the trusted range [0, 70)
    for c in (0, 1):
        assert sorted(np.floor(scores[keep[labels[keep] == c]] / 7).astype(int).tolist()) == list(range(10))
    top = noise_cutoff_indices(scores, labels, 20, evidence, cutoff=0.3)
    assert sorted(scores[top].tolist()) == sorted(list(range(60, 70)) * 2)
    with pytest.raises(ValueError, match="sampling must be one of"):
        noise_cutoff_indices(scores, labels, 20, evidence, cutoff=0.3, sampling="best", rng=rng)
    a = select(scores, 0.9, labels=labels, policy="noise_cutoff", evidence=evidence, cutoff=0.3,
               sampling="stratified", seed=3)
    assert a.tolist() == select(scores, 0.9, labels=labels, policy="noise_cutoff", evidence=evidence, cutoff=0.3,
                                sampling="stratified", seed=3).tolist()
