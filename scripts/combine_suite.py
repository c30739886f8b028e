"""One suite folder from a re-run of some methods and the rows of every other method from earlier runs.

    python scripts/combine_suite.py --new runs/s2-d runs/s2-m --old runs/rob-d docs/results/robustness-issue20 \
        docs/results/robustness --out docs/results/robustness-2026-12-01

For every setting (sub-folder with a results.csv) of the ``--new`` folders (the first that has it): its rows,
then the rows of every method the new run did not run, from the first ``--old`` folder that has the setting
(earlier folders first). Writes each setting's results.csv, results.md and plots, a ``sources.json`` saying which folder
each method's rows came from, and the suite's summary.md. Nothing is recomputed: a method's rows come
from one run, whole.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from dataprune import io  # noqa: E402
from dataprune.report import write_grid_report, write_suite_summary  # noqa: E402
from dataprune.results import read_results, write_results  # noqa: E402


def settings(folder):
    return sorted(d for d in os.listdir(folder) if os.path.isfile(os.path.join(folder, d, "results.csv")))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new", nargs="+", required=True)
    ap.add_argument("--old", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    names = []
    for new in args.new:
        for name in settings(new):
            if name in names:                 # an earlier --new folder has it
                continue
            rows = read_results(os.path.join(new, name, "results.csv"))
            run = io.read_json(os.path.join(new, name, "run.json"))
            have = {r["method"] for r in rows}
            sources = {m: new for m in sorted(have)}
            for old in args.old:
                path = os.path.join(old, name, "results.csv")
                if not os.path.isfile(path):
                    continue
                extra = [r for r in read_results(path) if r["method"] not in have]
                for m in sorted({r["method"] for r in extra}):
                    sources[m] = old
                rows += extra
                have |= {r["method"] for r in extra}
            out = os.path.join(args.out, name)
            os.makedirs(out, exist_ok=True)
            order = list(dict.fromkeys(run["methods"] + [r["method"] for r in rows]))
            run = {**run, "methods": [m for m in order if m != "full"]}
            io.write_json(os.path.join(out, "run.json"), run, overwrite=True)
            io.write_json(os.path.join(out, "sources.json"), sources, overwrite=True)
            write_results(os.path.join(out, "results.csv"), rows, order)
            write_grid_report(out, read_results(os.path.join(out, "results.csv")), run)
            names.append(name)
    print(write_suite_summary(args.out, names))
    print(json.dumps({"settings": len(names)}))


if __name__ == "__main__":
    main()
