"""Per setting and ratio: mean test accuracy, per-seed accuracies, total cost and share of passes skipped, without the
still-learning test -> with it (the two bench folders of this directory):

    python compare.py off on
"""

import csv
import statistics as st
import sys

SETTINGS = ("mnist5k-cnn-lt10", "mnist5k-cnn-lt50")
CELLS = [("full", "0")] + [("dynamic", r) for r in ("0.3", "0.5", "0.7", "0.9")]


def figures(rows, method, ratio):
    sel = [r for r in rows if r["method"] == method and float(r["ratio"]) == float(ratio)]
    per = [round(float(r["test_acc"]) * 100, 1) for r in sorted(sel, key=lambda r: r["seed"])]
    cost = st.mean(float(r["total_cost"]) for r in sel if r.get("total_cost"))
    saved = st.mean(float(r["saved_fraction"] or 0) for r in sel)
    return st.mean(per), per, cost, saved


def main(before, after):
    for name in SETTINGS:
        rows = [list(csv.DictReader(open(f"{root}/{name}/results.csv"))) for root in (before, after)]
        print(name)
        for method, ratio in CELLS:
            o, n = (figures(r, method, ratio) for r in rows)
            print(f"  {method} {ratio}: {o[0]:.2f} {o[1]} cost {o[2]:.2f} saved {o[3]:.3f} -> "
                  f"{n[0]:.2f} {n[1]} cost {n[2]:.2f} saved {n[3]:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
