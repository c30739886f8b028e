"""How to keep the trusted samples at high pruning ratios: top score, score strata, or uniform.

Reads the class-wise MoSo scores and evidence that ``dataprune bench`` saved in a folder (e.g.
``docs/results/moso-variants/mnist5k``), sets aside per class the ``cutoff`` fraction with the
largest accumulated gradient norm, keeps the class's quota of the rest three ways, retrains each
subset with the bench's recipe and seed, and prints test accuracy (%) per cutoff and way, mean over
the seeds. This is the measurement behind the ``auto`` policy's switch to stratified sampling from
ratio 0.8 (docs/when-does-moso-help.md).

    python benchmarks/auto_sampling.py docs/results/moso-variants/mnist5k --ratio 0.9 --cutoffs 0.1,0.2,0.3
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from dataprune import io  # noqa: E402
from dataprune.data import get_targets, load_dataset  # noqa: E402
from dataprune.evaluate import retrain  # noqa: E402
from dataprune.models import build_model  # noqa: E402
from dataprune.select import noise_cutoff_indices, num_kept  # noqa: E402
from dataprune.train import TrainConfig  # noqa: E402
from dataprune.utils import tune_cpu_allocator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="a dataprune bench output folder that scored moso_class")
    ap.add_argument("--ratio", type=float, default=0.9)
    ap.add_argument("--cutoffs", default="0.1,0.2,0.3")
    args = ap.parse_args()
    tune_cpu_allocator()
    run = json.load(open(os.path.join(args.folder, "run.json")))
    data = run["data"]
    split = load_dataset(data["dataset"], label_noise=data["label_noise"], noise_seed=data["noise_seed"])
    labels = get_targets(split.train)
    r = run["retrain"]
    cfg = TrainConfig(epochs=r["epochs"], batch_size=r["batch_size"], lr=r["lr"], momentum=r["momentum"],
                      weight_decay=r["weight_decay"])

    def make():
        return build_model(run["model"], int(labels.max()) + 1, split.input_shape)

    k = num_kept(len(labels), args.ratio)
    results: dict = {}
    for seed in run["seeds"]:
        path = os.path.join(args.folder, "scores", f"moso_class-seed{seed}.npy")
        scores, meta = io.load_array(path)
        evidence = io.load_aux(path, meta)["gradnorm"]
        for cutoff in (float(c) for c in args.cutoffs.split(",")):
            for way in ("top", "stratified", "uniform"):
                rng = np.random.default_rng(seed)
                if way == "uniform":   # a constant score: stratified sampling degenerates to uniform
                    keep = noise_cutoff_indices(np.zeros_like(scores), labels, k, evidence, cutoff,
                                                sampling="stratified", strata=1, rng=rng)
                else:
                    keep = noise_cutoff_indices(scores, labels, k, evidence, cutoff, sampling=way, rng=rng)
                keep = np.sort(keep)                  # as dp.select returns them (order seeds the shuffling)
                acc = retrain(make, split.train, split.test, keep, config=cfg, seed=seed)["test_acc"]
                results.setdefault((cutoff, way), []).append(100 * acc)
                print(f"seed {seed} cutoff {cutoff:g} {way:10s} {100 * acc:.1f}", flush=True)
    print(f"\nratio {args.ratio:g}, mean over seeds {run['seeds']}:")
    for (cutoff, way), accs in sorted(results.items()):
        print(f"  cutoff {cutoff:<4g} {way:10s} {np.mean(accs):.2f}")


if __name__ == "__main__":
    main()
