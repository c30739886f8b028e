"""Interrupted scoring runs resume exactly; damaged partial results are recomputed, never used."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dataprune import moso
from dataprune.data import ArrayDataset
from dataprune.io import PartialResultWarning
from dataprune.models import SmallCNN

ARGS = ["score", "--method", "moso", "--dataset", "mnist5k", "--train-limit", "1000", "--epochs", "4", "--checkpoints",
        "1,2,3,4", "--quiet"]


def _run(out, extra=()):
    return subprocess.run([sys.executable, "-m", "dataprune", *ARGS, "--out", str(out), *extra],
                          capture_output=True, text=True)


def _kill_when(out, marker, timeout=300):
    """Start the command and SIGKILL it as soon as ``marker`` exists."""
    proc = subprocess.Popen([sys.executable, "-m", "dataprune", *ARGS, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not os.path.exists(marker):
        if proc.poll() is not None or time.time() - t0 > timeout:
            proc.kill()
            pytest.fail(f"the run ended before {marker} appeared")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode


@pytest.mark.slow
def test_sigkill_then_same_command_gives_identical_scores(tmp_path):
    ref_out = tmp_path / "ref.npy"
    assert _run(ref_out).returncode == 0
    reference = np.load(ref_out)
    assert not os.path.exists(str(ref_out) + ".parts")        # cleaned up after success

    out = tmp_path / "scores.npy"
    parts = str(out) + ".parts"
    # killed once after the surrogate was saved, once after the first checkpoint's partial result
    assert _kill_when(out, os.path.join(parts, "surrogate-part0.pt")) == -signal.SIGKILL
    assert _kill_when(out, os.path.join(parts, "moso-part0", "ckpt-0000.npz.json")) == -signal.SIGKILL
    assert not os.path.exists(out)
    done = _run(out)
    assert done.returncode == 0, done.stderr
    assert np.array_equal(np.load(out), reference)


def test_corrupt_or_stale_partials_are_recomputed(tmp_path):
    g = torch.Generator().manual_seed(0)
    ds = ArrayDataset(torch.randn(40, 1, 12, 12, generator=g), torch.randint(0, 10, (40,), generator=g).numpy())
    torch.manual_seed(0)
    model = SmallCNN(1, 10)
    cks = [(model.state_dict(), 0.1), ({k: v * 1.1 for k, v in model.state_dict().items()}, 0.05)]
    work = tmp_path / "parts"
    first = moso.score(model, cks, ds, work_dir=str(work))
    part = work / "ckpt-0001.npz"
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])                   # truncated by a crash or a bad copy
    with pytest.warns(PartialResultWarning, match="ckpt-0001.npz is unusable"):
        again = moso.score(model, cks, ds, work_dir=str(work))
    assert np.array_equal(first, again)
    # reused when intact: computing is not even attempted
    import dataprune.methods.moso as mm
    orig = mm.checkpoint_terms
    mm.checkpoint_terms = lambda *a, **k: pytest.fail("a finished checkpoint was recomputed")
    try:
        assert np.array_equal(moso.score(model, cks, ds, work_dir=str(work)), first)
    finally:
        mm.checkpoint_terms = orig
    # other weights under the same file names: not reused
    other = [(cks[1][0], 0.1), (cks[0][0], 0.05)]
    assert np.allclose(moso.score(model, other, ds, work_dir=str(work)), moso.score(model, other, ds))


def test_a_surrogate_killed_part_way_resumes_from_its_last_saved_epoch(tmp_path, monkeypatch):
    """dp.prune with a work_dir: the surrogate's training state is kept (here after every epoch); killed in epoch 4
    of 6, the same call trains epochs 4-6 only and gives the uninterrupted run's scores; the progress file goes
    once the surrogate is saved."""
    import torch.nn.functional as F

    import dataprune as dp

    monkeypatch.setattr(sys.modules["dataprune.train"], "RESUME_EVERY_S", 0.0)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(150) % 3
    ds = ArrayDataset(torch.randn(150, 6, generator=g) + 2 * torch.nn.functional.one_hot(y, 6).float(), y.numpy())
    calls = {"n": 0, "stop_at": None}

    def loss_fn(z, t):
        calls["n"] += 1
        if calls["n"] == calls["stop_at"]:
            raise KeyboardInterrupt
        return F.cross_entropy(z, t, reduction="none")

    def make():
        return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

    kw = dict(ratio=0.5, epochs=6, batch_size=16, loss_fn=loss_fn)
    whole = dp.prune(make, ds, work_dir=str(tmp_path / "a"), **kw)
    whole_calls = calls["n"]
    calls.update(n=0, stop_at=30)                            # part way through the surrogate's training
    with pytest.raises(KeyboardInterrupt):
        dp.prune(make, ds, work_dir=str(tmp_path / "b"), **kw)
    progress = tmp_path / "b" / "surrogate-part0.pt.progress"
    saved = torch.load(progress, weights_only=True)
    assert saved["epoch"] >= 2
    calls.update(n=0, stop_at=None)
    resumed = dp.prune(make, ds, work_dir=str(tmp_path / "b"), **kw)
    assert calls["n"] == whole_calls - saved["step"]          # the saved epochs' steps are not trained again
    assert np.array_equal(whole.scores, resumed.scores) and np.array_equal(whole.keep, resumed.keep)
    assert not progress.exists()
