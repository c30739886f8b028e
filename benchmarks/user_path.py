"""The user's path, as a user walks it: a Hugging Face dataset, their own model, loss and loop.

sklearn digits (8x8) as a ``datasets.Dataset`` built in memory (``pixel_values``, ``label``;
``set_format("torch")``), 20% of the labels flipped at random (noise seed = the run's seed), every
fifth image held back as the test set (true labels). The model is the user's own: an MLP whose
classifier head has no bias. The loss is the user's own: cross-entropy with label smoothing 0.1,
per sample. The recipe: 30 epochs, batch 32, lr 0.05. ``dp.prune`` keeps half; then the kept half, a
random half and the full training set are each trained with the user's own loop (plain SGD with
momentum, not dataprune's trainer) and tested once.

    python benchmarks/user_path.py --seeds 0 1 2
    python benchmarks/user_path.py --seeds 0 1 2 --budget 0.1      # a budgeted plan on the same path
    python benchmarks/user_path.py --seeds 0 1 --noise 0.4 --noise-kind pair   # a systematic flip

Prints one JSON line per seed: the share of wrong labels among the kept samples, the evidence
epochs, the pruning cost, and the three test accuracies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import dataprune as dp  # noqa: E402

EPOCHS, BATCH, LR = 30, 32, 0.05


class Net(nn.Module):
    """The user's model: a bias-free classifier head."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU())
        self.head = nn.Linear(128, 10, bias=False)

    def forward(self, x):
        return self.head(self.body(x))


def loss_fn(logits, targets):
    return F.cross_entropy(logits, targets, reduction="none", label_smoothing=0.1)


def own_loop(x, y, x_test, y_test, seed, epochs=EPOCHS):
    """The user's own training loop; test accuracy."""
    torch.manual_seed(seed)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for b in range(0, len(x), BATCH):
            j = order[b:b + BATCH]
            opt.zero_grad()
            loss_fn(model(x[j]), y[j]).mean().backward()
            opt.step()
    with torch.no_grad():
        return float((model(x_test).argmax(1) == y_test).float().mean())


def main():
    import datasets
    from sklearn.datasets import load_digits

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--noise-kind", choices=["symmetric", "pair"], default="symmetric",
                    help="symmetric: a flipped label goes to any other class; pair: class c -> c + 1")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--budget", type=float, help="a cost budget for the pruning (default: the full plan)")
    ap.add_argument("--epochs", type=int, default=EPOCHS, help="the recipe's epochs (default %(default)s)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)[:, None]
    test = np.arange(len(d.target)) % 5 == 0
    x_test, y_test = torch.tensor(images[test]), torch.tensor(d.target[test])
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        y = d.target[~test].copy()
        flipped = rng.random(len(y)) < args.noise
        shift = rng.integers(1, 10, flipped.sum()) if args.noise_kind == "symmetric" else 1
        y[flipped] = (y[flipped] + shift) % 10
        hf = datasets.Dataset.from_dict({"pixel_values": images[~test], "label": y})
        hf.set_format("torch")
        t0 = time.perf_counter()
        res = dp.prune(Net, hf, ratio=args.ratio, seed=seed, epochs=args.epochs, batch_size=BATCH, lr=LR,
                       loss_fn=loss_fn, budget=args.budget)
        seconds = time.perf_counter() - t0
        x, yt = torch.tensor(images[~test]), torch.tensor(y)
        rand = np.sort(rng.choice(len(y), size=len(res.keep), replace=False))
        out = {"seed": seed, "kept": len(res.keep), "kept_wrong": round(float(flipped[res.keep].mean()), 4),
               "noise": round(float(flipped.mean()), 4),
               "evidence_epochs": res.decisions["evidence"]["evidence_epochs"],
               "credible": res.decisions["evidence"]["credible"], "plan": res.cost.get("plan"),
               "neighbours": res.decisions.get("neighbours"),
               "flips": res.decisions["evidence"].get("flips"), "cost_fraction": res.cost.get("cost_fraction"),
               "prune_seconds": round(seconds, 1),
               "test_kept": own_loop(x[res.keep], yt[res.keep], x_test, y_test, seed, args.epochs),
               "test_random": own_loop(x[rand], yt[rand], x_test, y_test, seed, args.epochs),
               "test_full": own_loop(x, yt, x_test, y_test, seed, args.epochs)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
