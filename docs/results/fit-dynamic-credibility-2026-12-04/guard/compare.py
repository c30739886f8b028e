"""Compare guard candidates with the judgment shipped before them (the credibility test, confident learning's flags,
no class guard), cell by cell, on balanced accuracy of the clean-label validation samples:

    python compare.py g-confident-0.2 g-confident-0.35 g-confident_argmax-0.35
"""

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CELL = ("setting", "arch", "seed", "lr")
RUN = CELL + ("aside",)


def load(path, key):
    rows = {}
    if os.path.exists(path):
        for line in open(path):
            r = json.loads(line)
            rows[tuple(r[k] for k in key)] = r
    return rows


def main(candidates):
    before = load(os.path.join(HERE, "..", "full.jsonl"), RUN)
    before.update(load(os.path.join(HERE, "base-extra", "full.jsonl"), RUN))
    stats = load(os.path.join(HERE, "..", "cells.jsonl"), CELL)

    def shipped(cell):
        # the credibility test: nothing set aside below a mean top class probability of 0.36
        if cell in stats and stats[cell]["mean_maxprob"] < 0.36 and (*cell, False) in before:
            return before[(*cell, False)]["val_bacc"]
        return before[(*cell, True)]["val_bacc"]

    for cand in candidates:
        runs = load(os.path.join(HERE, cand, "full.jsonl"), RUN)
        for lr in (0.05, 0.005):
            diffs, lines = [], []
            for key in sorted(runs):
                cell = key[:4]
                if cell[3] != lr or (*cell, True) not in before:
                    continue
                a, b = shipped(cell), runs[key]["val_bacc"]
                diffs.append(b - a)
                if abs(b - a) > 1e-9:
                    lines.append(f"    {cell}: {100 * a:.2f} -> {100 * b:.2f} "
                                 f"(aside {before[(*cell, True)]['set_aside']} -> {runs[key]['set_aside']})")
            if diffs:
                print(f"== {cand} lr {lr}: mean change {100 * np.mean(diffs):+.2f} over {len(diffs)} cells, "
                      f"lowest {100 * min(diffs):+.2f}, highest {100 * max(diffs):+.2f}")
                print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
