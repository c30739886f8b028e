"""What pruning while training costs beyond the passes it skips: training CPU and wall time of each dynamic
method over the full-data run, measured side by side in one process (rounds interleaved, the minimum of each
kept), against the share of per-sample passes skipped; and where the remaining time goes (cProfile of
``dynamic``).

    python benchmarks/dynamic_overhead.py --model cnn --train-limit 1500 --ratio 0.5 --rounds 2
    python benchmarks/dynamic_overhead.py --dataset digits --model mlp --train-limit 0 --rounds 5

The gap (passes skipped - CPU time saved) is the overhead of the pruner -- its ``update`` per batch (weighted
loss, the head records of ``dynamic``) and its per-epoch draw and terms -- plus what does not shrink with the
passes (the run's setup, the first batches); a static random subset of the same passes, trained without a
pruner, measures the latter, so "the pruner's own" is the run's time minus that subset's.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats

import numpy as np
import torch

import dataprune as dp
from dataprune.data import load_dataset
from dataprune.dynamic import DynamicPruner
from dataprune.models import build_model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--train-limit", type=int, default=1500, help="0: the whole training set")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, train_limit=args.train_limit or None)
    train = data.train
    shape = tuple(train[0][0].shape)

    def run(method, kept=None):
        """One training run: full data (method None), a dynamic method, or a static random subset of ``kept``
        samples (the same passes as a dynamic run, without a pruner: what the passes alone cost)."""
        torch.manual_seed(0)
        model = build_model(args.model, data.num_classes, shape)
        pruner = None if method in (None, "static") else DynamicPruner(train, model=model, epochs=args.epochs,
                                                                      ratio=args.ratio, method=method, seed=0)
        indices = None if kept is None else np.sort(np.random.default_rng(0).permutation(len(train))[:kept])
        res = dp.train(model, train, epochs=args.epochs, batch_size=32, lr=0.05, seed=0, pruner=pruner,
                       indices=indices, progress=False)
        return res.cpu_seconds, res.seconds, (pruner.saved_fraction if pruner else 0.0)

    methods = [None, "infobatch", "random_dynamic", "dynamic"]
    cpu = {m: [] for m in methods}
    wall = {m: [] for m in methods}
    ref = {m: [] for m in methods[1:]}
    saved = {}
    for _ in range(args.rounds):
        for m in methods:
            c, w, s = run(m)
            cpu[m].append(c)
            wall[m].append(w)
            saved[m] = s
            if m is not None:
                ref[m].append(run("static", kept=int(round(len(train) * (1 - s))))[0])
    full_cpu, full_wall = min(cpu[None]), min(wall[None])
    print(f"{args.dataset} ({len(train)} samples), {args.model}, {args.epochs} epochs, ratio {args.ratio}; "
          f"full-data run {full_cpu:.2f} s CPU, {full_wall:.2f} s wall (min of {args.rounds})")
    for m in methods[1:]:
        rc, rw, rs = min(cpu[m]) / full_cpu, min(wall[m]) / full_wall, min(ref[m]) / full_cpu
        print(f"  {m:15s} passes skipped {saved[m]:.3f}   CPU time / full {rc:.3f} (gap {saved[m] - (1 - rc):+.3f})"
              f"   wall / full {rw:.3f} (gap {saved[m] - (1 - rw):+.3f})   a static subset of the same passes "
              f"{rs:.3f}: the pruner's own {rc - rs:+.3f}")
    prof = cProfile.Profile()
    prof.enable()
    run("dynamic")
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(r"dynamic\.py|fused\.py", 6)
    print("where dynamic's own time goes (cumulative seconds):")
    print("\n".join(line for line in out.getvalue().splitlines() if "dynamic.py" in line or "fused.py" in line))


if __name__ == "__main__":
    main()
