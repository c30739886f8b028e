"""Accuracy against total compute across a suite: static and dynamic pruning on one axis (issue 19).

    python scripts/frontier_summary.py docs/results/frontier-2026-12-02 > docs/results/frontier-2026-12-02/frontier.md

For every setting (a sub-folder with results.csv holding ``full`` rows and dynamic rows, static rows optionally
combined in by scripts/combine_suite.py): full-data accuracy, and for each method the best mean test accuracy
over its ratios whose mean ``total_cost`` (pruning + the final training run, in full-data runs of the same
bench) is at most 0.5 / 0.7 / 1.0; then the issue's targets counted over the settings. Means over seeds, per
ratio; nothing is recomputed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from dataprune.report import summarize  # noqa: E402
from dataprune.results import read_results  # noqa: E402

METHODS = ["dynamic", "infobatch", "random_dynamic", "recommended@0.25", "recommended", "random"]
CAPS = (0.5, 0.7, 1.0)


def cells(rows):
    """method -> ratio -> dict(acc, cost, saved, wall): means over seeds (:func:`dataprune.report.summarize`;
    accuracy in %, NaN where no seed has the figure)."""
    means = {key: summarize(rows, key) for key in ("test_acc", "total_cost", "saved_fraction", "wall_saved")}
    nan = (float("nan"),)
    out = defaultdict(dict)
    for (m, ratio) in means["test_acc"]:
        got = {key: means[key].get((m, ratio), nan)[0] for key in means}
        out[m][ratio] = dict(acc=100 * got["test_acc"], cost=got["total_cost"], saved=got["saved_fraction"],
                             wall=got["wall_saved"])
    return out


def best_within(by_ratio, cap):
    fits = [(c["acc"], r, c["cost"]) for r, c in by_ratio.items() if c["cost"] <= cap + 1e-9]
    return max(fits) if fits else None


def versus_infobatch(dyn, ib):
    """Per ``dynamic`` cell: is it within 0.3 of the best ``infobatch`` cell that skips no more passes? (None
    where every infobatch cell skips more: no comparison at equal or larger saved fraction.)"""
    out = []
    for d in dyn.values():
        peers = [c["acc"] for c in ib.values() if c["saved"] <= d["saved"] + 1e-9]
        out.append(None if not peers else d["acc"] >= max(peers) - 0.3)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    args = ap.parse_args()
    names = sorted(d for d in os.listdir(args.folder) if os.path.isfile(os.path.join(args.folder, d, "results.csv")))
    print("# Accuracy against total compute, per setting\n")
    print("Best mean test accuracy (%) at a total cost (pruning + the final training run, in full-data runs) of "
          "at most 0.5 / 0.7 / 1.0, over the ratios run; in brackets the ratio. `-`: no ratio that cheap. Last "
          "column: the best at any cost, with its total cost.\n")
    print("| setting | full data | method | <= 0.5 | <= 0.7 | <= 1.0 | any cost |")
    print("|---|---|---|---|---|---|---|")
    t_clean, t_noise, pair_ok, pair_all, gaps = [], [], 0, 0, []
    for name in names:
        c = cells(read_results(os.path.join(args.folder, name, "results.csv")))
        if "full" not in c or "dynamic" not in c:
            continue
        full = c["full"][0.0]["acc"]
        first = True
        for m in METHODS:
            if m not in c:
                continue
            row = []
            for cap in CAPS:
                b = best_within(c[m], cap)
                row.append("-" if b is None else f"{b[0]:.1f} (r={b[1]:g})")
            b = best_within(c[m], float("inf"))
            row.append("-" if b is None else f"{b[0]:.1f} (r={b[1]:g}, {b[2]:.2f})")
            print(f"| {name if first else ''} | {f'{full:.1f}' if first else ''} | {m} | " + " | ".join(row) + " |")
            first = False
        clean = not ("-sym" in name or "-pair" in name)       # clean labels: balanced or long-tailed
        b7 = best_within(c["dynamic"], 0.7)
        b10 = best_within(c["dynamic"], 1.0)
        if clean:
            t_clean.append((name, full, b7))
        else:
            t_noise.append((name, full, b10))
        if "infobatch" in c:
            judged = [v for v in versus_infobatch(c["dynamic"], c["infobatch"]) if v is not None]
            pair_all += len(judged)
            pair_ok += sum(judged)
        for m in ("dynamic", "infobatch", "random_dynamic"):
            for d in c.get(m, {}).values():
                if np.isfinite(d["wall"]) and np.isfinite(d["saved"]):
                    gaps.append(d["saved"] - d["wall"])
    print("\n## Targets (issue 19)\n")
    ok = [n for n, f, b in t_clean if b is not None and b[0] >= f - 0.3]
    misses = "".join(f"; {n}: {('-' if b is None else f'{b[0]:.1f}')} vs {f:.1f}" for n, f, b in t_clean
                     if n not in ok)
    print("- Clean labels (balanced and long-tailed), `dynamic` at full data (>= full - 0.3) within total cost 0.7: "
          f"{len(ok)} of "
          f"{len(t_clean)} settings{misses}")
    ok = [n for n, f, b in t_noise if b is not None and b[0] >= f]
    misses = "".join(f"; {n}: {('-' if b is None else f'{b[0]:.1f}')} vs {f:.1f}" for n, f, b in t_noise
                     if n not in ok)
    print(f"- Label noise, `dynamic` at or above full data within total cost 1.0: {len(ok)} of "
          f"{len(t_noise)} settings{misses}")
    if pair_all:
        print(f"- `dynamic` >= the best `infobatch` cell that skips no more passes, - 0.3: {pair_ok} of {pair_all} "
              f"cells ({100 * pair_ok / pair_all:.0f}%; cells where every infobatch ratio skips more are left out)")
    if gaps:
        g = np.array(gaps)
        print(f"- Passes skipped minus CPU time saved, over {len(g)} dynamic cells: mean {g.mean():+.3f}, "
              f"within 0.10 in {int((np.abs(g) <= 0.10).sum())} ({100 * np.mean(np.abs(g) <= 0.10):.0f}%)")


if __name__ == "__main__":
    main()
