"""moso.score against a slow brute-force reference written here: a per-sample loop of full
backward passes, the mean of those gradients, the authors' formula term by term."""

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import randomize_norm_stats
from dataprune import moso
from dataprune.data import ArrayDataset
from dataprune.grads import NonFiniteLossWarning
from dataprune.methods.common import NonFiniteScoreWarning
from dataprune.models import SmallCNN
from dataprune.train import train
from dataprune.trajectory import Checkpoint


def brute_force_moso(model, checkpoints, x, y, form="exact", params=None):
    """One backward pass per sample, float64; nothing shared with the library's code path."""
    model = copy.deepcopy(model).double()
    total = np.zeros(len(x))
    for state, lr in checkpoints:
        model.load_state_dict(state)
        model.eval()
        chosen = [p for n, p in model.named_parameters() if params is None or n in params]
        rows = []
        for i in range(len(x)):
            loss = F.cross_entropy(model(x[i:i + 1].double()), y[i:i + 1])
            g = torch.autograd.grad(loss, chosen)
            rows.append(torch.cat([t.reshape(-1) for t in g]))
        G = torch.stack(rows)                  # (N, P)
        n = len(x)
        gbar = G.mean(0)
        dot = G @ gbar
        sq = (G * G).sum(1)
        if form == "alignment":
            s = dot
        else:
            s = ((2 * n - 3) * gbar.dot(gbar) - sq + (2 * n - 4) * (dot - sq / n)) / (n - 1) ** 2
        total += lr * s.numpy()
    return total


def _trajectory(model, n_ckpt=3, seed=0):
    """Checkpoints with different weights, BN statistics and learning rates."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(n_ckpt):
        m = copy.deepcopy(model)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        randomize_norm_stats(m, seed=seed + k)
        out.append((m.state_dict(), [0.1, 0.05, 0.01, 0.3][k % 4]))
    return out


def _data(shape, n, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n,) + shape, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y, ArrayDataset(x, y.numpy())


def _rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("form", ["exact", "alignment"])
def test_mlp_matches_brute_force(form):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 5)).double()
    x, y, ds = _data((20,), 37, classes=5)
    cks = _trajectory(model, 3)
    got = moso.score(model, cks, ds, batch_size=8, form=form)
    ref = brute_force_moso(model, cks, x, y, form)
    err = _rel(got, ref)
    print(f"MLP {form}: max relative error {err:.2e}")
    assert err <= 1e-5


@pytest.mark.parametrize("form", ["exact", "alignment"])
def test_conv_batchnorm_matches_brute_force(form):
    torch.manual_seed(0)
    model = SmallCNN(1, 10).double()
    x, y, ds = _data((1, 12, 12), 29)
    cks = _trajectory(model, 4)
    got = moso.score(model, cks, ds, batch_size=7, form=form)
    ref = brute_force_moso(model, cks, x, y, form)
    err = _rel(got, ref)
    print(f"conv+BN {form}: max relative error {err:.2e}")
    assert err <= 1e-5


def test_last_layer_closed_form_matches_brute_force():
    torch.manual_seed(0)
    model = SmallCNN(1, 10).double()
    x, y, ds = _data((1, 12, 12), 23)
    cks = _trajectory(model, 2)
    ref = brute_force_moso(model, cks, x, y, params={"fc.weight", "fc.bias"})
    fast = moso.score(model, cks, ds, params="last_layer", batch_size=5)
    no_cache = moso.score(model, cks, ds, params="last_layer", batch_size=5, cache_mb=0)
    hooks = moso.score(model, cks, ds, params=["fc.weight", "fc.bias"], batch_size=5)
    assert _rel(fast, ref) <= 1e-5
    assert _rel(no_cache, ref) <= 1e-5
    assert _rel(hooks, ref) <= 1e-5


def test_backends_and_accumulation_agree():
    torch.manual_seed(0)
    model = SmallCNN(1, 10)
    x, y, ds = _data((1, 12, 12), 40)
    cks = _trajectory(model, 2)
    ref = moso.score(model.double(), [(  {k: v.double() if v.is_floating_point() else v for k, v in s.items()}, lr)
                                       for s, lr in cks], ds)
    f32 = moso.score(model.float(), cks, ds, accumulate="float32")
    f64acc = moso.score(model.float(), cks, ds, accumulate="float64")
    vmapped = moso.score(model.float(), cks, ds, backend="functorch")
    jvp = moso.score(model.float(), cks, ds, backend="jvp", form="alignment")
    align = moso.score(model.float(), cks, ds, form="alignment")
    # float32 model, float32 vs float64 accumulation of the mean gradient
    assert _rel(f32, ref) < 1e-4 and _rel(f64acc, ref) < 1e-4
    assert _rel(vmapped, f64acc) < 1e-5
    assert _rel(jvp, align) < 1e-5


def test_deterministic_and_leaves_model_untouched():
    torch.manual_seed(0)
    model = SmallCNN(1, 10)
    before = copy.deepcopy(model.state_dict())
    model.train()
    _, _, ds = _data((1, 12, 12), 30)
    cks = _trajectory(model, 2)
    a = moso.score(model, cks, ds)
    b = moso.score(model, cks, ds)
    assert np.array_equal(a, b)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_online_callback_equals_offline_scores():
    torch.manual_seed(0)
    _, _, ds = _data((1, 12, 12), 64)
    model = SmallCNN(1, 10)
    init = copy.deepcopy(model)
    cb = moso.MoSoCallback(ds, epochs=[1, 3])
    res = train(model, ds, epochs=3, batch_size=16, checkpoint_epochs=[1, 3], callbacks=[cb])
    offline = moso.score(init, res.checkpoints, ds)
    assert np.allclose(cb.scores(), offline, rtol=1e-6, atol=0)


def test_nonfinite_losses_are_reported_not_spread():
    torch.manual_seed(0)
    x, y, _ = _data((1, 12, 12), 20)
    x[3] = float("nan")
    x[11, 0, 0, 0] = float("inf")
    ds = ArrayDataset(x, y.numpy())
    model = SmallCNN(1, 10)
    cks = _trajectory(model, 2)
    # the loss pass names the samples, and so does the score (which gives them -inf)
    with pytest.warns(NonFiniteLossWarning, match=r"\[3, 11\]"), \
            pytest.warns(NonFiniteScoreWarning, match=r"positions \[3, 11\]"):
        s = moso.score(model, cks, ds, batch_size=8)
    assert np.isneginf(s[[3, 11]]).all()
    finite = np.delete(np.arange(20), [3, 11])
    assert np.isfinite(s[finite]).all()
    clean = ArrayDataset(x[finite], y[finite].numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = moso.score(model, cks, clean, batch_size=8)
    assert np.allclose(s[finite], ref, rtol=1e-5)


def test_parameter_used_outside_its_module_is_detected():
    class Sneaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(6, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            h = torch.tanh(self.body(x))
            return self.head(h) + F.linear(h, self.head.weight)[:, :3] * 0.5  # head.weight used twice

    torch.manual_seed(0)
    model = Sneaky()
    _, _, ds = _data((6,), 16, classes=3)
    cks = [(model.state_dict(), 0.1)]
    for form in ("exact", "alignment"):
        with pytest.raises(RuntimeError, match=r"do not add up.*Linear \(weight, bias\)"):
            moso.score(model, cks, ds, form=form)
    # The functorch backend handles it.
    x, y, _ = _data((6,), 16, classes=3)
    ok = moso.score(model.double(), [({k: v.double() for k, v in model.state_dict().items()}, 0.1)],
                    ds, backend="functorch")
    ref = brute_force_moso(model, [({k: v.double() for k, v in model.state_dict().items()}, 0.1)], x, y)
    assert _rel(ok, ref) < 1e-8


def test_bad_checkpoints_are_explained():
    model = SmallCNN(1, 10)
    _, _, ds = _data((1, 12, 12), 10)
    state = model.state_dict()
    state.pop("fc.bias")
    with pytest.raises(ValueError, match=r"missing keys \['fc.bias'\]"):
        moso.score(model, [(state, 0.1)], ds)
    with pytest.raises(ValueError, match="at least one"):
        moso.score(model, [], ds)
    with pytest.raises(TypeError, match="Checkpoint or a"):
        moso.score(model, [model.state_dict()], ds)


class _PlainDataset(torch.utils.data.Dataset):
    """No get_batch, no targets: the scorer must go through a DataLoader."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def test_plain_dataset_through_dataloader_workers():
    torch.manual_seed(0)
    model = SmallCNN(1, 10)
    x, y, ds = _data((1, 12, 12), 50)
    cks = _trajectory(model, 2)
    ref = moso.score(model, cks, ds, batch_size=16)
    plain = _PlainDataset(x, y)
    for workers in (0, 2):
        got = moso.score(model, cks, plain, batch_size=16, num_workers=workers)
        assert np.allclose(got, ref, rtol=1e-6)


