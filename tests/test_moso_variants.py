"""Class-wise and normalised MoSo against a brute-force loop; the noise-aware policies."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dataprune.methods import moso_variants
from dataprune.models import SmallCNN
from dataprune.select import noise_cutoff_indices, select, selection
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
    via = select(scores, 0.7, labels=labels, policy="noise_cutoff", gradnorm=evidence, cutoff=0.2)
    assert via.tolist() == [5, 6, 7, 15, 16, 17]
    # the older keyword for the same evidence still works
    older = select(scores, 0.7, labels=labels, policy="noise_cutoff", evidence=evidence, cutoff=0.2)
    assert older.tolist() == via.tolist()
    with pytest.raises(ValueError, match="needs the per-sample evidence gradnorm"):
        select(scores, 0.5, labels=labels, policy="noise_cutoff", cutoff=0.2)
    with pytest.raises(ValueError, match="needs cutoff"):
        select(scores, 0.5, labels=labels, policy="noise_cutoff", gradnorm=evidence)
    sel = selection(scores, 0.7, labels=labels, policy="noise_cutoff", gradnorm=evidence, cutoff=0.2)
    assert sel.decisions == {"cutoff": 0.2, "sampling": "top"}


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
    a = select(scores, 0.9, labels=labels, policy="noise_cutoff", gradnorm=evidence, cutoff=0.3,
               sampling="stratified", seed=3)
    assert a.tolist() == select(scores, 0.9, labels=labels, policy="noise_cutoff", gradnorm=evidence, cutoff=0.3,
                                sampling="stratified", seed=3).tolist()


@pytest.mark.parametrize("bias", [True, False])
def test_fused_equals_classwise_last_layer_with_and_without_head_bias(bias):
    """The fused callback, fed one epoch of a model that does not move, gives the class-wise last-layer
    scores of that checkpoint (a head without a bias has no bias column in its gradient)."""
    from dataprune.data import ArrayDataset
    from dataprune.methods.fused import FusedClasswise
    from dataprune.trajectory import snapshot

    torch.manual_seed(0)
    x = torch.randn(60, 8)
    y = np.arange(60) % 3
    ds = ArrayDataset(x, y)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3, bias=bias))
    lr = 0.1
    for cache_mb in (None, 0):          # in memory, and spilled to files
        fused = FusedClasswise(ds, [1], cache_mb=cache_mb)
        fused.on_train_begin(model=model)
        model.eval()
        with torch.no_grad():
            for step, start in enumerate(range(0, 60, 16)):
                idx = np.arange(start, min(start + 16, 60))
                logits = model(x[idx])
                fused.on_batch_end(epoch=1, step=step, indices=idx, logits=logits, targets=torch.from_numpy(y[idx]))
        fused.on_epoch_end(epoch=1, model=model, lr=lr)
        got, aux = fused.result()
        want, want_aux = moso_variants.classwise_score(model, [snapshot(model, lr, 1)], ds, params="last_layer",
                                                       return_aux=True)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(aux["gradnorm"], want_aux["gradnorm"], rtol=1e-5)
        np.testing.assert_allclose(aux["probs"], want_aux["probs"], rtol=1e-5, atol=1e-7)
