"""A way of keeping each class's trusted samples at high ratios (the auto policy's ``within=``: ``kcenter`` with
kcenter.patch applied, ``moderate`` with ../moderate-within-2026-12-06/moderate.patch) against the shipped uniform
sample, on saved full-plan evidence (benchmarks/fit_budget.py evidence --budget full); validation splits only. The
family is DATAPRUNE_FIT_FAMILY's (benchmarks/fit_default.py).

    python within_high.py kcenter clean,lt10,lt50 <evidence folder> 10,11,12,13 kcenter-eval-mnist5k.csv 0.8,0.9
    python within_high.py moderate sym20,pair20,sym40,pair40 <evidence folder> 10,11,12,13 eval-mnist5k.csv 0.8,0.9
"""
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")   # with the candidate's patch
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, os.path.join(ROOT, "src"))


def job(within, folder, setting, arch, seed, ratios):
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
    given = fit_budget.shipped_options(e, seed)
    rows = []
    for ratio in ratios:
        for name in ("uniform", within):
            extra = {"within": within} if name == within else {}
            sel = selection(e["scores"], ratio, labels=e["labels"], policy="auto", seed=seed, probs=e["probs"],
                            features=e["features"], **given, **extra)
            res = retrain(_make(arch, split), split.train, val, sel.keep, config=fit_budget._recipe(), seed=seed)
            rows.append({"family": os.environ.get("DATAPRUNE_FIT_FAMILY", "mnist5k"), "setting": setting, "arch": arch,
                         "seed": seed, "candidate": name, "ratio": ratio, "sampling": sel.decisions.get("sampling"),
                         "noise_evident": sel.decisions.get("noise_evident"), "val_acc": res["test_acc"],
                         "val_bacc": res["test_bacc"], "n_kept": len(sel.keep)})
    return rows


def main(within, settings, folder, seeds, out, ratios):
    import fit_budget

    jobs = [(s, a, int(seed)) for s in settings.split(",") for a in ("cnn", "mlp") for seed in seeds.split(",")]
    with ProcessPoolExecutor(2) as ex:
        futs = [ex.submit(job, within, folder, s, a, seed, tuple(map(float, ratios.split(",")))) for s, a, seed in jobs]
        for _ in fit_budget.append_rows(futs, out):
            pass


if __name__ == "__main__":
    main(*sys.argv[1:7])
