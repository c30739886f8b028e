"""Peak memory and time of DynamicPruner's bookkeeping at ImageNet-like class counts: a linear head on random
features (no real model, so nearly all of it is the pruner's), 4 epochs, ``dynamic`` at ratio 0.5, records in memory.
Prints the peak RSS above the start against the size of the head records (N x (D + 2C) float32).

    python benchmarks/dynamic_memory.py 100000 1000 64      # N, classes, head width
"""
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
import dataprune as dp  # noqa: E402
from dataprune.data import ArrayDataset  # noqa: E402

torch.set_num_threads(1)
N, C, D, E = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), 4
x = torch.randn(N, D)
y = np.random.default_rng(0).integers(0, C, N)
ds = ArrayDataset(x, y)
model = nn.Sequential(nn.Identity(), nn.Linear(D, C))


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024


def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


base = rss()
pruner = dp.DynamicPruner(ds, model=model, epochs=E, ratio=0.5, method="dynamic", cache_mb=None)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
t = time.time()
for epoch in range(E):
    pruner.set_epoch(epoch)
    order = pruner.order
    for i in range(0, len(order), 1024):
        idx = order[i:i + 1024]
        xb, yb = x[idx], torch.as_tensor(y[idx])
        logits = model(xb)
        loss = pruner.update(torch.as_tensor(idx), F.cross_entropy(logits, yb, reduction="none"), logits=logits,
                             targets=yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
pruner.end_epoch()
records = N * (D + 2 * C) * 4 / 2**20
print(f"N {N} C {C} D {D}: records {records:.0f} MiB; peak RSS above start {peak() - base:.0f} MiB "
      f"({(peak() - base) / records:.1f}x the records); N x C float64 = {N * C * 8 / 2**20:.0f} MiB; "
      f"{time.time() - t:.1f} s")
