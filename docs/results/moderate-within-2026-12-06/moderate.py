"""Moderate-DS within each class's trusted samples at high ratios under label noise (the full plan's penultimate
features) against the shipped uniform sample; validation splits only."""
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

WT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")  # with moderate.patch applied
SETS = os.environ.get("SETS", "sym20,pair20,sym40,pair40").split(",")
sys.path.insert(0, os.path.join(WT, "benchmarks"))
sys.path.insert(0, os.path.join(WT, "src"))


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
    given = fit_budget.shipped_options(e, seed)
    rows = []
    for ratio in ratios:
        for name in ("uniform", "moderate"):
            extra = {"within": "moderate"} if name == "moderate" else {}
            sel = selection(e["scores"], ratio, labels=e["labels"], policy="auto", seed=seed, probs=e["probs"],
                            features=e["features"], **given, **extra)
            res = retrain(_make(arch, split), split.train, val, sel.keep, config=fit_budget._recipe(), seed=seed)
            rows.append({"family": os.environ.get("DATAPRUNE_FIT_FAMILY", "mnist5k"), "setting": setting, "arch": arch,
                         "seed": seed, "candidate": name, "ratio": ratio, "sampling": sel.decisions.get("sampling"),
                         "noise_evident": sel.decisions.get("noise_evident"), "val_acc": res["test_acc"],
                         "val_bacc": res["test_bacc"], "n_kept": len(sel.keep)})
    return rows


def main(folder, seeds, out, ratios):
    import fit_budget

    jobs = [(s, a, int(seed)) for s in SETS for a in ("cnn", "mlp") for seed in seeds.split(",")]
    with ProcessPoolExecutor(2) as ex:
        futs = [ex.submit(job, folder, s, a, seed, tuple(map(float, ratios.split(",")))) for s, a, seed in jobs]
        for _ in fit_budget.append_rows(futs, out):
            pass


if __name__ == "__main__":
    main(*sys.argv[1:5])
