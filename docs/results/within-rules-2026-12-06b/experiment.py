"""The within-class experiments of 2026-12-06 (second session) on the full plan's saved validation evidence
(benchmarks/fit_budget.py evidence --budget full; --budget 0.25 for the budget plan's), with the shipped neighbour mix
applied where it passes. Needs select-experiment.patch applied (experiment-only switches in select.py, the
per-checkpoint label probabilities in moso_variants.py and fit_budget.py). Candidates: ``shipped``; ``drop0.1`` /
``drop0.2`` (the strata leave out that share of a class's lowest trusted scores where noise is evident);
``stratified`` / ``random`` (within=...); ``dualw`` (each class's trusted share drawn with DUAL's ratio-aware weights,
from a separate DUAL surrogate of the same split and seed, cached in <folder>/dual/); ``dualck3`` / ``dualck5`` (the
same weights from the label's probability at the first 3 / 5 scored checkpoints of the default's own scoring pass,
eval mode: evidence ``label_prob_ckpts``, which the patch adds to the class-wise scoring and to fit_budget.py's saved
evidence); ``dualref`` (DUAL itself); ``bottom`` / ``easyprob`` (lowest scores, highest label probabilities). Each
subset is retrained with the recipe and scored on the validation samples with clean labels.

    git apply docs/results/within-rules-2026-12-06b/select-experiment.patch
    python docs/results/within-rules-2026-12-06b/experiment.py runs/fit-full clean-mlp-10,lt10-cnn-14 \
        shipped,dualw eval.csv 0.9
"""

import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "benchmarks"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "src"))


def job(folder, setting, arch, seed, names, ratios):
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
    for name in names:
        popts = dict(given)
        _sel = sys.modules["dataprune.select"]
        _sel.AUTO_MID_DROP_LOW = float(name[4:]) if name.startswith("drop") else 0.0
        sc = e["scores"]
        if name in ("dualw", "dualref"):
            dpath = os.path.join(folder, "dual", f"{setting}-{arch}-seed{seed}.npz")
            if not os.path.exists(dpath):
                import dataprune as dp
                r = dp.prune(_make(arch, split), split.train, ratio=0.5, method="dual", config=fit_budget._recipe(),
                             seed=seed)
                os.makedirs(os.path.join(folder, "dual"), exist_ok=True)
                np.savez(dpath + ".tmp.npz", scores=r.scores, label_prob=r.evidence["label_prob"])
                os.replace(dpath + ".tmp.npz", dpath)
            dd = np.load(dpath)
            _sel.AUTO_DUAL = (dd["label_prob"], dd["scores"])
            if name == "dualw":
                popts["within"] = "dualw"
        if name.startswith("dualck"):        # DUAL's weights from the scoring pass's label probabilities (eval mode)
            from dataprune.methods.dual import dual_terms

            lp = e["label_prob_ckpts"][:, :int(name[6:])].T
            ds_, mp_ = dual_terms(lp, window=lp.shape[0])
            _sel.AUTO_DUAL = (mp_, ds_)
            popts["within"] = "dualw"
        if name in ("bottom", "easyprob"):
            sc = -sc if name == "bottom" else e["probs"][np.arange(len(e["labels"])), e["labels"]].astype(np.float64)
            popts["within"] = "top"
        elif name not in ("shipped",) and not name.startswith(("drop", "dualck")) and popts.get("within") is None:
            popts["within"] = name
        for ratio in ratios:
            if name == "dualref":
                sel = selection(_sel.AUTO_DUAL[1], ratio, labels=e["labels"], policy="dual", seed=seed,
                                label_prob=_sel.AUTO_DUAL[0])
            else:
                sel = selection(sc, ratio, labels=e["labels"], policy="auto", seed=seed, probs=e["probs"],
                                features=e["features"], **popts)
            res = retrain(_make(arch, split), split.train, val, sel.keep, config=fit_budget._recipe(), seed=seed)
            rows.append({"setting": setting, "arch": arch, "seed": seed, "candidate": name, "ratio": ratio,
                         "val_acc": res["test_acc"], "val_bacc": res["test_bacc"], "n_kept": len(sel.keep),
                         "set_aside": sel.decisions.get("set_aside"), "rule": sel.decisions.get("noise_rule"),
                         "kept_flipped": float(e["flipped"][sel.keep].mean())})
    return rows


def main(folder, grid, names, out, ratios):
    jobs = [g.rsplit("-", 2) for g in grid.split(",")]          # setting-arch-seed
    import fit_budget

    with ProcessPoolExecutor(2) as ex:
        futs = [ex.submit(job, folder, s, a, int(seed), names.split(","), tuple(map(float, ratios.split(","))))
                for s, a, seed in jobs]
        for _ in fit_budget.append_rows(futs, out):
            pass


if __name__ == "__main__":
    main(*sys.argv[1:6])
