"""Differences to random pruning, per cell, from a ``dataprune bench`` results.csv.

    python benchmarks/compare_to_random.py docs/results/moso-variants/mnist5k/results.csv

Prints a markdown table: for every method and ratio, the mean test accuracy over seeds (%)
and, in parentheses, its difference to ``random`` at the same ratio in points (seeds are
paired: the same seeds run for every method). Cells where a method has fewer seeds than
random are marked with ``*``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections import defaultdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results.csv written by dataprune bench")
    ap.add_argument("--baseline", default="random")
    args = ap.parse_args()
    acc = defaultdict(dict)
    with open(args.results, newline="") as f:
        for row in csv.DictReader(f):
            acc[(row["method"], float(row["ratio"]))][int(row["seed"])] = 100 * float(row["test_acc"])
    ratios = sorted({r for _, r in acc if r > 0})
    methods = list(dict.fromkeys(m for m, r in acc if r > 0))
    run = os.path.join(os.path.dirname(args.results), "run.json")
    if os.path.exists(run):                      # the order the methods were asked for
        asked = json.load(open(run)).get("methods", [])
        methods = [m for m in asked if m in methods] + [m for m in methods if m not in asked]
    base = {r: acc.get((args.baseline, r), {}) for r in ratios}
    print("| method | " + " | ".join(f"ratio {r:g}" for r in ratios) + " |")
    print("|---" * (len(ratios) + 1) + "|")
    for m in methods:
        cells = []
        for r in ratios:
            got = acc.get((m, r), {})
            if not got:
                cells.append("")
                continue
            mean = sum(got.values()) / len(got)
            b = base[r]
            if m == args.baseline or not b:
                cells.append(f"{mean:.1f}")
                continue
            bmean = sum(b.values()) / len(b)
            mark = "*" if len(got) < len(b) else ""
            cells.append(f"{mean:.1f} ({mean - bmean:+.1f}){mark}")
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
