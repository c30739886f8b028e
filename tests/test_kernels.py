"""Every per-sample kernel against the batch-size-1 oracle (relative error <= 1e-5, float64)."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import randomize_norm_stats
from dataprune import grads
from dataprune.grads import conv as conv_kernels
from dataprune.models import SmallCNN, resnet18

RTOL = 1e-5


class TokenNet(nn.Module):
    """Embedding, LayerNorm, a sequence Linear, GroupNorm: the non-image layer types."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8, padding_idx=0)
        self.ln = nn.LayerNorm(8)
        self.lin = nn.Linear(8, 8)
        self.gn = nn.GroupNorm(2, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.tanh(self.lin(self.ln(self.emb(x))))            # (B, T, 8)
        h = self.gn(h.transpose(1, 2)).transpose(1, 2)
        return self.head(h.mean(1))


class Scale(nn.Module):
    """A layer type with no registered kernel: exercises the torch.func fallback."""

    def __init__(self, n):
        super().__init__()
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, n))

    def forward(self, x):
        return x * self.gain


class Odd(nn.Module):
    """Conv1d, grouped and dilated convs, reflect padding, 'same' padding, the fallback layer,
    a layer called twice and in-place ReLUs after captured layers."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 8, 3, padding=1, padding_mode="reflect", groups=2)
        self.c3 = nn.Conv2d(8, 8, 3, padding="same", dilation=2, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.shared = nn.Linear(8, 8)
        self.scale = Scale(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):                      # x: (B, 2, 36)
        h = F.relu(self.c1(x)).view(x.shape[0], 4, 6, 6)
        h = self.c2(h)
        h = nn.functional.relu(h, inplace=True)
        h = self.bn(self.c3(h))
        h.relu_()
        h = h.mean((2, 3))
        h = self.shared(torch.tanh(self.shared(h)))     # called twice
        return self.head(self.scale(h))


def _image_batch(shape, b=5, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((b,) + shape, generator=g, dtype=torch.float64), torch.randint(0, classes, (b,), generator=g)


CASES = {
    "mlp": lambda: (nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 10)),
                    _image_batch((3, 4))),
    "cnn_bn": lambda: (SmallCNN(1, 10), _image_batch((1, 28, 28))),
    "resnet": lambda: (resnet18(10, (3, 32, 32), width=8), _image_batch((3, 32, 32), b=4)),
    "tokens": lambda: (TokenNet(), (torch.tensor([[3, 3, 5, 0, 0, 7], [1, 2, 3, 4, 5, 6], [9, 9, 9, 9, 0, 0],
                                                  [0, 0, 0, 1, 1, 2], [19, 18, 3, 3, 3, 4]]),
                                    torch.tensor([0, 1, 2, 0, 1]))),
    "odd": lambda: (Odd(), _image_batch((2, 36), classes=5)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_kernels_match_batch_size_one_oracle(name):
    torch.manual_seed(0)
    model, (x, y) = CASES[name]()
    model = randomize_norm_stats(model.double()).eval()
    report = grads.check_kernels(model, x, y, rtol=RTOL)
    print(name, f"max relative error {report['max_rel_error']:.2e}")


@pytest.mark.parametrize("strategy", ["shift", "unfold", "ghost", "grouped"])
def test_every_conv_norm_strategy_is_exact(strategy):
    forced = {torch.nn.Conv2d: conv_kernels.ConvKernel(strategy=strategy)}
    torch.manual_seed(1)
    model = randomize_norm_stats(resnet18(10, (3, 16, 16), width=4).double()).eval()
    x, y = _image_batch((3, 16, 16), b=3)
    ref = grads.reference_per_sample_grads(model, x, y)
    flat = torch.cat([g.reshape(3, -1) for g in ref.values()], 1)
    sq = grads.per_sample_sq_norms(model, x, y, kernels=forced)
    assert torch.allclose(sq, (flat * flat).sum(1), rtol=1e-10)
    vec = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    dots = grads.per_sample_dots(model, x, y, vec, kernels=forced)
    ref_dots = flat @ torch.cat([v.reshape(-1) for v in vec.values()])
    assert torch.allclose(dots, ref_dots, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("strategy", ["shift", "unfold", "ghost", "grouped"])
def test_odd_convs_under_every_strategy(strategy):
    forced = conv_kernels.ConvKernel(strategy=strategy)
    torch.manual_seed(0)
    model, (x, y) = CASES["odd"]()
    grads.check_kernels(randomize_norm_stats(model.double()).eval(), x, y, rtol=RTOL,
                        kernels={torch.nn.Conv1d: forced, torch.nn.Conv2d: forced})


def test_a_forced_strategy_is_used_and_an_unknown_one_refused(monkeypatch):
    calls = []
    real = conv_kernels._ghost_sq
    monkeypatch.setattr(conv_kernels, "_ghost_sq", lambda *a: calls.append(1) or real(*a))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 14 * 14, 10)).double()
    x, y = _image_batch((3, 16, 16), b=2)
    grads.per_sample_sq_norms(model, x, y, kernels={torch.nn.Conv2d: conv_kernels.ConvKernel(strategy="ghost")})
    assert calls
    with pytest.raises(ValueError, match="unknown conv strategy 'fast'"):
        conv_kernels.ConvKernel(strategy="fast")


def test_sequence_linear_ghost_and_materialised_agree():
    torch.manual_seed(0)
    # T=2 with wide layers picks the ghost form, T=40 with narrow layers the materialised one.
    for t, width in [(2, 64), (40, 3)]:
        lin = nn.Linear(width, width).double()
        model = nn.Sequential(lin, nn.Tanh(), nn.Flatten(), nn.Linear(t * width, 4).double())
        x = torch.randn(6, t, width, dtype=torch.float64)
        y = torch.randint(0, 4, (6,))
        grads.check_kernels(model.eval(), x, y, rtol=1e-10)


def test_jvp_dots_match_hooks():
    torch.manual_seed(0)
    model = randomize_norm_stats(SmallCNN(1, 10).double()).eval()
    x, y = _image_batch((1, 28, 28), b=6)
    vec = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    a = grads.per_sample_dots(model, x, y, vec, backend="hooks")
    b = grads.per_sample_dots(model, x, y, vec, backend="jvp")
    assert torch.allclose(a, b, rtol=1e-10)


def test_parameter_subset_and_last_layer():
    torch.manual_seed(0)
    model = randomize_norm_stats(SmallCNN(1, 10).double()).eval()
    x, y = _image_batch((1, 28, 28), b=4)
    sel = grads.select_params(model, "last_layer", example=x)
    assert sel.names == ["fc.weight", "fc.bias"]
    grads.check_kernels(model, x, y, params="last_layer", rtol=RTOL)
    grads.check_kernels(model, x, y, params=["features.0.weight", model.fc], rtol=RTOL)
    with pytest.raises(ValueError, match="no parameter 'fc.wieght'"):
        grads.select_params(model, ["fc.wieght"])


def test_empty_batch_and_float32():
    torch.manual_seed(0)
    model = randomize_norm_stats(SmallCNN(1, 10)).eval()
    x, y = _image_batch((1, 28, 28), b=4)
    x32 = x.float()
    sq32 = grads.per_sample_sq_norms(model, x32, y)
    sq64 = grads.per_sample_sq_norms(model.double(), x, y)
    assert torch.allclose(sq32.double(), sq64, rtol=1e-4)
    empty = grads.per_sample_sq_norms(model, x[:0], y[:0])
    assert empty.shape == (0,)


def test_batchnorm_in_train_mode_is_refused():
    model = SmallCNN(1, 10).double().train()
    x, y = _image_batch((1, 28, 28), b=4)
    with pytest.raises(ValueError, match="eval mode"):
        grads.per_sample_sq_norms(model, x, y)
