"""Data loading with and without worker processes, measured side by side in one run.

Two cases of issue 18 (defect 7), each timed ``--repeat`` times alternately with 0 and ``--workers``
workers (best of the repeats; this machine is shared and noisy, so only the ratio is meant):

* decode-bound: one surrogate epoch on an image folder of PNG files (sklearn digits upscaled to
  ``--size`` pixels), where decoding dominates; workers decode in parallel with training;
* in-memory: a 3-epoch ``dp.prune`` on an in-memory dataset, where workers cannot help and must not
  hurt (a DataLoader and its worker pool were once built for every training step: 6.1 s -> 25.5 s).

    python benchmarks/loader_workers.py
    python benchmarks/loader_workers.py --size 64 --workers 2 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

import dataprune as dp  # noqa: E402
from dataprune.data import load_dataset  # noqa: E402
from dataprune.models import build_model  # noqa: E402
from imagefolder_clean import write_digits_pngs  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64, help="image side in pixels (decode cost)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        write_digits_pngs(root, size=args.size)
        split = load_dataset("imagefolder", root=root, image_size=args.size)
        make = lambda: build_model("cnn", split.num_classes, split.input_shape)  # noqa: E731
        cfg = dp.TrainConfig(epochs=1, batch_size=64)
        times = {0: [], args.workers: []}
        for _ in range(args.repeat):
            for w in times:
                times[w].append(timed(lambda w=w: dp.train(make(), split.train, config=cfg, num_workers=w)))
        a, b = min(times[0]), min(times[args.workers])
        print(f"image folder ({len(split.train)} PNG files, {args.size}x{args.size}), one epoch: "
              f"0 workers {a:.2f} s, {args.workers} workers {b:.2f} s -> {a / b:.2f}x")

    mem = load_dataset("digits")
    mk = lambda: build_model("cnn", mem.num_classes, mem.input_shape)  # noqa: E731
    times = {0: [], args.workers: []}
    for _ in range(args.repeat):
        for w in times:
            times[w].append(timed(lambda w=w: dp.prune(mk, mem.train, ratio=0.5, method="moso_class", epochs=3,
                                                       batch_size=32, num_workers=w, holdout=0)))
    a, b = min(times[0]), min(times[args.workers])
    print(f"in-memory digits ({len(mem.train)} samples), 3-epoch dp.prune: 0 workers {a:.2f} s, "
          f"{args.workers} workers {b:.2f} s -> {b / a:.2f}x the time without workers")


if __name__ == "__main__":
    main()
