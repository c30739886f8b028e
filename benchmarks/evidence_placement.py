"""Where to read the label evidence, measured per checkpoint on training data only (no test set is read).

A surrogate trains on 90% of the training set (a class-stratified 10% held out) with a checkpoint after
every epoch. Per checkpoint it prints, one JSON line each: accuracy on the held-out 10% and on trained-on
samples (``acc_hold``, ``acc_train``), and for the adaptive and the confident noise rules read from that
epoch and the one before, the share of the trained-on samples flagged and its precision and recall
against the labels the noise flipped. The runs behind ``docs/results/evidence/placement.jsonl`` and the
table in docs/when-does-moso-help.md.

    python benchmarks/evidence_placement.py mnist5k 0.4 symmetric 32 10 none cnn
    python benchmarks/evidence_placement.py imagefolder 0 symmetric 128 10 flip_crop cnn   # digits as PNG files

Arguments: dataset, noise rate, noise kind, batch size, epochs, augmentation, model.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

from dataprune.data import get_targets, load_dataset  # noqa: E402
from dataprune.methods.uncertainty import probabilities  # noqa: E402
from dataprune.models import build_model  # noqa: E402
from dataprune.quotas import stratified_fraction  # noqa: E402
from dataprune.select import confident_noise  # noqa: E402
from dataprune.train import TrainConfig, train  # noqa: E402
from imagefolder_clean import write_digits_pngs  # noqa: E402


def main(argv):
    name, noise, kind, bs, epochs, aug, model_name = argv[0], float(argv[1]), argv[2], int(argv[3]), int(argv[4]), \
        argv[5], argv[6]
    torch.set_num_threads(1)
    tmp = None
    root = None
    if name == "imagefolder":
        tmp = tempfile.TemporaryDirectory()
        root = tmp.name
        write_digits_pngs(root)
    split = load_dataset(name, root=root, image_size=32, label_noise=noise, noise_kind=kind, noise_seed=0)
    y = get_targets(split.train)
    n = len(y)
    hold = stratified_fraction(y, 0.1, 0)
    fit = np.setdiff1d(np.arange(n), hold)
    flipped = split.flipped if split.flipped is not None else np.zeros(n, bool)
    torch.manual_seed(0)
    model = build_model(model_name, split.num_classes, split.input_shape)
    cfg = TrainConfig(epochs=epochs, batch_size=bs, lr=0.1 if bs >= 128 else 0.05,
                      augment=None if aug == "none" else aug)
    run = train(model, split.train, indices=fit, config=cfg, checkpoint_epochs=range(1, epochs + 1))
    probs = [p.numpy() for p in probabilities(model, run.checkpoints, split.train)]
    for k, ck in enumerate(run.checkpoints):
        p = probs[k]
        evidence = (probs[k] + probs[k - 1]) / 2 if k else p
        out = {"epoch": ck.epoch, "acc_hold": round(float((p[hold].argmax(1) == y[hold]).mean()), 3),
               "acc_train": round(float((p[fit].argmax(1) == y[fit]).mean()), 3)}
        for rule in ("adaptive", "confident"):
            s = confident_noise(evidence[fit], y[fit], rule)["suspect"]
            f = flipped[fit]
            out[rule] = round(float(s.mean()), 3)
            out[rule + "_prec"] = round(float((s & f).sum() / max(s.sum(), 1)), 2)
            out[rule + "_rec"] = round(float((s & f).sum() / max(f.sum(), 1)), 2)
        out["hold_flag"] = round(float(confident_noise(evidence[hold], y[hold], "confident")["suspect"].mean()), 3)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
