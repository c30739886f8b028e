"""What pruning while training costs beyond the passes it skips: training CPU time of each dynamic method
over the full-data run, measured side by side in one process (rounds interleaved, the minimum of each kept),
against the share of per-sample passes skipped; and where the remaining time goes (cProfile of ``dynamic``).

    python benchmarks/dynamic_overhead.py --model cnn --train-limit 1500 --ratio 0.5 --rounds 2

The gap (passes skipped - CPU time saved) is the overhead of the pruner: its ``update`` per batch (weighted
loss, the head records of ``dynamic``) and its per-epoch draw and terms.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats

import torch

import dataprune as dp
from dataprune.data import load_dataset
from dataprune.dynamic import DynamicPruner
from dataprune.models import build_model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--train-limit", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, train_limit=args.train_limit)
    train = data.train
    shape = tuple(train[0][0].shape)

    def run(method):
        torch.manual_seed(0)
        model = build_model(args.model, data.num_classes, shape)
        pruner = None if method is None else DynamicPruner(train, model=model, epochs=args.epochs,
                                                           ratio=args.ratio, method=method, seed=0)
        res = dp.train(model, train, epochs=args.epochs, batch_size=32, lr=0.05, seed=0, pruner=pruner,
                       progress=False)
        return res.cpu_seconds, (pruner.saved_fraction if pruner else 0.0)

    methods = [None, "infobatch", "random_dynamic", "dynamic"]
    times = {m: [] for m in methods}
    saved = {}
    for _ in range(args.rounds):
        for m in methods:
            t, s = run(m)
            times[m].append(t)
            saved[m] = s
    full = min(times[None])
    print(f"{args.dataset} ({len(train)} samples), {args.model}, {args.epochs} epochs, ratio {args.ratio}; "
          f"full-data run {full:.2f} s CPU (min of {args.rounds})")
    for m in methods[1:]:
        ratio = min(times[m]) / full
        print(f"  {m:15s} CPU time / full {ratio:.3f}   passes skipped {saved[m]:.3f}   "
              f"gap {saved[m] - (1 - ratio):+.3f}")
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
