"""What a user's model may return and how its labels must fit it: Hugging Face style outputs (a dict or an object
with ``.logits``), a ``torch.compile`` wrapper, and labels that do not match the head -- each either works exactly
like a plain logits model or fails before anything trains, saying what was wrong."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import dataprune as dp
from dataprune.data import ArrayDataset
from dataprune.grads import check_kernels
from dataprune.utils import logits_of


def _blobs(n=300, d=8, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, d, generator=g) + 3 * F.one_hot(y, d).float()
    return x, y.numpy()


def _mlp(d=8, classes=3):
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, classes))


@dataclass
class Output:                      # as a Hugging Face ModelOutput: logits among other fields
    loss: torch.Tensor | None
    logits: torch.Tensor


class DictNet(nn.Module):
    def __init__(self, as_object=False):
        super().__init__()
        self.body, self.as_object = _mlp(), as_object

    def forward(self, x):
        z = self.body(x)
        return Output(None, z) if self.as_object else {"logits": z, "hidden": x}


class TupleNet(DictNet):
    def forward(self, x):
        return self.body(x), x


class Plain(DictNet):
    def forward(self, x):
        return self.body(x)


RECIPE = dict(epochs=3, batch_size=32, lr=0.05)


@pytest.mark.parametrize("as_object", [False, True])
def test_hugging_face_style_output_prunes_like_plain_logits(as_object):
    x, y = _blobs()
    ref = dp.prune(Plain, ArrayDataset(x, y), ratio=0.5, **RECIPE)
    mine = DictNet(as_object)
    res = dp.prune(mine, ArrayDataset(x, y), ratio=0.5, **RECIPE)
    np.testing.assert_array_equal(res.keep, ref.keep)
    np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-6, atol=1e-12)
    out = mine(x[:2])                                        # the user's model is untouched: still its own output
    assert isinstance(out, Output if as_object else dict)


def _twins(epochs):
    """The same network returning a dict and returning its logits, both trained on the same data: (x, y, dataset,
    dict model, plain model, its run, the plain run)."""
    x, y = _blobs()
    ds = ArrayDataset(x, y)
    torch.manual_seed(0)
    mine = DictNet()
    torch.manual_seed(0)
    plain = Plain()
    return (x, y, ds, mine, plain, dp.train(mine, ds, checkpoint_epochs=epochs, **RECIPE),
            dp.train(plain, ds, checkpoint_epochs=epochs, **RECIPE))


def test_train_predict_and_scores_read_the_logits_field():
    x, y, ds, mine, plain, run, ref = _twins([1, 3])
    assert run.history[-1]["loss"] == pytest.approx(ref.history[-1]["loss"], rel=1e-6)
    assert isinstance(mine(x[:2]), dict)                     # the hook was for the call only
    assert dp.accuracy(mine, ds) == dp.accuracy(plain, ds)
    s = dp.score(mine, run.checkpoints, ds, method="moso")
    np.testing.assert_allclose(s, dp.score(plain, ref.checkpoints, ds, method="moso"), rtol=1e-5, atol=1e-9)
    mine.eval()
    assert check_kernels(mine.double(), x[:6].double(), torch.as_tensor(y[:6]))["max_rel_error"] < 1e-8


def test_dynamic_pruner_takes_the_output_itself():
    x, y = _blobs()
    model = DictNet()
    pruner = dp.DynamicPruner(ArrayDataset(x, y), model=model, epochs=2, ratio=0.5, method="dynamic", seed=0)
    pruner.set_epoch(0)
    idx = torch.arange(32)
    out = model(x[:32])
    loss = pruner.update(idx, F.cross_entropy(out["logits"], torch.as_tensor(y[:32]), reduction="none"),
                         logits=out, targets=torch.as_tensor(y[:32]))
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_an_output_without_logits_is_named():
    x, y = _blobs()
    with pytest.raises(TypeError, match=r"returned tuple of Tensor\(2, 3\), Tensor\(2, 8\).*'logits' field"):
        dp.prune(TupleNet, ArrayDataset(x, y), ratio=0.5, **RECIPE)
    with pytest.raises(TypeError, match=r"dict with keys \['feat'\]"):
        logits_of({"feat": torch.zeros(2, 3)})


def test_compiled_model_is_pruned_as_its_original_module():
    x, y = _blobs()
    torch.manual_seed(0)
    plain = _mlp()
    compiled = torch.compile(plain, backend="eager")
    assert isinstance(compiled, nn.Module) and compiled is not plain
    ref = dp.prune(plain, ArrayDataset(x, y), ratio=0.5, **RECIPE)
    res = dp.prune(compiled, ArrayDataset(x, y), ratio=0.5, **RECIPE)
    np.testing.assert_array_equal(res.keep, ref.keep)


@pytest.mark.parametrize("shift, classes, match", [
    (1, 3, "labels run from 1 to 3 but the model has 3 class outputs: labels look numbered from 1"),
    (0, 2, "labels run from 0 to 2 but the model has 2 class outputs: the head needs at least 3 outputs"),
    (-1, 3, "labels run from -1 to 1.*unlabelled"),
])
def test_labels_that_do_not_fit_the_head_fail_before_training(shift, classes, match):
    x, y = _blobs()
    calls = []

    def make():
        calls.append(1)
        return _mlp(classes=classes)

    with pytest.raises(ValueError, match=match):
        dp.prune(make, ArrayDataset(x, y + shift), ratio=0.5, **RECIPE)
    assert len(calls) == 1                                   # the probe's model only: no surrogate was built
    with pytest.raises(ValueError, match=match):
        dp.train(_mlp(classes=classes), ArrayDataset(x, y + shift), **RECIPE)


def test_given_checkpoints_of_a_hugging_face_style_model():
    x, y, ds, mine, plain, run, ref = _twins([1, 2, 3])
    res = dp.prune(mine, ds, ratio=0.5, checkpoints=run.checkpoints)
    np.testing.assert_array_equal(res.keep, dp.prune(plain, ds, ratio=0.5, checkpoints=ref.checkpoints).keep)
    assert isinstance(mine(x[:2]), dict)
