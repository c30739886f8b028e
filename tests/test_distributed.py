"""torch.distributed on the CPU (gloo, 2 processes): sharded scoring equals one process."""

import os

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from dataprune import moso
from dataprune.data import ArrayDataset
from dataprune.distributed import shutdown
from dataprune.methods.gradnorm import grand_score
from dataprune.models import SmallCNN
from dataprune.train import train

N = 53  # not a multiple of the world size: no padding, no duplicates, nothing lost


def _setup():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 1, 12, 12, generator=g)
    y = torch.randint(0, 10, (N,), generator=g).numpy()
    ds = ArrayDataset(x, y)
    torch.manual_seed(0)
    model = SmallCNN(1, 10)
    res = train(model, ds, epochs=3, batch_size=16, checkpoint_epochs=[1, 2, 3])
    torch.manual_seed(0)
    return SmallCNN(1, 10), res.checkpoints, ds


def _scores(model, cks, ds):
    return {"moso": moso.score(model, cks, ds, batch_size=8),
            "moso_align": moso.score(model, cks, ds, batch_size=8, form="alignment"),
            "moso_last": moso.score(model, cks, ds, batch_size=8, params="last_layer"),
            "grand": grand_score(model, cks, ds, batch_size=8, use="all")}


def _leave(rank, out_dir, ok):
    """Leave the process group, then end the process without the interpreter's teardown. Seen once in ~10 CI
    runs (and not in ~290 spawns here, 4 at a time): a rank ended with SIGABRT ("terminate called without an active
    exception") after its results were written; gloo's threads can still hold tensors when Python finalises
    (pytorch/pytorch#179291). The stage file says how far each rank got when a spawn fails."""
    _stage(rank, out_dir, "leaving")
    shutdown(ok)
    _stage(rank, out_dir, "left")
    if ok:
        os._exit(0)


def _stage(rank, out_dir, what):
    with open(os.path.join(out_dir, f"stage{rank}"), "a") as f:
        f.write(what + "\n")


def _spawn(worker, args, out_dir):
    try:
        mp.spawn(worker, args=args, nprocs=2, join=True)
    except mp.ProcessExitedException as e:
        stages = {r: open(os.path.join(out_dir, f"stage{r}")).read().split() if os.path.exists(
            os.path.join(out_dir, f"stage{r}")) else [] for r in (0, 1)}
        raise AssertionError(f"a rank died: {e}; stages reached per rank: {stages}") from e


def _worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    model, cks, ds = _setup()          # the same checkpoints as the single-process reference
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    _stage(rank, out_dir, "joined")
    ok = False
    try:
        got = _scores(model, cks, ds)
        np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **got)
        # DDP training: every rank ends with the same weights
        torch.manual_seed(1)
        net = nn.Sequential(nn.Flatten(), nn.Linear(144, 10))
        res = train(net, ds, epochs=2, batch_size=16, checkpoint_epochs=[2], seed=5)
        flat = torch.cat([v.reshape(-1) for v in res.checkpoints[0].state.values()]).numpy()
        np.save(os.path.join(out_dir, f"ddp{rank}.npy"), flat)
        ok = True
    finally:
        _leave(rank, out_dir, ok)


def test_two_gloo_processes_match_one(tmp_path):
    _spawn(_worker, (2, str(tmp_path / "init"), str(tmp_path)), str(tmp_path))
    model, cks, ds = _setup()
    ref = _scores(model, cks, ds)
    for rank in (0, 1):
        got = np.load(tmp_path / f"rank{rank}.npz")
        for name, r in ref.items():
            err = np.max(np.abs(got[name] - r)) / np.max(np.abs(r))
            assert got[name].shape == (N,) and err <= 1e-6, f"{name} on rank {rank}: relative error {err:.1e}"
    assert np.array_equal(np.load(tmp_path / "ddp0.npy"), np.load(tmp_path / "ddp1.npy"))


def test_cli_score_under_torchrun_matches_one_process(tmp_path):
    import subprocess
    import sys

    from dataprune import cli

    data = ["--dataset", "digits", "--train-limit", "201"]
    ck = str(tmp_path / "ck.pt")
    assert cli.main(["train", *data, "--epochs", "2", "--checkpoints", "1,2", "--out", ck, "--quiet"]) == 0
    one = str(tmp_path / "one.npy")
    assert cli.main(["score", *data, "--checkpoints-file", ck, "--out", one, "--quiet"]) == 0
    two = str(tmp_path / "two.npy")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--standalone", "-m", "dataprune", "score", *data, "--checkpoints-file", ck,
                          "--out", two, "--quiet"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    a, b = np.load(one), np.load(two)
    assert np.max(np.abs(a - b)) / np.max(np.abs(a)) <= 1e-6
    assert not os.path.exists(two + ".parts")


def _pruned_run(method):
    """dp.train with a DynamicPruner on N samples; returns each epoch's kept set and the final scores."""
    from dataprune.dynamic import DynamicPruner

    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 6, generator=g)
    y = (x[:, 0] > 0).long().numpy()
    ds = ArrayDataset(x, y)
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    pruner = DynamicPruner(ds, model=net, epochs=8, ratio=0.5, method=method, seed=4)
    kept = []
    draw = pruner._draw

    def recording(rng):
        out = draw(rng)
        kept.append(sorted(out[0].tolist()))
        return out

    pruner._draw = recording
    train(net, ds, epochs=8, batch_size=16, lr=0.1, seed=5, pruner=pruner)
    scores = pruner.scores
    pruner.close()
    state = {f"state_{k}": v.numpy() for k, v in pruner.state_dict().items() if isinstance(v, torch.Tensor)}
    return kept, np.where(np.isfinite(scores), scores, 0.0), pruner.saved_fraction, state


