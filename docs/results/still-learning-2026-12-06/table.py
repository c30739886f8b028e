"""The tables of README.md from the saved runs: for each family, the cells where `dynamic`'s still-learning test
fires (dataprune.dynamic.still_learning on each cell's `moved` figures) and the change in balanced validation
accuracy against the judgment without the test (where both whole runs were trained). A scan over the two
thresholds is printed for the grid. Runs nothing.

    python docs/results/still-learning-2026-12-06/table.py
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "src"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "benchmarks"))
import dataprune.dynamic as dyn  # noqa: E402
from fit_dynamic_credibility import _read as load  # noqa: E402  (rows of a JSON lines file, by key)

CELL = ("setting", "arch", "seed", "lr")
OLD = os.path.join(HERE, "..", "fit-dynamic-credibility-2026-12-04")


def grid_full():
    """The 72 grid cells' whole runs (2026-12-04), with and without the set-aside; the class guard shipped since
    was re-run where it changes the set-aside (its folder g-confident-0.2)."""
    full = load(os.path.join(OLD, "full.jsonl"), CELL + ("aside",))
    full.update(load(os.path.join(OLD, "guard", "base-extra", "full.jsonl"), CELL + ("aside",)))
    full.update(load(os.path.join(OLD, "guard", "g-confident-0.2", "full.jsonl"), CELL + ("aside",)))
    return full


def fires(moved, rise=None, rate=None):
    """dataprune.dynamic.still_learning, with other thresholds where given."""
    old = dyn.STILL_LEARNING_RISE, dyn.STILL_LEARNING_RATE
    try:
        if rise is not None:
            dyn.STILL_LEARNING_RISE, dyn.STILL_LEARNING_RATE = rise, rate
        return dyn.still_learning(moved)
    finally:
        dyn.STILL_LEARNING_RISE, dyn.STILL_LEARNING_RATE = old


def family(name, cells, full, rise=None, rate=None, show=True):
    changes, lines, n_fire = [], [], 0
    for k, c in sorted(cells.items()):
        m = c["moved"] or {}
        on, off = full.get((*k, True)), full.get((*k, False))
        # cells.jsonl of the grid was written with the test off; batch128's and long40's with it on ("credible"
        # already includes it): judge every cell by the other statistics plus the test, from the figures
        credible_without = c["mean_maxprob"] >= dyn.CREDIBLE_CONFIDENCE and c["spread"] >= 0.5
        hit = credible_without and bool(m) and fires(m, rise, rate)
        n_fire += hit
        if on and off:
            changes.append(100 * (off["val_bacc"] - on["val_bacc"]) if hit else 0.0)
        if hit and show:
            rise_ = m["accuracy_after"] - m["accuracy_before"]
            lines.append(f"  fires: {k} rise {rise_:+.3f}, flags resolved {m['flags_resolved']:.2f} / unsure "
                         f"{m['unsure_resolved']:.2f}, flagged {c['flagged']:.3f}, precision "
                         f"{c['precision'] if c['precision'] is None else round(c['precision'], 2)}, change "
                         + (f"{changes[-1]:+.2f}" if on and off else "(not trained to the end)"))
    summary = (f"{name}: {len(cells)} cells, fires in {n_fire}; over the {len(changes)} trained to the end: "
               f"mean change {np.mean(changes) if changes else 0:+.3f}, lowest {min(changes) if changes else 0:+.2f}")
    return summary, lines, changes


def main():
    grid = load(os.path.join(HERE, "grid", "cells.jsonl"), CELL)
    b128 = load(os.path.join(HERE, "batch128", "cells.jsonl"), CELL)
    long40 = load(os.path.join(HERE, "long40", "cells.jsonl"), CELL)
    full = grid_full()
    b128_full = load(os.path.join(HERE, "batch128", "full.jsonl"), CELL + ("aside",))
    print(f"shipped: rise >= {dyn.STILL_LEARNING_RISE}, flags resolved >= {dyn.STILL_LEARNING_RATE} x unsure")
    for name, cells, f in (("grid (10 epochs, batch 32, lr 0.05/0.005/0.002)", grid, full),
                           ("batch 128 (10 epochs, lr 0.05)", b128, b128_full), ("40 epochs (batch 32, lr 0.05)",
                                                                                 long40, {})):
        summary, lines, _ = family(name, cells, f)
        print(summary)
        print("\n".join(lines))
    print("\nscan on the grid (mean change per cell over 72 / lowest; batch 128 in brackets):")
    for rise in (0.0, 0.05, 0.08, 0.1, 0.12, 0.15):
        row = []
        for rate in (0.6, 0.7, 0.8, 0.9, 1.0):
            _, _, g = family("", grid, full, rise, rate, show=False)
            _, _, b = family("", b128, b128_full, rise, rate, show=False)
            row.append(f"{rate}: {np.mean(g):+.2f}/{min(g):+.2f} ({np.mean(b):+.2f}/{min(b):+.2f})")
        print(f"  rise {rise}: " + " | ".join(row))


if __name__ == "__main__":
    main()
