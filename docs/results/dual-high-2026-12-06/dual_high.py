"""The auto policy's DUAL weights at high ratios (select.AUTO_HIGH_DUAL) against the uniform sample they replace, on
the full plan's saved validation evidence (benchmarks/fit_budget.py evidence --budget full, which saves the training
pass's early label probabilities), with the shipped neighbour mix applied where it passes. ``uniform``: the same
selection without the record (the rule before); ``dual``: with it. Each subset is retrained with the recipe and scored
on the validation samples with clean labels.

    python docs/results/dual-high-2026-12-06/dual_high.py runs/fit-full clean-cnn-10,lt50-mlp-14 eval.csv 0.8,0.9
"""

import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "benchmarks"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "src"))


def job(folder, setting, arch, seed, ratios):
    import torch

    torch.set_num_threads(1)
    import fit_budget
    from dataprune.evaluate import retrain
    from dataprune.select import selection
    from dynamic import clean_val
    from fit_default import _make, _split

    split = _split(setting)
    val = clean_val(split)
    e = dict(np.load(os.path.join(folder, "evidence", f"{setting}-{arch}-seed{seed}.npz")))
    given = fit_budget.shipped_options(e, seed)       # the shipped neighbour gate, as the pipeline runs it
    rows = []
    for name in ("uniform", "dual"):
        extra = {"early_label_prob": e["early_label_prob"]} if name == "dual" else {}
        for ratio in ratios:
            sel = selection(e["scores"], ratio, labels=e["labels"], policy="auto", seed=seed, probs=e["probs"],
                            features=e["features"], **given, **extra)
            res = retrain(_make(arch, split), split.train, val, sel.keep, config=fit_budget._recipe(), seed=seed)
            rows.append({"setting": setting, "arch": arch, "seed": seed, "candidate": name, "ratio": ratio,
                         "sampling": sel.decisions.get("sampling"), "val_acc": res["test_acc"],
                         "val_bacc": res["test_bacc"], "n_kept": len(sel.keep),
                         "kept_flipped": float(e["flipped"][sel.keep].mean())})
    return rows


def main(folder, grid, out, ratios):
    jobs = [g.rsplit("-", 2) for g in grid.split(",")]          # setting-arch-seed
    import fit_budget

    with ProcessPoolExecutor(2) as ex:
        futs = [ex.submit(job, folder, s, a, int(seed), tuple(map(float, ratios.split(",")))) for s, a, seed in jobs]
        for _ in fit_budget.append_rows(futs, out):
            pass


if __name__ == "__main__":
    main(*sys.argv[1:5])
