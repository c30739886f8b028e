"""Fit ``dynamic``'s per-class guard on the in-run label evidence (``dataprune.dynamic.CLASS_FLAG_FACTOR``) on
validation splits of mnist5k variants; the test set is never loaded.

Every cell (variant x architecture x tuning seed x ratio) trains once with the guard off and records, from the
evidence window, the share of each class's labels the evidence flags. A candidate factor k trusts every class
whose flagged share exceeds k x the overall share; where that leaves the set aside unchanged its cell *is* the
guard-off run (the runs are deterministic up to the judgment, and the judgment is all k changes), so only the
cells where a candidate changes something train again (once per distinct set of trusted classes).

Score: balanced accuracy (the mean of per-class recalls) on the stratified 20% validation part of the (varied)
training set; its labels carry the training noise, so under noise the accuracy on the validation samples the
noise left alone is reported too.

    python benchmarks/fit_dynamic.py --out runs/fit-dynamic --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))      # benchmarks/dynamic.py's clean_val

SETTINGS = {  # name -> load_dataset keywords (on top of mnist5k, val_split 0.2)
    "clean": {},
    "sym20": {"label_noise": 0.2},
    "pair20": {"label_noise": 0.2, "noise_kind": "pair"},
    "pair40": {"label_noise": 0.4, "noise_kind": "pair"},
    "lt10": {"imbalance": 10},
    "lt50": {"imbalance": 50},
}
ARCHS = ("cnn", "mlp")
SEEDS = (10, 11, 12)             # tuning seeds: the suite's are 0, 1, 2
RATIOS = (0.3, 0.5, 0.7)
FACTORS = (None, 1.5, 2.0, 3.0, 5.0)
EPOCHS, BATCH, LR = 10, 32, 0.05


def _split(setting):
    from dataprune.data import load_dataset

    return load_dataset("mnist5k", val_split=0.2, noise_seed=0, **SETTINGS[setting])


def run_cell(setting, arch, seed, ratio, factor):
    import torch

    import dataprune.dynamic as dyn
    from dataprune.evaluate import accuracies
    from dataprune.models import build_model
    from dataprune.train import TrainConfig, train
    from dataprune.utils import seed_everything
    from dynamic import clean_val  # benchmarks/dynamic.py

    torch.set_num_threads(1)
    dyn.CLASS_FLAG_FACTOR = factor
    split = _split(setting)
    seed_everything(seed)
    model = build_model(arch, split.num_classes, split.input_shape)
    pruner = dyn.DynamicPruner(split.train, model=model, epochs=EPOCHS, ratio=ratio, method="dynamic", seed=seed)
    train(model, split.train, config=TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=LR), seed=seed,
          pruner=pruner)
    pruner.close()
    acc, bacc = accuracies(model, split.val)
    out = {"setting": setting, "arch": arch, "seed": seed, "ratio": ratio, "factor": factor, "val_acc": acc,
           "val_bacc": bacc, "saved_fraction": pruner.saved_fraction, "set_aside": int(pruner.suspect.sum()),
           "evidence": pruner.evidence_decision}
    if split.val_flipped is not None:
        out["val_acc_clean_labels"] = accuracies(model, clean_val(split))[0]
    if split.flipped is not None:
        out["set_aside_wrong"] = int((pruner.suspect & split.flipped).sum())
    return out


def run_cells(fn, todo, path, jobs):
    """Run ``fn(*cell)`` for every cell of ``todo`` on ``jobs`` processes, appending each result to the JSON lines
    file ``path`` as it comes (an interrupted fit resumes from it); yields ``(cell, result)`` in order."""
    if not todo:
        return
    with ProcessPoolExecutor(jobs) as pool, open(path, "a") as f:
        for key, res in zip(todo, pool.map(fn, *zip(*todo, strict=True)), strict=True):
            f.write(json.dumps(res) + "\n")
            f.flush()
            yield key, res


def trusted(evidence, factor):
    if factor is None or not evidence:
        return ()
    share = evidence["flagged_share"]
    return tuple(sorted(int(c) for c, r in evidence["class_flagged_share"].items() if r > factor * share))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/fit-dynamic")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "cells.jsonl")
    done = {}
    if os.path.exists(path):
        for line in open(path):
            r = json.loads(line)
            done[(r["setting"], r["arch"], r["seed"], r["ratio"], r["factor"])] = r
    cells = [(s, a, seed, r) for a in ARCHS for s in SETTINGS for seed in SEEDS for r in RATIOS]

    def run_all(todo):
        for key, res in run_cells(run_cell, todo, path, args.jobs):
            done[key] = res
            print(f"{key}: val bacc {100 * res['val_bacc']:.1f}  set aside {res['set_aside']}  "
                  f"kept whole {res['evidence'].get('classes_kept_whole')}", flush=True)

    run_all([(*c, None) for c in cells if (*c, None) not in done])
    # Each candidate: the guard-off run where it trusts no class, else a run of its own (one per trusted set).
    todo, alias = [], {}
    for c in cells:
        ev = done[(*c, None)]["evidence"]
        first_for = {}
        for k in FACTORS[1:]:
            t = trusted(ev, k)
            if not t:
                alias[(*c, k)] = (*c, None)
            elif t in first_for:
                alias[(*c, k)] = first_for[t]
            else:
                first_for[t] = (*c, k)
                if (*c, k) not in done:
                    todo.append((*c, k))
    if todo:
        run_all(todo)
    table = {}
    for c in cells:
        for k in FACTORS:
            r = done[alias.get((*c, k), (*c, k))]
            table.setdefault((c[0], c[1], k), []).append(r)
    lines = ["| setting | " + " | ".join(f"k={k}" for k in FACTORS) + " |", "|---|" + "---|" * len(FACTORS)]
    means = {k: [] for k in FACTORS}
    for a in ARCHS:
        for s in SETTINGS:
            row = []
            for k in FACTORS:
                v = 100 * np.mean([r["val_bacc"] for r in table[(s, a, k)]])
                means[k].append(v)
                aside = np.mean([r["set_aside"] for r in table[(s, a, k)]])
                row.append(f"{v:.2f} ({aside:.0f})")
            lines.append(f"| mnist5k-{a}-{s} | " + " | ".join(row) + " |")
    lines.append("| mean | " + " | ".join(f"{np.mean(means[k]):.2f}" for k in FACTORS) + " |")
    lines.append("| min diff vs off | " + " | ".join(f"{np.min(np.subtract(means[k], means[None])):+.2f}"
                                                     for k in FACTORS) + " |")
    text = ("Validation balanced accuracy (%), mean over seeds " + ",".join(map(str, SEEDS)) + " and ratios "
            + ",".join(map(str, RATIOS)) + "; in brackets the mean number of samples set aside.\n\n"
            + "\n".join(lines) + "\n")
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
