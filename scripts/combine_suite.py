"""One suite folder from a re-run of some methods and the rows of every other method from earlier runs.

    python scripts/combine_suite.py --new runs/s2-d runs/s2-m --old runs/rob-d docs/results/robustness-issue20 \
        docs/results/robustness --out docs/results/robustness-2026-12-01

For every setting (sub-folder with a results.csv) of the ``--new`` folders (the first that has it): its rows,
then the rows of every method the new run did not run, from the first ``--old`` folder that has the setting
(earlier folders first). Writes each setting's results.csv, results.md and plots, a ``sources.json`` saying which folder
each method's rows came from, and the suite's summary.md. Nothing is recomputed: a method's rows come
from one run, whole.

``--cells``: the ``--new`` rows replace only the cells (method, ratio) they hold, in every setting of the first
``--old`` folder; the other rows (full data included) stay. For a re-run of a few cells, e.g. after a fix that
changed only them:

    python scripts/combine_suite.py --cells --new runs/tail07 runs/tail09 --old docs/results/robustness-2026-12-01 \
        --out docs/results/robustness-2026-12-02
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
    ap.add_argument("--cells", action="store_true", help="replace only the (method, ratio) cells the new rows hold")
    args = ap.parse_args()
    if args.cells:
        return replace_cells(args.new, args.old[0], args.out)
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
            order = list(dict.fromkeys(run["methods"] + [r["method"] for r in rows]))
            write_setting(os.path.join(args.out, name), {**run, "methods": [m for m in order if m != "full"]},
                          sources, rows, order)
            names.append(name)
    print(write_suite_summary(args.out, names))
    print(json.dumps({"settings": len(names)}))


def write_setting(out, run, sources, rows, methods):
    """One setting's folder: run.json, sources.json, results.csv (``methods`` in this order) and its report."""
    os.makedirs(out, exist_ok=True)
    io.write_json(os.path.join(out, "run.json"), run, overwrite=True)
    io.write_json(os.path.join(out, "sources.json"), sources, overwrite=True)
    write_results(os.path.join(out, "results.csv"), rows, methods)
    write_grid_report(out, read_results(os.path.join(out, "results.csv")), run)


def replace_cells(new_folders, base, out_dir):
    names = settings(base)
    for name in names:
        run = io.read_json(os.path.join(base, name, "run.json"))
        rows = read_results(os.path.join(base, name, "results.csv"))
        sources = io.read_json(os.path.join(base, name, "sources.json")) \
            if os.path.isfile(os.path.join(base, name, "sources.json")) else {}
        replaced = False
        for new in new_folders:
            path = os.path.join(new, name, "results.csv")
            if not os.path.isfile(path):
                continue
            fresh = [r for r in read_results(path) if r["method"] != "full"]
            cells = {(r["method"], float(r["ratio"])) for r in fresh}
            rows = [r for r in rows if (r["method"], float(r["ratio"])) not in cells] + fresh
            replaced = replaced or bool(cells)
            for m, ratio in sorted(cells):
                sources[f"{m} at ratio {ratio:g}"] = new
        write_setting(os.path.join(out_dir, name), run, {**sources, "base": base} if replaced else sources, rows,
                      run["methods"])
    print(write_suite_summary(out_dir, names))
    print(json.dumps({"settings": len(names)}))


if __name__ == "__main__":
    main()
