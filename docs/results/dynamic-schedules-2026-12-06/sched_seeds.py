"""A one-run user's loop with OneCycleLR stepped per batch (2026-12-06): `dynamic` at ratio 0.5 with the scheduler
stepped plainly (built for the full data's steps, it stops part way) and through pruner.stretch, and the unpruned run
(no pruner). sklearn digits as vectors in a Hugging Face dataset, 20% symmetric noise on the first 1,400 (training),
the last 397 with their true labels as the test set, an MLP with a bias-free head, 30 epochs at batch 32.

    python docs/results/dynamic-schedules-2026-12-06/sched_seeds.py
"""

import math

import datasets
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.optim.lr_scheduler import OneCycleLR
from torch.utils.data import DataLoader

import dataprune as dp

torch.set_num_threads(1)
E, B = 30, 32
d = load_digits()
X, y = (d.images / 16.0).astype(np.float32), d.target
rng = np.random.default_rng(0)
perm = rng.permutation(len(y))
X, y = X[perm], y[perm]
noisy, flip = y.copy(), rng.random(len(y)) < 0.2
noisy[flip] = (noisy[flip] + rng.integers(1, 10, flip.sum())) % 10
tr = datasets.Dataset.from_dict({"pixels": X[:1400].tolist(), "label": noisy[:1400].tolist()})
tr.set_format("torch")


def step(opt, sched, loss):
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()


def run(seed, mode):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    total = E * math.ceil(1400 / B)
    inner = OneCycleLR(opt, max_lr=0.1, total_steps=total)
    saved, aside = 0.0, 0
    if mode == "full":
        loader = DataLoader(tr, batch_size=B, shuffle=True, generator=torch.Generator().manual_seed(seed))
        for _ in range(E):
            for item in loader:
                step(opt, inner, F.cross_entropy(model(item["pixels"]), item["label"]))
    else:
        pruner = dp.DynamicPruner(tr, model=model, epochs=E, ratio=0.5, method="dynamic", optimizer=opt,
                                  input_key="pixels", seed=seed)
        loader = DataLoader(pruner.dataset, batch_sampler=pruner.batch_sampler(B))
        sched = pruner.stretch(inner, loader, total) if mode == "stretched" else inner
        for epoch in range(E):
            pruner.set_epoch(epoch)
            for idx, x, yb in loader:
                logits = model(x)
                losses = F.cross_entropy(logits, yb, reduction="none")
                step(opt, sched, pruner.update(idx, losses, logits=logits, targets=yb))
        pruner.end_epoch()
        saved, aside = pruner.saved_fraction, int(pruner.suspect.sum())
    with torch.no_grad():
        acc = float((model(torch.tensor(X[1400:])).argmax(1).numpy() == y[1400:]).mean())
    return acc, opt.param_groups[0]["lr"], saved, aside


for mode in ("full", "plain", "stretched"):
    r = [run(s, mode) for s in range(3)]
    print(f"{mode}: test acc {[round(100 * a[0], 1) for a in r]} mean {100 * np.mean([a[0] for a in r]):.1f}; "
          f"final lr {[f'{a[1]:.3g}' for a in r]}; saved {[round(a[2], 3) for a in r]}; set aside {[a[3] for a in r]}")
