"""What the judge sees at every checkpoint of a full-plan surrogate, on training data only (no test set is read).

Runs ``dp.prune`` (the full plan, ratio 0.5) and records, for the held-out share the judge reads, the class
probabilities at every checkpoint (probes included), the labels, and which of those labels the generated noise
flipped. From these, ``table`` prints per run the judge's verdict before 2026-12-06 (rising at the last checkpoint =
still learning) and now (unless its flags held, :func:`dataprune.evidence.flags_hold`), and what that test reads:
the held-out accuracy at the last two checkpoints, how many samples it flagged / got wrong unsure at the checkpoint
before, the share of each predicted as labelled at the last (``flags_resolved`` / ``unsure_resolved``) and their
``ratio``, against the truth (``flags_clean``: the share of its last flags that are clean labels). The runs behind
docs/results/trend-2026-12-06.

    python benchmarks/trend_judgments.py run --out runs/trend --cases mnist5k:cnn:sym40:1,digits-png:cnn:clean:0
    python benchmarks/trend_judgments.py table --out runs/trend

A case is ``DATA:ARCH:NOISE:SEED[:EPOCHS[:BATCH]]``: the recipe's epochs (default 10; digits 15) and batch size
(default 32 at lr 0.05; 128 and up at lr 0.1). DATA ``mnist5k`` reads the training split that the suite and
benchmarks/fit_default.py share (val_split 0.2; the suite's seeds are 0-2, the tuning seeds 10 and up), ``digits``
the suite's sklearn digits split, ``digits-png`` sklearn digits written as PNG files and read as an image folder at
batch 128 with flip+crop (the case the still-learning test was built on; its train/ folder only). NOISE: clean,
sym20, sym40, pair20, pair40, lt10, lt50.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

NOISE = {"clean": {}, "sym20": {"label_noise": 0.2}, "sym40": {"label_noise": 0.4},
         "pair20": {"label_noise": 0.2, "noise_kind": "pair"}, "pair40": {"label_noise": 0.4, "noise_kind": "pair"},
         "lt10": {"imbalance": 10}, "lt50": {"imbalance": 50}}


def run_case(case, out):
    import torch

    torch.set_num_threads(1)
    import dataprune as dp
    import dataprune.pipeline as pipeline
    from dataprune.data import load_dataset
    from dataprune.methods.uncertainty import probabilities
    from dataprune.models import build_model
    from dataprune.train import TrainConfig

    data, arch, noise, seed, *rest = case.split(":")
    seed, epochs = int(seed), int(rest[0]) if rest else (15 if data == "digits" else 10)
    batch = int(rest[1]) if len(rest) > 1 else 32
    path = os.path.join(out, f"{case.replace(':', '-')}.npz")
    if os.path.exists(path):
        return path
    tmp = None
    if data == "digits-png":
        from imagefolder_clean import write_digits_pngs

        tmp = tempfile.TemporaryDirectory()
        write_digits_pngs(tmp.name)
        split = load_dataset("imagefolder", root=tmp.name, image_size=32, noise_seed=0, **NOISE[noise])
        config = TrainConfig(epochs=epochs, batch_size=128, lr=0.1, augment="flip_crop")
    else:
        split = load_dataset(data, val_split=0.2, noise_seed=0, **NOISE[noise])
        config = TrainConfig(epochs=epochs, batch_size=batch, lr=0.1 if batch >= 128 else 0.05)
    seen = {}
    judge = pipeline.judge

    def capture(model, cks, dataset, *, held=None, **k):
        report = judge(model, cks, dataset, held=held, **k)
        from dataprune.data import SubsetView, get_targets
        from dataprune.trajectory import as_checkpoints

        cks = as_checkpoints(cks)
        seen["probs"] = np.stack([p.numpy() for p in probabilities(model, cks, SubsetView(dataset, held))])
        seen["held"] = np.asarray(held)
        seen["labels"] = get_targets(dataset)[held]
        seen["epochs"] = np.array([c.epoch for c in cks])
        seen["report"] = report
        return report

    pipeline.judge = capture
    try:
        res = dp.prune(lambda: build_model(arch, split.num_classes, split.input_shape), split.train, ratio=0.5,
                       config=config, seed=seed)
    finally:
        pipeline.judge = judge
    flipped = split.flipped if split.flipped is not None else np.zeros(len(split.train), bool)
    kept_wrong = float(flipped[res.keep].mean())
    np.savez_compressed(path + ".tmp.npz", probs=seen["probs"], held=seen["held"], labels=seen["labels"],
                        epochs=seen["epochs"], flipped=flipped[seen["held"]], report=json.dumps(seen["report"]),
                        kept_wrong=kept_wrong)
    os.replace(path + ".tmp.npz", path)
    if tmp is not None:
        tmp.cleanup()
    return path


def stats(path):
    from dataprune.evidence import COLLAPSED_SPREAD, CREDIBLE_EXPLAINED, flags_hold, flags_resolved, tolerance
    from dataprune.select import confident_noise

    z = np.load(path)
    report = json.loads(str(z["report"]))
    probs, y, flipped, epochs = z["probs"], z["labels"], z["flipped"], z["epochs"]
    name = os.path.basename(path)[:-4]
    if not len(y):          # too few samples to hold any out: credibility not judged
        return {"run": name, "verdict": "not judged", "verdict_before": "not judged",
                "kept_wrong": round(float(z["kept_wrong"]), 4)}
    order = np.argsort(epochs)
    last, prev = order[-1], order[-2]
    acc = [(probs[k].argmax(1) == y).mean() for k in range(len(epochs))]
    # The verdicts before 2026-12-06 (rising at the last checkpoint = still learning) and with the flag test, from
    # the probabilities (the run may have been judged by either code).
    others = bool(report.get("held_out_explained", 0) >= CREDIBLE_EXPLAINED
                  and report.get("held_out_spread", 0) >= COLLAPSED_SPREAD)
    rising = report.get("evidence_epochs") == [int(epochs[last])] and \
        acc[last] - acc[prev] > tolerance(acc[last], len(y))
    moved = flags_resolved(probs[prev], probs[last], y)
    before = "still learning" if rising else ("credible" if others else "not credible")
    now = "still learning" if rising and not flags_hold(moved) else ("credible" if others else "not credible")
    flag_last = confident_noise(probs[last], y, "confident")["suspect"]
    ratio = moved["flags_resolved"] / moved["unsure_resolved"] if moved["flags_resolved"] is not None and \
        moved["unsure_resolved"] else None
    return {"run": name, "verdict_before": before, "verdict": now, "rising": bool(rising),
            "evidence_epochs": report.get("evidence_epochs"), "epochs": [int(e) for e in epochs[order]],
            "acc": [round(float(acc[k]), 3) for k in order], "rise": round(float(acc[last] - acc[prev]), 3),
            "explained": report.get("held_out_explained"), "flagged": round(float(flag_last.mean()), 3),
            "flags_clean": round(float((flag_last & ~flipped).sum() / max(flag_last.sum(), 1)), 3),
            **moved, "ratio": None if ratio is None else round(ratio, 3),
            "kept_wrong": round(float(z["kept_wrong"]), 4)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["run", "table"])
    ap.add_argument("--out", default="runs/trend")
    ap.add_argument("--cases", default="")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.phase == "run":
        cases = [c for c in a.cases.split(",") if c]
        with ProcessPoolExecutor(a.jobs) as ex:
            for f in as_completed([ex.submit(run_case, c, a.out) for c in cases]):
                print(f.result(), flush=True)
        return
    for name in sorted(os.listdir(a.out)):
        if name.endswith(".npz") and not name.endswith(".tmp.npz"):
            print(json.dumps(stats(os.path.join(a.out, name))))


if __name__ == "__main__":
    main()
