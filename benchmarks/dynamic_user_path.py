"""Pruning while training on the user's path: a folder of PNG files, the user's own model and loop.

sklearn digits written as 8-bit PNG files (``train/class_k/*.png``, every fifth image in ``val/``, the test set,
true labels), read with ``dataprune.data.load_imagefolder`` at 16x16 RGB; a share ``--noise`` of the training
labels changed to another class at random (noise seed = the run's seed). The model is the user's own: a small
CNN ending in global pooling and a classifier head without bias. The loop is the user's own: a DataLoader with
two workers over ``pruner.dataset`` and ``pruner.batch_sampler(32)``, cross-entropy with label smoothing 0.1, SGD
with momentum and weight decay, ``CosineAnnealingLR`` stepped per epoch. Each method prunes ``--ratio`` inside
that loop; ``full`` is the same loop over all the data without a pruner. Nothing is fitted here.

    python benchmarks/dynamic_user_path.py --seeds 0 1 2 --jobs 2

One JSON line per (method, seed): passes skipped, test accuracy, CPU seconds of the loop, and for ``dynamic``
the labels it set aside (share that were wrong: precision; share of the wrong ones: recall).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def write_pngs(root: str, weak: bool = False) -> None:
    """``weak``: the brightest pixels (16 x 16 = 256) wrap to 0 in uint8, as a writer without ``clip`` does: the
    strokes get holes and the same recipe learns a much weaker model (a user's data bug, reproduced)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for i, (img, y) in enumerate(zip(d.images, d.target, strict=True)):
        split = "val" if i % 5 == 0 else "train"
        os.makedirs(os.path.join(root, split, f"class_{y}"), exist_ok=True)
        pixels = (img * 16).astype(np.int64)
        pixels = pixels % 256 if weak else pixels.clip(0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(root, split, f"class_{y}", f"{i:04d}.png"))


def one_run(root, method, seed, args):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    import dataprune as dp
    from dataprune.data import load_imagefolder

    torch.set_num_threads(1)
    train, test = load_imagefolder(root, image_size=16)
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(train)) < args.noise
    train.targets = np.where(wrong, (train.targets + rng.integers(1, 10, len(train))) % 10, train.targets)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(32, 10, bias=False)

        def forward(self, x):
            return self.head(self.body(x))

    torch.manual_seed(seed)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    pruner = None
    if method == "full":
        from dataprune.dynamic import IndexedDataset

        gen = torch.Generator().manual_seed(seed)
        loader = DataLoader(IndexedDataset(train), batch_size=32, shuffle=True, generator=gen, num_workers=2,
                            persistent_workers=True)
    else:
        pruner = dp.DynamicPruner(train, model=net, epochs=args.epochs, ratio=args.ratio, method=method,
                                  optimizer=opt, seed=seed)
        loader = DataLoader(pruner.dataset, batch_sampler=pruner.batch_sampler(32), num_workers=2,
                            persistent_workers=True)
    c0 = time.process_time()
    for epoch in range(args.epochs):
        if pruner is not None:
            pruner.set_epoch(epoch)
        net.train()
        for idx, x, y in loader:
            logits = net(x)
            losses = F.cross_entropy(logits, y, reduction="none", label_smoothing=0.1)
            loss = losses.mean() if pruner is None else pruner.update(idx, losses, logits=logits, targets=y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    cpu = time.process_time() - c0
    row = {"method": method, "seed": seed, "ratio": args.ratio if pruner else 0.0,
           "saved_fraction": round(pruner.saved_fraction, 4) if pruner else 0.0,
           "test_acc": round(dp.accuracy(net, test), 4), "cpu_seconds": round(cpu, 2)}
    if pruner is not None:
        pruner.end_epoch()
        aside = pruner.suspect
        row["set_aside"] = round(float(aside.mean()), 4)
        row["set_aside_wrong"] = round(float(wrong[aside].mean()), 4) if aside.any() else None
        row["wrong_set_aside"] = round(float(aside[wrong].mean()), 4) if wrong.any() else None
        if method == "dynamic":
            ev = pruner.evidence_decision
            row["evidence"] = {k: ev.get(k) for k in ("credible", "explained", "spread", "flagged_share",
                                                      "window_moved", "why")}
            probs = pruner.evidence["probs"]
            agree = probs.argmax(1) == train.targets
            row["evidence"].update({"agree": round(float(agree.mean()), 4),
                                    "mean_maxprob": round(float(probs.max(1).mean()), 4)})
        pruner.close()
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--methods", nargs="+", default=["full", "dynamic", "infobatch", "random_dynamic"])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--weak", action="store_true",
                    help="write the PNGs with the brightest pixels wrapped to 0 (a data bug: a much weaker model)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dataprune-pngs-") as root:
        write_pngs(root, weak=args.weak)
        cells = [(m, s) for s in args.seeds for m in args.methods]
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(one_run, root, m, s, args) for m, s in cells]
            rows = [f.result() for f in futures]
    for row in rows:
        print(json.dumps(row))
    print("means over seeds:")
    for m in args.methods:
        mine = [r for r in rows if r["method"] == m]
        acc = np.mean([r["test_acc"] for r in mine])
        saved = np.mean([r["saved_fraction"] for r in mine])
        cpu = np.mean([r["cpu_seconds"] for r in mine])
        extra = ""
        if mine[0].get("set_aside") is not None and m == "dynamic":
            prec = [r["set_aside_wrong"] for r in mine if r["set_aside_wrong"] is not None]
            rec = [r["wrong_set_aside"] for r in mine if r["wrong_set_aside"] is not None]
            extra = "   set aside nothing" if not prec else (
                f"   set aside {np.mean([r['set_aside'] for r in mine]):.3f} of the data, of which wrong "
                f"{np.mean(prec):.3f}; wrong labels set aside {np.mean(rec) if rec else float('nan'):.3f}")
        print(f"  {m:15s} test {100 * acc:.2f}   passes skipped {saved:.3f}   CPU {cpu:.1f} s{extra}")


if __name__ == "__main__":
    main()
