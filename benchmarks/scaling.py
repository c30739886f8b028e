"""How scoring cost grows with N: wall time and peak memory, each N in a fresh process.

The data are generated on the fly from each sample's index (nothing is held in memory),
so the peak RSS measured is the scorer's own: a batch's working set plus the N-length
outputs.

    python benchmarks/scaling.py                                    # all parameters, N = 5k and 50k
    python benchmarks/scaling.py --params last_layer --ns 25000,50000,100000,200000

Prints per N: seconds, peak RSS, RSS above the baseline (model + imports), the bytes of the
N-length outputs, and the exponent of a power-law fit of time against N (1 = linear).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {src!r})
import numpy as np, torch
from torch.utils.data import Dataset
from dataprune import moso
from dataprune.models import SmallCNN
from dataprune.utils import tune_cpu_allocator
tune_cpu_allocator()

class Generated(Dataset):
    # Sample i is drawn from a generator seeded by i: any N, no memory.
    targets = None
    def __init__(self, n):
        self.n = n
        self.targets = np.arange(n, dtype=np.int64) % 10
    def __len__(self):
        return self.n
    def get_batch(self, idx):
        idx = np.asarray(idx)
        x = torch.empty(len(idx), 1, 28, 28)
        for j, i in enumerate(idx):
            x[j] = torch.randn(1, 28, 28, generator=torch.Generator().manual_seed(int(i)))
        y = torch.from_numpy(self.targets[idx])
        return x + y.float().view(-1, 1, 1, 1) * 0.1, y
    def __getitem__(self, i):
        x, y = self.get_batch([i])
        return x[0], int(y[0])

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

torch.manual_seed(0)
model = SmallCNN(1, 10)
ck = [(model.state_dict(), 0.1)]
moso.score(model, ck, Generated(512), params={params!r})   # warm-up: allocator, kernels
base = rss_mb()
t0 = time.perf_counter()
s = moso.score(model, ck, Generated({n}), params={params!r}, cache_mb={cache_mb})
dt = time.perf_counter() - t0
print(json.dumps({{"n": {n}, "seconds": dt, "peak_mb": rss_mb(), "base_mb": base,
                  "finite": bool(np.isfinite(s).all())}}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ns", default="5000,50000", help="comma-separated dataset sizes")
    ap.add_argument("--params", default="all", choices=["all", "last_layer"])
    ap.add_argument("--cache-mb", type=float, default=256, help="last-layer feature cache budget (0 = two passes)")
    args = ap.parse_args()
    src = os.path.join(HERE, "..", "src")
    rows = []
    for n in [int(v) for v in args.ns.split(",")]:
        code = CHILD.format(src=src, params=args.params, n=n, cache_mb=args.cache_mb)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(out.stderr)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"moso.score, params={args.params}, small CNN on generated 28x28 data, one checkpoint"
          + (f", feature cache {args.cache_mb:g} MB" if args.params == "last_layer" else ""))
    print(f"{'N':>8} {'seconds':>9} {'img/s':>9} {'peak RSS MB':>12} {'above base MB':>14} {'outputs MB':>11}")
    for r in rows:
        outputs = r["n"] * 8 * 3 / 2**20  # the float64 N-length arrays held at once (scores, dots, norms)
        print(f"{r['n']:>8} {r['seconds']:>9.2f} {r['n'] / r['seconds']:>9.0f} {r['peak_mb']:>12.0f} "
              f"{r['peak_mb'] - r['base_mb']:>14.0f} {outputs:>11.1f}")
    if len(rows) >= 2:
        ns = np.log([r["n"] for r in rows])
        ts = np.log([r["seconds"] for r in rows])
        slope = np.polyfit(ns, ts, 1)[0]
        print(f"fitted growth exponent of time in N: {slope:.2f} (1.00 = linear)")


if __name__ == "__main__":
    main()
