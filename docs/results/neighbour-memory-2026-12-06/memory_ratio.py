"""The memorisation ratio of the full plan's saved validation evidence (fit_budget.py evidence --budget full):
the share of samples confident learning flags on the neighbour labels among as many trained-on samples as held out,
over that share among the held-out ones (what evidence.judge_neighbour_memory computes in the pipeline).

    python docs/results/neighbour-memory-2026-12-06/memory_ratio.py 'runs/fit-full/evidence/*.npz'
"""

import glob
import sys

import numpy as np

from dataprune.evidence import holdout_indices
from dataprune.select import confident_noise, neighbour_labels


def ratio(path):
    e = np.load(path)
    y = e["labels"]
    seed = int(path.split("seed")[1].split(".")[0])
    held = holdout_indices(y, 0.1, seed * 1000)                 # the pipeline's held-out share of this run
    trained = np.setdiff1d(np.arange(len(y)), held)
    trained = np.sort(np.random.default_rng([seed, 7]).choice(trained, len(held), replace=False))
    rows = np.concatenate([held, trained])
    shares = neighbour_labels(e["features"].astype(np.float32), y, rows=rows)
    flags = confident_noise(shares, y[rows], "confident")["suspect"]
    return flags[:len(held)].mean(), flags[len(held):].mean()


if __name__ == "__main__":
    for path in sorted(glob.glob(sys.argv[1])):
        h, t = ratio(path)
        name = path.split("/")[-1][:-4]
        print(name.ljust(20), f"held {h:.3f} trained {t:.3f} ratio {t / max(h, 1e-9):.2f}")
