"""Fit ``dynamic``'s credibility test on its in-run label evidence (``dataprune.dynamic.CREDIBLE_EXPLAINED``) on
mnist5k variants; the test set is never loaded.

``dynamic`` sets aside the samples whose label its own predictions over the evidence window contradict. A run that
has not learnt the task contradicts clean labels too (the user's path: a weak model set aside 14% of the data, 41%
of it clean, and ended 2.8 below full data). The candidate test is the share of samples the window's mean
probabilities *explain*: predicted as labelled, or confidently put in another class (the static judge's test,
:data:`dataprune.evidence.CREDIBLE_EXPLAINED`, read there on held-out samples, here on the training pass).

Every cell (variant x architecture x tuning seed x recipe) trains until the evidence window closes (the epochs
before it read the full data whatever the ratio, so the judgment does not depend on it) and records the explained
share, the spread, and the precision / recall of the flags against the known flips of the training labels. The
recipes: the suite's (lr 0.05), and two that learn less by the window's end: lr 0.005 and lr 0.002 (a model that
has learnt the task only partly, as a user's weak model or a data bug gives).

    python benchmarks/fit_dynamic_credibility.py --out runs/fit-dynamic-credibility --jobs 2

Each cell also records how the window's last epoch fares on the mistakes of the one before (``moved``: the
still-learning test, ``dataprune.dynamic.still_learning``); ``--batch 128`` and ``--epochs 40`` are the recipes it
was checked on out of sample (docs/results/still-learning-2026-12-06).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))      # benchmarks/dynamic.py's clean_val
from fit_dynamic import run_cells  # noqa: E402  (benchmarks/fit_dynamic.py: resumable cells on a process pool)

SETTINGS = {
    "clean": {},
    "sym20": {"label_noise": 0.2},
    "sym40": {"label_noise": 0.4},
    "pair20": {"label_noise": 0.2, "noise_kind": "pair"},
    "lt10": {"imbalance": 10},
    "lt10-sym20": {"imbalance": 10, "label_noise": 0.2},
    "lt50": {"imbalance": 50},
    "pair40": {"label_noise": 0.4, "noise_kind": "pair"},
}
ARCHS = ("cnn", "mlp")
SEEDS = (10, 11, 12)          # tuning seeds: the suite's are 0, 1, 2
LRS = (0.05, 0.005, 0.002)
EPOCHS, BATCH = 10, 32


class _Judged(Exception):
    pass


DATASET = "mnist5k"          # --dataset digits: only to see which of the suite's cells a rule would change
RULE = None                  # --rule: dynamic.EVIDENCE_RULE for every run (default: the shipped one)
UNLEARNT = None              # --unlearnt: dynamic.CLASS_UNLEARNT_FACTOR for every run (default: the shipped one)


def run_cell(setting, arch, seed, lr):
    import torch

    import dataprune.dynamic as dyn
    from dataprune.data import load_dataset
    from dataprune.models import build_model
    from dataprune.train import TrainConfig, train
    from dataprune.utils import seed_everything

    torch.set_num_threads(1)
    if RULE:
        dyn.EVIDENCE_RULE = RULE
    if UNLEARNT is not None:
        dyn.CLASS_UNLEARNT_FACTOR = UNLEARNT
    split = load_dataset(DATASET, val_split=0.2, noise_seed=0, **SETTINGS[setting])
    seed_everything(seed)
    model = build_model(arch, split.num_classes, split.input_shape)
    pruner = dyn.DynamicPruner(split.train, model=model, epochs=EPOCHS, ratio=0.5, method="dynamic", seed=seed)
    judge = pruner._judge_labels

    def judged(*args):
        judge(*args)
        raise _Judged

    pruner._judge_labels = judged           # stop training once the window is judged: nothing after it counts
    try:
        train(model, split.train, config=TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=lr), seed=seed,
              pruner=pruner)
    except _Judged:
        pass
    pruner.close()
    ev = pruner.evidence_decision
    flipped = split.flipped if split.flipped is not None else np.zeros(len(split.train), bool)
    labels = pruner.labels
    probs = pruner.evidence["probs"]
    from dataprune.select import confident_noise

    flags = confident_noise(probs, labels, dyn.EVIDENCE_RULE)["suspect"]
    clean = ~flipped
    top = np.sort(probs, axis=1)[:, -2:]
    return {"setting": setting, "arch": arch, "seed": seed, "lr": lr, "epochs": EPOCHS, "batch": BATCH,
            "credible": ev["credible"], "set_aside": int(pruner.suspect.sum()), "moved": ev.get("window_moved"),
            "kept_whole": ev["classes_kept_whole"], "explained": ev["explained"],
            "spread": ev["spread"], "flagged": float(flags.mean()),
            "precision": float(flipped[flags].mean()) if flags.any() else None,
            "recall": float(flags[flipped].mean()) if flipped.any() else None,
            "clean_flagged": float(flags[clean].mean()),
            "train_acc_clean_labels": float((probs.argmax(1) == labels)[clean].mean()),
            # candidates read from the outputs alone (no knowledge of the flips)
            "agree": float((probs.argmax(1) == labels).mean()),
            "unflagged_acc": float((probs.argmax(1) == labels)[~flags].mean()),
            "mean_maxprob": float(probs.max(1).mean()),
            "decided": float((probs.max(1) >= 0.5).mean()),
            "margin": float(np.mean(top[:, -1] - top[:, -2])),
            "log_ratio": float(np.median(np.log(top[:, -1] / np.maximum(top[:, -2], 1e-12))))}


def run_full(setting, arch, seed, lr, aside):
    """The whole 10-epoch run at ratio 0.5, with the set-aside as judged (``aside``) or with nothing set aside:
    balanced accuracy on the validation samples whose label the noise left alone."""
    import torch

    import dataprune.dynamic as dyn
    from dataprune.data import load_dataset
    from dataprune.evaluate import accuracies
    from dataprune.models import build_model
    from dataprune.train import TrainConfig, train
    from dataprune.utils import seed_everything
    from dynamic import clean_val  # benchmarks/dynamic.py

    torch.set_num_threads(1)
    if RULE:
        dyn.EVIDENCE_RULE = RULE
    if UNLEARNT is not None:
        dyn.CLASS_UNLEARNT_FACTOR = UNLEARNT
    split = load_dataset("mnist5k", val_split=0.2, noise_seed=0, **SETTINGS[setting])
    seed_everything(seed)
    model = build_model(arch, split.num_classes, split.input_shape)
    pruner = dyn.DynamicPruner(split.train, model=model, epochs=EPOCHS, ratio=0.5, method="dynamic", seed=seed)
    if not aside:
        judge = pruner._judge_labels

        def judged(*args):
            judge(*args)
            pruner.suspect[:] = False

        pruner._judge_labels = judged
    train(model, split.train, config=TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=lr), seed=seed,
          pruner=pruner)
    pruner.close()
    acc, bacc = accuracies(model, clean_val(split))
    return {"setting": setting, "arch": arch, "seed": seed, "lr": lr, "batch": BATCH, "aside": aside, "val_acc": acc,
            "val_bacc": bacc, "saved_fraction": pruner.saved_fraction, "set_aside": int(pruner.suspect.sum())}


CANDIDATES = ("explained", "mean_maxprob", "decided", "agree", "unflagged_acc", "margin", "log_ratio")


def fit_table(stats, full):
    """For each candidate statistic and threshold t: the mean gain in balanced validation accuracy over always
    setting aside, when a run whose statistic is below t sets nothing aside; the lowest cell's gain; how many of
    the suite recipe's (lr 0.05) noisy cells it would stop setting aside."""
    keys = [k for k in stats if (*k, True) in full and (*k, False) in full]
    gain = {k: full[(*k, False)]["val_bacc"] - full[(*k, True)]["val_bacc"] for k in keys}
    lines = ["| statistic | threshold | mean gain (points) | lowest cell | cells not credible | suite-recipe noisy "
             "cells not credible |", "|---|---|---|---|---|---|"]
    best = None
    for cand in CANDIDATES:
        values = sorted({round(stats[k][cand], 3) for k in keys})
        for t in [0.0] + [v + 1e-4 for v in values]:
            off = [k for k in keys if stats[k][cand] < t]
            g = [gain[k] if k in off else 0.0 for k in keys]
            suite = sum(1 for k in off if k[3] == 0.05 and k[0] not in ("clean", "lt10"))
            row = (100 * float(np.mean(g)), 100 * min(g), len(off), suite)
            if best is None or row[0] > best[2][0] + 1e-9:
                best = (cand, t, row)
            if t in (0.0,) or cand in ("explained", "mean_maxprob", "decided", "margin", "log_ratio"):
                lines.append(f"| {cand} | {t:.3f} | {row[0]:+.2f} | {row[1]:+.2f} | {row[2]}/{len(keys)} | {row[3]} |")
    return lines, best, gain