@pytest.mark.parametrize("params", ["last_layer", ["3.weight"]])
def test_bias_free_head_last_layer_matches_brute_force(params):
    """A classifier head without a bias: the closed form's feature columns must line up with the sums."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4, bias=False)).double()
    x, y, ds = _data((20,), 33, classes=4)
    cks = _trajectory(model, 2)
    got = moso.score(model, cks, ds, batch_size=7, params=params)
    ref = brute_force_moso(model, cks, x, y, params={"3.weight"})
    assert _rel(got, ref) <= 1e-8
    # the same head with a bias: weight and bias, and the bias alone
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4)).double()
    cks = _trajectory(model, 2)
    for names in (["3.weight", "3.bias"], ["3.bias"]):
        got = moso.score(model, cks, ds, batch_size=7, params="last_layer" if len(names) == 2 else names)
        assert _rel(got, brute_force_moso(model, cks, x, y, params=set(names))) <= 1e-8


@pytest.mark.parametrize(("method", "keep"), [("moso", None), ("moso_class", None), ("grand", "hard"),
                                             ("grand", "easy"), ("el2n", "hard"), ("el2n", "easy")])
def test_a_sample_without_finite_loss_is_pruned_first_by_every_method(method, keep):
    from dataprune.methods import METHODS, call_method
    from dataprune.select import select

    torch.manual_seed(0)
    x, y, _ = _data((1, 12, 12), 24)
    x[5] = float("nan")
    ds = ArrayDataset(x, y.numpy())
    model = SmallCNN(1, 10)
    cks = [Checkpoint(s, lr, k + 1) for k, (s, lr) in enumerate(_trajectory(model, 2))]
    spec = METHODS[method]
    assert ("keep" in spec.options) == (keep is not None)
    options = {"keep": keep} if keep else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = call_method(spec, model, cks, ds, options=options)
    assert np.isneginf(s[5]) and np.isfinite(np.delete(s, 5)).all()
    assert 5 not in select(s, 0.5)
