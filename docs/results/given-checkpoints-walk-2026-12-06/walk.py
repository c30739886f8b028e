"""Given checkpoints (nothing held out): the start-of-schedule evidence against the walk to the first pair of
checkpoints where the run no longer reads as still learning (walk.patch, applied to the code of its commit). mnist5k
validation splits; the test set is never read.

    python walk.py <src of the patched code> rows.jsonl
"""

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SETTINGS = {"clean": {}, "sym20": {"label_noise": 0.2}, "pair20": {"label_noise": 0.2, "noise_kind": "pair"},
            "sym40": {"label_noise": 0.4}}
RECIPES = {"suite": (32, 0.05), "slow": (128, 0.01)}          # batch size, peak learning rate; 10 epochs


def cell(src, setting, arch, recipe, seed):
    sys.path.insert(0, src)
    sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "benchmarks"))
    import torch

    torch.set_num_threads(1)
    import dataprune as dp
    import dataprune.evidence as ev
    from dataprune.data import load_dataset
    from dataprune.evaluate import retrain
    from dataprune.models import build_model
    from dataprune.train import TrainConfig
    from dynamic import clean_val

    split = load_dataset("mnist5k", val_split=0.2, noise_seed=0, **SETTINGS[setting])
    bs, lr = RECIPES[recipe]
    cfg = TrainConfig(epochs=10, batch_size=bs, lr=lr)

    def make():
        return build_model(arch, 10, split.input_shape)

    torch.manual_seed(seed)
    run = dp.train(make(), split.train, config=cfg, seed=seed, checkpoint_epochs=[1, 3, 5, 7, 9])
    cks = [(c.state, c.lr) for c in run.checkpoints]         # as a user hands them over: no epochs
    flipped = split.flipped if split.flipped is not None else np.zeros(len(split.train), bool)
    out = {"setting": setting, "arch": arch, "recipe": recipe, "seed": seed}
    walk = ev._walk_to_learnt
    res = {}
    for name in ("segment", "walk"):
        ev._walk_to_learnt = walk if name == "walk" else (lambda *a, **k: None)
        r = dp.prune(make, split.train, ratio=0.5, checkpoints=cks, seed=seed)
        res[name] = r
        out[name + "_kept_wrong"] = float(flipped[r.keep].mean())
        out[name + "_set_aside"] = r.decisions.get("set_aside")
        out[name + "_evidence"] = {k: r.decisions["evidence"].get(k) for k in ("evidence_epochs", "credible", "walk")}
    ev._walk_to_learnt = walk
    out["same"] = bool(np.array_equal(res["segment"].keep, res["walk"].keep))
    val = clean_val(split)
    for name in ("segment", "walk"):
        if name == "walk" and out["same"]:
            out["walk_bacc"] = out["segment_bacc"]
            continue
        out[name + "_bacc"] = retrain(make, split.train, val, res[name].keep, config=cfg, seed=seed)["test_bacc"]
    return out


def main(src, path):
    jobs = [(src, s, a, r, seed) for r in RECIPES for s in SETTINGS for a in ("cnn", "mlp") for seed in (10, 11)]
    done = set()
    if os.path.exists(path):
        for line in open(path):
            d = json.loads(line)
            done.add((d["setting"], d["arch"], d["recipe"], d["seed"]))
    jobs = [j for j in jobs if j[1:] not in done]
    with ProcessPoolExecutor(2) as ex, open(path, "a") as f:
        for r in ex.map(cell, *zip(*jobs, strict=True)):
            f.write(json.dumps(r, default=str) + "\n")
            f.flush()
    rows = [json.loads(line) for line in open(path)]
    change = [100 * (r["walk_bacc"] - r["segment_bacc"]) for r in rows]
    print(f"{len(rows)} cells, the walk moves the evidence in {sum(not r['same'] for r in rows)}: "
          f"mean change {np.mean(change):+.2f}, lowest {min(change):+.2f}, highest {max(change):+.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
