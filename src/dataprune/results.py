"""The results table of a bench run (``results.csv``): its columns, reading and writing. A leaf that
both the bench and the report import."""

from __future__ import annotations

import csv
import io as _io
import os

import numpy as np

from . import io

RESULT_COLUMNS = ["method", "policy", "plan", "ratio", "seed", "n_kept", "test_acc", "test_bacc", "val_acc",
                  "val_bacc", "kept_mislabelled", "prune_seconds", "cost_fraction", "saved_fraction", "total_cost",
                  "wall_saved", "cost_clock", "train_seconds", "train_cpu_seconds", "retrain_length", "epochs",
                  "steps"]


def _fmt(v):
    if isinstance(v, (float, np.floating)):
        return "" if v != v else f"{float(v):.6g}"
    return "" if v is None else v


def read_results(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["ratio"] = float(r["ratio"])
        r["seed"] = int(r["seed"])
        for k in ("test_acc", "test_bacc", "val_acc", "val_bacc", "kept_mislabelled", "prune_seconds",
                  "cost_fraction", "saved_fraction", "total_cost", "wall_saved", "train_seconds",
                  "train_cpu_seconds"):
            r[k] = float(r[k]) if r.get(k) not in (None, "") else float("nan")
    return rows


def write_results(path: str, rows: list[dict], order: list[str] | None = None) -> None:
    """Rows sorted by (method in ``order``, ratio, seed): the same file whatever order cells finished in."""
    rank = {m: i for i, m in enumerate(["full"] + list(order or []))}
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in sorted(rows, key=lambda r: (rank.get(r["method"], len(rank)), r["method"], float(r["ratio"]),
                                         int(r["seed"]))):
        w.writerow({k: _fmt(r.get(k)) for k in RESULT_COLUMNS})
    io.write_bytes(path, buf.getvalue().encode(), overwrite=True)
