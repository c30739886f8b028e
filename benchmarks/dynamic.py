"""Dynamic pruning against full data: validation accuracy, share of per-sample passes skipped, and training
time relative to the full-data run of the same recipe, measured side by side in one process.

    python benchmarks/dynamic.py --train-limit 2000 --epochs 10 --seeds 0 --noise 0,0.2 --out runs/dynamic.jsonl

Validation accuracy only (a stratified 20% of the training set held out): no test set is read. The validation
labels carry the training set's noise, so under noise the accuracy on the validation samples whose label
noise left alone (``val_acc_clean_labels``) is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

import dataprune as dp
from dataprune.data import load_dataset
from dataprune.models import build_model


def clean_val(split):
    """The validation samples whose label the noise left alone (the validation labels carry the training
    set's noise; on these they are the true labels)."""
    from torch.utils.data import Subset

    flipped = getattr(split, "val_flipped", None)
    if flipped is None:
        return split.val
    clean = Subset(split.val, np.flatnonzero(~flipped).tolist())
    clean.targets = np.asarray(split.val.targets)[~flipped]
    return clean


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def run(split, method, ratio, seed, epochs, batch_size, lr):
    torch.manual_seed(seed)
    model = build_model("cnn", split.num_classes, split.input_shape)
    pruner = None
    if method != "full":
        pruner = dp.DynamicPruner(split.train, model=model, epochs=epochs, ratio=ratio, method=method, seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    dp.train(model, split.train, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, pruner=pruner)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"method": method, "ratio": ratio if pruner else 0.0, "seed": seed, "wall_s": wall, "cpu_s": cpu,
           "val_acc": dp.accuracy(model, split.val),
           "saved_fraction": pruner.saved_fraction if pruner else 0.0}
    if getattr(split, "val_flipped", None) is not None:
        out["val_acc_clean_labels"] = dp.accuracy(model, clean_val(split))
    if pruner is not None:
        out["evidence"] = pruner.evidence_decision
        if split.flipped is not None and pruner.suspect.any():
            out["set_aside_precision"] = float(split.flipped[pruner.suspect].mean())
        pruner.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-limit", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--noise", default="0,0.2")
    ap.add_argument("--ratios", default="0.5")
    ap.add_argument("--methods", default="infobatch,dynamic,random_dynamic")
    ap.add_argument("--out", default="runs/dynamic.jsonl")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    rows = []
    for noise in [float(v) for v in args.noise.split(",")]:
        split = load_dataset("mnist5k", label_noise=noise, train_limit=args.train_limit, val_split=0.2)
        for seed in [int(s) for s in args.seeds.split(",")]:
            full = run(split, "full", 0.0, seed, args.epochs, 32, 0.05)
            rows.append({"noise": noise, **full, "time_vs_full": 1.0})
            for method in args.methods.split(","):
                for ratio in [float(r) for r in args.ratios.split(",")]:
                    r = run(split, method, ratio, seed, args.epochs, 32, 0.05)
                    rows.append({"noise": noise, **r, "time_vs_full": r["cpu_s"] / full["cpu_s"]})
            for r in rows[-1 - len(args.methods.split(",")) * len(args.ratios.split(",")):]:
                print(f"noise {noise:g} seed {seed} {r['method']:>14} r={r['ratio']:g}: val {100 * r['val_acc']:.1f}  "
                      f"(clean labels {100 * r.get('val_acc_clean_labels', r['val_acc']):.1f})  "
                      f"saved {r['saved_fraction']:.3f}  CPU time vs full {r['time_vs_full']:.2f}", flush=True)
    write_jsonl(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
