"""A dynamic run's scores as a static subset for the next runs, against the static default and random.

The user trained once with a DynamicPruner; its scores come free with that run. For the next runs they
select a static subset from them (``dp.select(pruner.scores, ratio, labels=..., policy="auto",
**pruner.evidence)``) and retrain. Compared at the same ratio with the recommended default (``dp.prune``,
whose surrogate and scoring cost about two training runs here) and with random pruning; validation
accuracy only (no test set read), on the validation samples whose label noise left alone.

    python benchmarks/dynamic_to_static.py --seeds 0,1 --noise 0,0.2 --out docs/results/dynamic/to-static.jsonl
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

import dataprune as dp
from dataprune.data import load_dataset
from dataprune.evaluate import retrain
from dataprune.models import ModelFactory

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dynamic import clean_val, write_jsonl  # noqa: E402

RECIPE = {"epochs": 10, "batch_size": 32, "lr": 0.05}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-limit", type=int, default=2000)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--noise", default="0,0.2")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--dynamic-ratio", type=float, default=0.5)
    ap.add_argument("--out", default="runs/dynamic-to-static.jsonl")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    rows = []
    for noise in [float(v) for v in args.noise.split(",")]:
        split = load_dataset("mnist5k", label_noise=noise, train_limit=args.train_limit, val_split=0.2)
        val = clean_val(split)
        labels = np.asarray(split.train.targets)
        make = ModelFactory("cnn", split.num_classes, split.input_shape)
        for seed in [int(s) for s in args.seeds.split(",")]:
            torch.manual_seed(seed)
            model = make()
            pruner = dp.DynamicPruner(split.train, model=model, epochs=RECIPE["epochs"], ratio=args.dynamic_ratio,
                                      method="dynamic", seed=seed)
            dp.train(model, split.train, seed=seed, pruner=pruner, **RECIPE)
            pruner.close()
            subsets = {"from dynamic scores": dp.select(pruner.scores, args.ratio, labels=labels, policy="auto",
                                                        seed=seed, **pruner.evidence),
                       "random": dp.select(np.random.default_rng(seed).random(len(labels)), args.ratio,
                                           labels=labels, seed=seed)}
            t0 = time.process_time()
            res = dp.prune(make, split.train, ratio=args.ratio, seed=seed, **RECIPE)
            subsets["recommended (dp.prune)"] = res.keep
            prune_cpu = time.process_time() - t0
            for name, keep in subsets.items():
                out = retrain(make, split.train, val, keep, seed=seed, **RECIPE)
                row = {"noise": noise, "seed": seed, "subset": name, "val_acc_clean_labels": out["test_acc"],
                       "n_kept": len(keep), "extra_cpu_s": prune_cpu if name.startswith("recommended") else 0.0}
                if split.flipped is not None:
                    row["kept_mislabelled"] = float(split.flipped[keep].mean())
                rows.append(row)
                print(f"noise {noise:g} seed {seed} {name:>24}: val {100 * row['val_acc_clean_labels']:.1f}"
                      + (f", kept mislabelled {100 * row['kept_mislabelled']:.1f}%" if "kept_mislabelled" in row
                         else ""), flush=True)
    write_jsonl(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
