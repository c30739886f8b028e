"""How much does `dataprune demo` move when only the CPU kernels change?

The same torch build picks its vectorised kernels by the CPU's instruction set (ATen: default / AVX2 /
AVX512; oneDNN: up to AMX). Two machines with the same build can therefore differ in the last bits of
every convolution, and training amplifies that. This runs the demo under each kernel setting on one
machine (ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA cap what this CPU would use) and prints every cell
side by side, with the largest difference per ratio and the wall time of each run.

    python benchmarks/demo_spread.py --out runs/demo-spread            # about 4 minutes per setting
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

SETTINGS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def _table(printed: str) -> dict:
    cells = {}
    header = None
    for line in printed.splitlines():
        if not line.startswith("|") or set(line) <= set("|-"):
            continue
        parts = [p.strip() for p in line.strip("|").split("|")]
        if parts[0] == "method":
            header = parts
            continue
        for col, value in zip(header[1:], parts[1:], strict=True):
            if col.startswith("ratio"):
                cells[(parts[0], col.split()[1])] = float(value.split()[0])
    full = re.search(r"Full data \(ratio 0\): ([0-9.]+)", printed)
    if full:
        cells[("full", "0")] = float(full.group(1))
    return cells


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/demo-spread")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    args = ap.parse_args(argv)
    names = args.settings.split(",")
    runs = {}
    for name in names:
        env = {**os.environ, **SETTINGS[name]}
        env.pop("DATAPRUNE_QUIET", None)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "dataprune", "demo", "--out", os.path.join(args.out, name),
                              "--force", "--quiet"], capture_output=True, text=True, env=env, check=True).stdout
        runs[name] = {"seconds": time.perf_counter() - t0, "cells": _table(out)}
        print(f"{name}: {runs[name]['seconds']:.0f} s", flush=True)
    keys = sorted(runs[names[0]]["cells"])
    print("\n| cell | " + " | ".join(names) + " | spread |\n|---|" + "---|" * (len(names) + 1))
    spread_by_ratio: dict[str, float] = {}
    for key in keys:
        values = [runs[n]["cells"].get(key, float("nan")) for n in names]
        spread = max(values) - min(values)
        spread_by_ratio[key[1]] = max(spread_by_ratio.get(key[1], 0.0), spread)
        print(f"| {key[0]} @ {key[1]} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {spread:.1f} |")
    print("\nlargest spread per ratio: " + ", ".join(f"{r}: {s:.1f}" for r, s in sorted(spread_by_ratio.items())))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "spread.json"), "w") as f:
        json.dump({n: {"seconds": r["seconds"], "cells": {f"{k[0]}@{k[1]}": v for k, v in r["cells"].items()}}
                   for n, r in runs.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