def _pruner_worker(rank, world, init_file, out_dir, method):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    _stage(rank, out_dir, f"joined-{method}")
    ok = False
    try:
        kept, scores, saved, state = _pruned_run(method)
        np.savez(os.path.join(out_dir, f"{method}{rank}.npz"), scores=scores, saved=saved, **state,
                 kept=np.array([np.pad(k, (0, N - len(k)), constant_values=-1) for k in kept]))
        ok = True
    finally:
        _leave(rank, out_dir, ok)


def test_dynamic_pruning_under_two_gloo_processes_matches_one(tmp_path):
    for method in ("infobatch", "random_dynamic", "dynamic"):
        _spawn(_pruner_worker, (2, str(tmp_path / f"init-{method}"), str(tmp_path), method), str(tmp_path))
        kept, scores, saved, state = _pruned_run(method)
        ref = np.array([np.pad(k, (0, N - len(k)), constant_values=-1) for k in kept])
        for rank in (0, 1):
            got = np.load(tmp_path / f"{method}{rank}.npz")
            assert np.array_equal(got["kept"], ref), f"{method}, rank {rank}: another kept set in some epoch"
            assert float(got["saved"]) == saved
            err = np.max(np.abs(got["scores"] - scores)) / np.max(np.abs(scores))
            assert err <= 1e-6, f"{method}, rank {rank}: scores differ by {err:.1e}"
            for key, value in state.items():        # the state to save for a resume: any rank's is the run's
                a, b = np.nan_to_num(got[key].astype(np.float64)), np.nan_to_num(value.astype(np.float64))
                assert np.max(np.abs(a - b), initial=0) <= 1e-6 * max(np.max(np.abs(b), initial=0), 1e-12), \
                    f"{method}, rank {rank}: {key} differs from one process's"


class _NcclAlone:
    """torch.distributed as dataprune sees it under a default group of NCCL alone: host data (CPU tensors,
    pickled objects) on the default group fails as NCCL fails; a group passed explicitly (the gloo one
    dataprune makes for host data) works."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def get_backend(self, group=None):
        return "nccl" if group is None else self._real.get_backend(group)

    def all_reduce(self, tensor, *args, group=None, **kw):
        if group is None and tensor.device.type == "cpu":
            raise RuntimeError("No backend type associated with device type cpu")
        return self._real.all_reduce(tensor, *args, group=group, **kw)

    def all_gather_object(self, out, obj, group=None):
        if group is None:
            raise RuntimeError("all_gather_object on the NCCL group without a device set")
        return self._real.all_gather_object(out, obj, group=group)

    def broadcast_object_list(self, box, src=0, group=None, **kw):
        if group is None:
            raise RuntimeError("broadcast_object_list on the NCCL group without a device set")
        return self._real.broadcast_object_list(box, src=src, group=group, **kw)


def _nccl_alone_worker(rank, world, init_file, out_dir):
    import dataprune.distributed as dpdist

    torch.set_num_threads(1)
    model, cks, ds = _setup()
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    dpdist.dist = _NcclAlone(dist)                      # dataprune's view only: DDP itself runs on gloo
    _stage(rank, out_dir, "joined-nccl")
    ok = False
    try:
        got = _scores(model, cks, ds)
        kept, scores, saved, _ = _pruned_run("dynamic")
        np.savez(os.path.join(out_dir, f"nccl{rank}.npz"), scores=scores, saved=saved,
                 kept=np.array([np.pad(k, (0, N - len(k)), constant_values=-1) for k in kept]),
                 **{f"static_{k}": v for k, v in got.items()}, host_group=dpdist.host_group() is not None)
        ok = True
    finally:
        dpdist.dist = dist
        _leave(rank, out_dir, ok)


def test_host_data_goes_over_a_gloo_group_where_the_default_group_is_nccl_alone(tmp_path):
    """On GPUs torchrun joins NCCL, which reduces device tensors only: the pruner's per-epoch sums (numpy on
    the host), the scorer's additivity check and the gathered per-sample results used the default group and
    would fail there. They go over a gloo group made for host data; results equal one process's."""
    _spawn(_nccl_alone_worker, (2, str(tmp_path / "init-nccl"), str(tmp_path)), str(tmp_path))
    kept, scores, saved, _ = _pruned_run("dynamic")
    ref_static = _scores(*_setup())
    ref = np.array([np.pad(k, (0, N - len(k)), constant_values=-1) for k in kept])
    for rank in (0, 1):
        got = np.load(tmp_path / f"nccl{rank}.npz")
        assert bool(got["host_group"])
        assert np.array_equal(got["kept"], ref) and float(got["saved"]) == saved
        assert np.max(np.abs(got["scores"] - scores)) <= 1e-6 * np.max(np.abs(scores))
        for k, v in ref_static.items():
            assert np.max(np.abs(got[f"static_{k}"] - v)) <= 1e-6 * np.max(np.abs(v)), k
