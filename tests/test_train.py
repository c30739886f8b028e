"""The training loop: schedule, checkpoints, budgets, callbacks, determinism."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from dataprune import choose_epochs, load_checkpoints, save_checkpoints
from dataprune.data import ArrayDataset
from dataprune.evaluate import retrain
from dataprune.io import OutputExistsError
from dataprune.train import TrainConfig, cosine_lr, train


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 5, generator=g) + 4 * nn.functional.one_hot(y, 5).float()
    return ArrayDataset(x, y.numpy())


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))


def test_checkpoints_hold_weights_lr_and_epoch():
    ds = _data()
    res = train(_model(), ds, epochs=4, batch_size=32, lr=0.1, checkpoint_epochs=[0, 2, 4])
    assert [c.epoch for c in res.checkpoints] == [0, 2, 4]
    assert [round(c.lr, 6) for c in res.checkpoints] == [0.1, round(cosine_lr(0.1, 1, 4), 6),
                                                          round(cosine_lr(0.1, 3, 4), 6)]
    final = res.model.state_dict()
    assert all(torch.equal(final[k].cpu(), res.checkpoints[-1].state[k]) for k in final)
    assert not torch.equal(res.checkpoints[0].state["0.weight"], res.checkpoints[1].state["0.weight"])
    assert res.history[-1]["train_acc"] > 0.9


def test_same_seed_same_run():
    ds = _data()
    a = train(_model(), ds, epochs=3, batch_size=16, seed=5, augment=None)
    b = train(_model(), ds, epochs=3, batch_size=16, seed=5)
    c = train(_model(), ds, epochs=3, batch_size=16, seed=6)
    sa, sb, sc = (r.model.state_dict() for r in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_step_budget_trains_as_many_steps_as_full_data():
    ds = _data(n=100)
    full = retrain(_model, ds, ds, None, epochs=3, batch_size=10)
    by_epochs = retrain(_model, ds, ds, np.arange(25), epochs=3, batch_size=10)
    by_steps = retrain(_model, ds, ds, np.arange(25), epochs=3, batch_size=10, length="steps")
    assert full["steps"] == 30 and by_epochs["steps"] == 9 and by_steps["steps"] == 30
    assert by_steps["length"] == "steps"


def test_callbacks_see_every_sample_every_epoch():
    ds = _data(n=50)
    seen = []

    class Recorder:
        def on_batch_end(self, *, epoch, step, indices, logits, targets):
            seen.append((epoch, indices.copy()))
            assert logits.shape == (len(indices), 3)

    train(_model(), ds, epochs=2, batch_size=16, callbacks=[Recorder()], indices=np.arange(10, 50))
    for e in (1, 2):
        idx = np.concatenate([i for ep, i in seen if ep == e])
        assert sorted(idx.tolist()) == list(range(10, 50))


@pytest.mark.parametrize("n", [17, 33, 49])
def test_singleton_last_batch_is_merged(n):
    # n = k * 16 + 1: the last sample joins the previous batch; every sample is seen once per epoch
    # (the merge once overwrote the wrong batch: one batch lost, another seen twice; n=17 crashed)
    seen = []

    class Recorder:
        def on_batch_end(self, *, epoch, step, indices, logits, targets):
            seen.append(indices.copy())

    res = train(_model(), _data(n=n), epochs=1, batch_size=16, callbacks=[Recorder()])
    assert res.steps == n // 16
    assert sorted(np.concatenate(seen).tolist()) == list(range(n))
    assert len(seen[-1]) == 17


def test_choose_epochs():
    assert choose_epochs(10, every=3) == [3, 6, 9]
    assert choose_epochs(10, count=5) == [2, 4, 6, 8, 10]
    assert choose_epochs(10, epochs=[5, 1, 0]) == [0, 1, 5]
    r = choose_epochs(10, count=4, random=True, seed=1)
    assert len(r) == 4 and r == choose_epochs(10, count=4, random=True, seed=1)
    with pytest.raises(ValueError, match="outside"):
        choose_epochs(10, epochs=[11])
    with pytest.raises(ValueError, match="exactly one"):
        choose_epochs(10, every=2, count=3)


def test_checkpoint_files_round_trip_and_are_not_overwritten(tmp_path):
    res = train(_model(), _data(), epochs=2, batch_size=32, checkpoint_epochs=[1, 2])
    path = str(tmp_path / "ck.pt")
    save_checkpoints(res.checkpoints, path, meta={"note": "x"})
    back, meta = load_checkpoints(path)
    assert meta == {"note": "x"} and [c.epoch for c in back] == [1, 2]
    assert torch.equal(back[1].state["2.bias"], res.checkpoints[1].state["2.bias"])
    with pytest.raises(OutputExistsError):
        save_checkpoints(res.checkpoints, path)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable dataprune checkpoint"):
        load_checkpoints(str(tmp_path / "junk.pt"))


def test_config_validation():
    with pytest.raises(TypeError, match="unknown training option.*epochz"):
        train(_model(), _data(), epochz=3)
    with pytest.raises(ValueError, match="lr must be > 0"):
        TrainConfig(lr=0)


class _Killer:
    """A callback with a record (so the run may resume) that ends the process-like run at an epoch's end."""

    def __init__(self, at=None):
        self.at, self.seen, self.ran = at, [], []          # ran: the epochs this process trained (not saved)

    def on_epoch_end(self, *, epoch, model=None, lr=None):
        self.seen.append(epoch)
        self.ran.append(epoch)
        if epoch == self.at:
            raise KeyboardInterrupt

    def state_dict(self):
        return {"seen": list(self.seen)}

    def load_state_dict(self, state):
        self.seen = list(state["seen"])


