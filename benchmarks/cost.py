"""What each step of a pruning plan costs, in training epochs (the constants behind ``pipeline.COST``).

For a model and data set, times side by side in one process (interleaved rounds, best of
``--repeat``, one thread unless ``--threads``): one training epoch with the recipe's batch
size (the unit), an eval-mode forward pass over the data, class-wise MoSo at one checkpoint
over all parameters and over the classifier head, and the bookkeeping added to an epoch by
fused head scoring and by the training record (DynamicsRecorder). Prints each as a multiple
of the training epoch.

    python benchmarks/cost.py --dataset mnist5k --models cnn,mlp --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def measure(name, split, args) -> dict:
    """Best-of-``args.repeat`` seconds of every step for model ``name``, interleaved."""
    from dataprune.methods.dynamics import DynamicsRecorder
    from dataprune.methods.fused import FusedClasswise
    from dataprune.methods.moso_variants import classwise_score
    from dataprune.models import build_model
    from dataprune.train import TrainConfig, predict, train

    ds = split.train

    def make():
        return build_model(name, split.num_classes, split.input_shape)

    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=0.05)
    ck = train(make(), ds, config=cfg, checkpoint_epochs=[1]).checkpoints   # a trained-ish checkpoint
    steps = {
        "epoch": lambda: train(make(), ds, config=cfg),
        "forward": lambda: predict(make(), ds, batch_size=512),
        "all_params": lambda: classwise_score(make(), ck, ds),
        "last_layer": lambda: classwise_score(make(), ck, ds, params="last_layer"),
        "epoch+fused": lambda: train(make(), ds, config=cfg, callbacks=[FusedClasswise(ds, [1])]),
        "epoch+record": lambda: train(make(), ds, config=cfg, callbacks=[DynamicsRecorder(len(ds), 1)]),
    }
    best = {k: float("inf") for k in steps}
    for _ in range(args.repeat):
        for k, fn in steps.items():            # interleaved: load on the machine hits every step alike
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--models", default="cnn,mlp")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from dataprune.data import load_dataset
    from dataprune.utils import tune_cpu_allocator

    tune_cpu_allocator()
    split = load_dataset(args.dataset)
    out = {}
    for name in args.models.split(","):
        best = measure(name, split, args)
        unit = best["epoch"]
        ratios = {"forward": best["forward"] / unit, "all_params": best["all_params"] / unit,
                  "head": best["last_layer"] / unit, "fused": (best["epoch+fused"] - unit) / unit,
                  "record": (best["epoch+record"] - unit) / unit}
        out[name] = {"seconds": best, "in_epochs": ratios}
        print(f"{args.dataset} / {name}: one training epoch {unit:.2f} s (batch {args.batch_size}, {len(split.train)} "
              f"samples, {args.threads} thread(s)); in epochs: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    print("pipeline.COST takes the largest value measured over the models for each step (expected costs must "
          "not underestimate what a plan costs)")


if __name__ == "__main__":
    main()
