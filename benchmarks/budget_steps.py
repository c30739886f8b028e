"""How many optimizer steps a budget plan's surrogate needs before its label evidence is credible.

For each budget plan of a 10-epoch recipe (batch 32, lr 0.05; the cost benchmark's), ``dp.prune(..., budget=B)``
on ``mnist5k`` and ``digits`` with 20% symmetric label noise (training set only; no test set is read). Prints one
row per plan and seed: the plan, its expected cost, the surrogate's optimizer steps, its held-out accuracy and the
share of held-out samples it explains (predicted as labelled or confidently another class; credible from 0.8), whether
the evidence was judged credible, the share of wrong labels among the kept half, and the advice the result gives
(``decisions["evidence_advice"]``: the budget that buys a surrogate with at least twice the steps). What
``dataprune.pipeline.more_training`` rests on.

    python benchmarks/budget_steps.py [--datasets mnist5k,digits] [--seeds 0,1,2] [--out rows.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

BUDGETS = (0.09, 0.11, 0.16, 0.25, 0.41)       # the cheapest plans of a 10-epoch recipe, with the evidence


def row(dataset, budget, seed):
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import dataprune as dp
    from dataprune.data import load_dataset
    from dataprune.models import build_model

    split = load_dataset(dataset, label_noise=0.2)
    res = dp.prune(lambda: build_model("cnn", split.num_classes, split.input_shape), split.train, ratio=0.5,
                   budget=budget, epochs=10, batch_size=32, lr=0.05, seed=seed)
    ev = res.decisions.get("evidence") or {}
    ev = ev[0] if isinstance(ev, list) else ev
    acc = ev.get("held_out_accuracy") or [None]
    return {"dataset": dataset, "budget": budget, "seed": seed, "plan": res.provenance["plan"],
            "expected_cost": round(res.cost.get("expected_cost_fraction", float("nan")), 3),
            "steps": _steps(res, split),
            "held_out_accuracy": acc[-1], "held_out_explained": ev.get("held_out_explained"),
            "credible": ev.get("credible"), "kept_wrong": round(float(np.asarray(split.flipped)[res.keep].mean()), 4),
            "advice": res.decisions.get("evidence_advice")}


def _steps(res, split):
    from dataprune.pipeline import PLAN_NAMES
    from dataprune.trajectory import default_checkpoint_epochs

    return PLAN_NAMES[res.provenance["plan"]].steps(10, len(split.train), 32, default_checkpoint_epochs(10),
                                                    evidence=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="mnist5k,digits")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", help="also append the rows to this JSON-lines file")
    args = ap.parse_args()
    from concurrent.futures import ProcessPoolExecutor

    cells = [(d, b, int(s)) for d in args.datasets.split(",") for b in BUDGETS for s in args.seeds.split(",")]
    with ProcessPoolExecutor(args.jobs) as ex:
        rows = list(ex.map(row, *zip(*cells, strict=True)))
    print(f"{'dataset':8s} {'plan':26s} {'cost':>5s} {'steps':>5s} {'held-out acc':>12s} {'explained':>9s} "
          f"{'credible':>8s} {'kept wrong':>10s}")
    for r in rows:
        print(f"{r['dataset']:8s} {r['plan']:26s} {r['expected_cost']:5.3f} {r['steps']:5d} "
              f"{r['held_out_accuracy'] if r['held_out_accuracy'] is not None else float('nan'):12.2f} "
              f"{r['held_out_explained'] if r['held_out_explained'] is not None else float('nan'):9.2f} "
              f"{str(r['credible']):>8s} {r['kept_wrong']:10.3f}")
    if args.out:
        with open(args.out, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