def test_a_killed_run_resumes_from_its_saved_epoch_and_ends_as_the_uninterrupted_run(tmp_path, monkeypatch):
    """Dropout, augmentation and momentum: every random generator and the optimizer's state come back; the
    checkpoints, history, step count, the callbacks' records and the final weights equal the run never stopped."""
    import sys

    from dataprune.methods.dynamics import DynamicsRecorder

    monkeypatch.setattr(sys.modules["dataprune.train"], "RESUME_EVERY_S", 0.0)                 # write after every epoch
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (90,), generator=g)
    ds = ArrayDataset(torch.randn(90, 1, 8, 8, generator=g) + y.view(-1, 1, 1, 1).float(), y.numpy())

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))

    kw = dict(epochs=6, batch_size=16, lr=0.1, momentum=0.9, augment="flip_crop", checkpoint_epochs=[1, 3, 6], seed=4)
    whole_rec, whole_kill = DynamicsRecorder(90), _Killer()
    whole = train(model(), ds, callbacks=[whole_rec, whole_kill], **kw)
    path, key = str(tmp_path / "progress.pt"), {"run": "a"}
    with pytest.raises(KeyboardInterrupt):
        train(model(), ds, callbacks=[DynamicsRecorder(90), _Killer(at=4)], resume_file=path, resume_key=key, **kw)
    assert torch.load(path, weights_only=True)["epoch"] == 3                # saved after epoch 3, killed in 4
    rec, kill = DynamicsRecorder(90), _Killer()
    resumed = train(model(), ds, callbacks=[rec, kill], resume_file=path, resume_key=key, **kw)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [c.epoch for c in resumed.checkpoints] == [1, 3, 6]
    for a, b in zip(whole.checkpoints, resumed.checkpoints, strict=True):
        assert a.lr == b.lr and all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    assert [h["loss"] for h in whole.history] == [h["loss"] for h in resumed.history]
    assert (whole.steps, whole.samples_seen) == (resumed.steps, resumed.samples_seen)
    assert kill.seen == whole_kill.seen == [1, 2, 3, 4, 5, 6] and kill.ran == [4, 5, 6]
    for field in ("correct", "margin", "change"):
        np.testing.assert_array_equal(whole_rec.history().arrays()[field], rec.history().arrays()[field])
    # another run's file (another key) is not read: the run starts from epoch 1
    other = _Killer()
    train(model(), ds, callbacks=[DynamicsRecorder(90), other], resume_file=path, resume_key={"run": "b"}, **kw)
    assert other.ran == [1, 2, 3, 4, 5, 6]
