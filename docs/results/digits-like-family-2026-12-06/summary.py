"""Per setting, a candidate (DUAL-weighted, k-center) minus the shipped uniform sample at ratios 0.8 / 0.9 (points of
balanced validation accuracy per run), from dual_high.py's or kcenter.py's CSV:

    cd docs/results/digits-like-family-2026-12-06 && python summary.py dual-high-eval.csv
"""

import csv
import sys
from collections import defaultdict

import numpy as np


def main(path):
    runs = defaultdict(dict)
    for r in csv.DictReader(open(path)):
        runs[(r["setting"], r["arch"], r["seed"], r["ratio"])][r["candidate"]] = float(r["val_bacc"])
    by = defaultdict(list)
    for (setting, arch, _, ratio), v in runs.items():
        other = [c for c in v if c != "uniform"]
        if other and "uniform" in v:
            by[(ratio, setting, arch)].append(100 * (v[other[0]] - v["uniform"]))
    for ratio in sorted({k[0] for k in by}):
        every = [x for k, v in by.items() if k[0] == ratio for x in v]
        print(f"ratio {ratio}: {len(every)} runs, mean {np.mean(every):+.2f} (sd per run {np.std(every, ddof=1):.2f}), "
              f"ahead {sum(x > 0.5 for x in every)} / behind {sum(x < -0.5 for x in every)} by more than 0.5")
        for (r, setting, arch), v in sorted(by.items()):
            if r == ratio:
                print(f"    {setting} {arch}: {np.mean(v):+.2f}  {[round(x, 2) for x in v]}")


if __name__ == "__main__":
    main(sys.argv[1])