CELL_KEY = ("setting", "arch", "seed", "lr")


def _read(path, key):
    """The rows of a JSON lines file written by an earlier (perhaps interrupted) run, by ``key``."""
    rows = {}
    if os.path.exists(path):
        for line in open(path):
            r = json.loads(line)
            rows[tuple(r[k] for k in key)] = r
    return rows


def main(argv=None) -> int:
    global DATASET, RULE, UNLEARNT, EPOCHS, BATCH
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/fit-dynamic-credibility")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--full", action="store_true",
                    help="also train every cell to the end with and without the set-aside (the fit itself)")
    ap.add_argument("--full-seeds", type=int, nargs="+", default=[10, 11])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--rule", default=None, help="dynamic.EVIDENCE_RULE for every run (default: the shipped one)")
    ap.add_argument("--unlearnt", type=float, default=None, help="dynamic.CLASS_UNLEARNT_FACTOR for every run")
    ap.add_argument("--aside-only", action="store_true", help="phase 2: only the runs with the set-aside")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--lrs", type=float, nargs="+", default=list(LRS))
    ap.add_argument("--epochs", type=int, default=EPOCHS, help="the recipe's length (the window is 10-30%% of it)")
    ap.add_argument("--batch", type=int, default=BATCH, help="the recipe's batch size (fewer steps per epoch: a run "
                    "that is still learning in the window)")
    args = ap.parse_args(argv)
    DATASET, RULE, UNLEARNT, EPOCHS, BATCH = args.dataset, args.rule, args.unlearnt, args.epochs, args.batch
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "cells.jsonl")
    done = _read(path, CELL_KEY)
    todo = [(s, a, seed, lr) for lr in args.lrs for a in ARCHS for s in args.settings for seed in args.seeds
            if (s, a, seed, lr) not in done]
    for key, res in run_cells(run_cell, todo, path, args.jobs):
        done[key] = res
        print(json.dumps(res), flush=True)
    rows = list(done.values())
    if args.full:
        fpath = os.path.join(args.out, "full.jsonl")
        full = _read(fpath, CELL_KEY + ("aside",))
        cells = [(s, a, seed, lr, aside) for lr in args.lrs for a in ARCHS for s in args.settings
                 for seed in args.full_seeds
                 for aside in ((True,) if args.aside_only else (True, False)) if (s, a, seed, lr, aside) not in full]
        for key, res in run_cells(run_full, cells, fpath, args.jobs):
            full[key] = res
            print(json.dumps(res), flush=True)
        if args.aside_only:
            return 0
        lines, best, gain = fit_table(done, full)
        print("\n".join(lines))
        print(f"best: {best[0]} < {best[1]:.3f}: mean gain {best[2][0]:+.2f}, lowest cell {best[2][1]:+.2f}, "
              f"{best[2][2]} cells not credible, {best[2][3]} suite-recipe noisy cells among them")
        for k, g in sorted(gain.items(), key=lambda kv: kv[1]):
            st = done[k]
            print(f"  {k}: gain of setting nothing aside {100 * g:+.2f}; " +
                  ", ".join(f"{c} {st[c]:.3f}" for c in CANDIDATES) +
                  f"; precision {st['precision'] if st['precision'] is not None else float('nan'):.2f}")
    print("\n| setting | arch | lr | explained (min-max) | flagged | precision | recall | clean labels flagged |")
    print("|---|---|---|---|---|---|---|---|")
    for lr in LRS:
        for a in ARCHS:
            for s in SETTINGS:
                mine = [r for r in rows if r["setting"] == s and r["arch"] == a and r["lr"] == lr]
                if not mine:
                    continue
                ex = [r["explained"] for r in mine]
                prec = [r["precision"] for r in mine if r["precision"] is not None]
                rec = [r["recall"] for r in mine if r["recall"] is not None]
                print(f"| {s} | {a} | {lr} | {min(ex):.3f}-{max(ex):.3f} | {np.mean([r['flagged'] for r in mine]):.3f} "
                      f"| {np.mean(prec) if prec and ('sym' in s or 'pair' in s) else float('nan'):.3f} "
                      f"| {np.mean(rec) if rec else float('nan'):.3f} "
                      f"| {np.mean([r['clean_flagged'] for r in mine]):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
