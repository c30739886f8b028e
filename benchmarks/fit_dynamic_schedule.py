"""Where ``dynamic`` prunes in the schedule, on validation splits of mnist5k (the test set is never loaded).

``dynamic`` reads the full data until its evidence window ends (``EVIDENCE_WINDOW[1]``, 30% of the epochs) and
again over the last ``1 - delta`` of them (``DELTA`` 0.875, InfoBatch's annealing, taken from the paper, never
fitted here), so at ratio r it skips about ``r x (delta - 0.3)`` of the passes: 0.29 at r 0.5. This compares, at
equal ratios, the accuracy and the share of passes skipped of schedule candidates:

- ``base``: the schedule shipped before 2026-12-02 (window to 30%, InfoBatch's delta 0.875);
- ``delta1``: no full-data tail (delta 1.0).

(An evidence window to 20% was tried too; its first run leaked its window into later cells of the same worker
process, and it was dropped rather than re-run: with the window's end at 20% the evidence is one epoch.)

Settings: mnist5k variants (clean, 20% symmetric, long tail 10:1 and 50:1) x CNN / MLP, 10 epochs at batch 32,
lr 0.05, tuning seeds 10, 11 and 12, ratios 0.5 and 0.7; score: balanced accuracy on the stratified 20% validation
part (and accuracy on its samples with clean labels under noise).

    python benchmarks/fit_dynamic_schedule.py --out runs/fit-dynamic-schedule --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fit_dynamic import BATCH, EPOCHS, LR, _split, run_cells  # noqa: E402

SETTINGS = ("clean", "sym20", "lt10", "lt50")
ARCHS = ("cnn", "mlp")
SEEDS = (10, 11, 12)
RATIOS = (0.5, 0.7)
CANDIDATES = {"base": {}, "delta1": {"delta": 1.0},
              # 2026-12-06: which share of a class's lowest scores it skips from (dynamic.CANDIDATE_FACTOR, shipped 2)
              # on the shipped schedule (delta 1.0)
              "cand1.25": {"delta": 1.0, "candidate_factor": 1.25}, "cand1.5": {"delta": 1.0, "candidate_factor": 1.5},
              "cand3": {"delta": 1.0, "candidate_factor": 3.0}}


def run_cell(setting, arch, seed, ratio, cand):
    import torch

    import dataprune.dynamic as dyn
    from dataprune.evaluate import accuracies
    from dataprune.models import build_model
    from dataprune.train import TrainConfig, train
    from dataprune.utils import seed_everything
    from dynamic import clean_val  # benchmarks/dynamic.py

    torch.set_num_threads(1)
    opts = CANDIDATES[cand]
    split = _split(setting)
    seed_everything(seed)
    model = build_model(arch, split.num_classes, split.input_shape)
    pruner = dyn.DynamicPruner(split.train, model=model, epochs=EPOCHS, ratio=ratio, method="dynamic", seed=seed,
                               delta=opts.get("delta", dyn.DELTA))      # a worker runs many cells: no globals set
    pruner.candidate_factor = opts.get("candidate_factor", dyn.CANDIDATE_FACTOR)   # (epoch 0 reads all: not drawn yet)
    train(model, split.train, config=TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=LR), seed=seed, pruner=pruner)
    pruner.close()
    acc, bacc = accuracies(model, split.val)
    out = {"setting": setting, "arch": arch, "seed": seed, "ratio": ratio, "candidate": cand, "val_acc": acc,
           "val_bacc": bacc, "saved_fraction": pruner.saved_fraction, "set_aside": int(pruner.suspect.sum())}
    if split.val_flipped is not None:
        out["val_acc_clean_labels"] = accuracies(model, clean_val(split))[0]
    if split.flipped is not None:
        out["set_aside_wrong"] = int((pruner.suspect & split.flipped).sum())
    return out


def table(rows, base="base"):
    cands = [c for c in CANDIDATES if any(x["candidate"] == c for x in rows)]
    lines = ["| setting | ratio | " + " | ".join(cands) + " |", "|---|---|" + "---|" * len(cands)]
    diffs = {c: [] for c in cands}
    for a in ARCHS:
        for s in SETTINGS:
            for r in RATIOS:
                cells = []
                for c in cands:
                    got = [x for x in rows if (x["setting"], x["arch"], x["ratio"], x["candidate"]) == (s, a, r, c)]
                    if not got:
                        cells.append("-")
                        continue
                    v = 100 * np.mean([x["val_bacc"] for x in got])
                    ref = [x for x in rows
                           if (x["setting"], x["arch"], x["ratio"], x["candidate"]) == (s, a, r, base)]
                    if ref and len(ref) == len(got):
                        diffs[c].append(v - 100 * np.mean([x["val_bacc"] for x in ref]))
                    cells.append(f"{v:.2f} (saved {np.mean([x['saved_fraction'] for x in got]):.2f})")
                lines.append(f"| mnist5k-{a}-{s} | {r} | " + " | ".join(cells) + " |")
    lines += ["", f"Mean difference to {base} (points of balanced validation accuracy), cells behind by more than 0.5:"]
    lines += [f"- {c}: {np.mean(d):+.2f} over {len(d)} cells, behind {sum(x < -0.5 for x in d)}, worst "
              f"{min(d):+.2f}" for c, d in diffs.items() if d]
    return "Balanced validation accuracy (%), mean over seeds " + ",".join(map(str, SEEDS)) + \
        "; in brackets the share of passes skipped.\n\n" + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/fit-dynamic-schedule")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--table", action="store_true", help="only print the table of what has run")
    ap.add_argument("--candidates", default="base,delta1",
                    help="comma-separated, of " + ",".join(CANDIDATES) + " (default %(default)s)")
    ap.add_argument("--base", default="base", help="the candidate the table compares with (default %(default)s)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "cells.jsonl")
    rows = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
    done = {(r["setting"], r["arch"], r["seed"], r["ratio"], r["candidate"]) for r in rows}
    chosen = args.candidates.split(",")
    todo = [(s, a, seed, r, c) for a in ARCHS for s in SETTINGS for seed in SEEDS for r in RATIOS
            for c in chosen if (s, a, seed, r, c) not in done]
    for key, res in run_cells(run_cell, [] if args.table else todo, path, args.jobs):
        rows.append(res)
        print(f"{key}: val bacc {100 * res['val_bacc']:.1f}  saved {res['saved_fraction']:.3f}", flush=True)
    text = table(rows, base=args.base)
    if not args.table:
        with open(os.path.join(args.out, "table.md"), "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
