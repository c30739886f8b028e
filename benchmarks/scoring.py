"""MoSo scoring speed next to the method authors' batch-size-1 procedure and a training
epoch, all measured in one run (this machine is shared and noisy: every timing is the
best of ``--repeat`` runs, and only ratios from the same run are compared).

The reference is the authors' loop (hrtan/MoSo, scoring.py): for every checkpoint one pass
of batch-size-1 backward passes to average the gradient, then a second such pass to score
each sample. It is run on a prefix of the data (``--ref-n``) and is linear in N.

    python benchmarks/scoring.py                       # small ResNet (BatchNorm) on 32x32 inputs, CPU
    python benchmarks/scoring.py --model cnn --n 4000  # the small CNN on mnist5k
    python benchmarks/scoring.py --model resnet18 --width 64 --n 5120 --device cuda   # CIFAR ResNet-18 on a GPU
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from dataprune import moso  # noqa: E402
from dataprune.data import ArrayDataset, SubsetView, load_dataset  # noqa: E402
from dataprune.models import SmallCNN, resnet18  # noqa: E402
from dataprune.train import train  # noqa: E402
from dataprune.utils import tune_cpu_allocator  # noqa: E402


def authors_procedure(model, state, lr, x, y, device):
    """One checkpoint the authors' way: two loops of batch-size-1 gradients."""
    net = copy.deepcopy(model).to(device)
    net.load_state_dict(state)
    net.eval()
    params = [p for p in net.parameters() if p.requires_grad]
    overall = 0
    for i in range(len(x)):
        loss = F.cross_entropy(net(x[i:i + 1].to(device)), y[i:i + 1].to(device))
        g = torch.nn.utils.parameters_to_vector(torch.autograd.grad(loss, params)).detach()
        overall = overall * i / (i + 1) + g / (i + 1)
    n = len(x)
    scores = []
    for i in range(n):
        loss = F.cross_entropy(net(x[i:i + 1].to(device)), y[i:i + 1].to(device))
        g = torch.nn.utils.parameters_to_vector(torch.autograd.grad(loss, params)).detach()
        s = ((2 * n - 3) * (overall * overall).sum() - (g * g).sum()
             + (2 * n - 4) * ((overall - g / n) * g).sum()) / (n - 1) ** 2
        scores.append(float(s) * lr)
    return np.array(scores)


def build(name, n, width, seed=0):
    if name == "cnn":
        split = load_dataset("mnist5k")
        return SmallCNN(1, 10), SubsetView(split.train, np.arange(min(n, len(split.train)))), None
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g).numpy()
    return resnet18(10, (3, 32, 32), width=width), ArrayDataset(x, y), "flip_crop"


def best(fn, repeat, device):
    times, out = [], None
    for _ in range(repeat):
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet", choices=["cnn", "resnet", "resnet18"],
                    help="resnet = ResNet-18 layout at --width (default 16: a small residual net)")
    ap.add_argument("--width", type=int, default=16, help="ResNet base width (64 = the standard ResNet-18)")
    ap.add_argument("--n", type=int, default=2048, help="samples scored by moso.score")
    ap.add_argument("--ref-n", type=int, default=128, help="samples run through the batch-size-1 reference")
    ap.add_argument("--batch-size", type=int, default=256, help="scoring batch size")
    ap.add_argument("--train-batch-size", type=int, default=128, help="training batch size (the recipe's)")
    ap.add_argument("--repeat", type=int, default=3, help="timings are the best of this many runs")
    ap.add_argument("--checkpoints", type=int, default=3, help="checkpoints scored per run (cost is per checkpoint)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-allocator-tuning", action="store_true", help="measure with glibc's default malloc settings")
    args = ap.parse_args()
    if not args.no_allocator_tuning:
        tune_cpu_allocator()

    torch.manual_seed(0)
    model, ds, augment = build(args.model, args.n, args.width)
    dev = args.device

    def epoch():
        return train(copy.deepcopy(model), ds, epochs=1, batch_size=args.train_batch_size, lr=0.05,
                     augment=augment, device=dev)

    epoch()  # warm-up
    t = args.checkpoints
    res = train(copy.deepcopy(model), ds, epochs=t, batch_size=args.train_batch_size, lr=0.05,
                checkpoint_epochs=range(1, t + 1), device=dev)
    cks = res.checkpoints
    ck = cks[0]

    def score(params):
        return moso.score(model, cks, ds, batch_size=args.batch_size, params=params, device=dev)

    moso.score(model, cks[:1], ds, batch_size=args.batch_size, device=dev)  # warm-up
    # Interleaved (epoch, all, last) rounds, best of each: slow drifts of a shared machine's
    # load then hit the three alike instead of biasing their ratios.
    epoch_s = all_s = last_s = float("inf")
    for _ in range(args.repeat):
        epoch_s = min(epoch_s, best(epoch, 1, dev)[0])
        all_s = min(all_s, best(lambda: score("all"), 1, dev)[0])
        last_s = min(last_s, best(lambda: score("last_layer"), 1, dev)[0])
    all_s, last_s = all_s / t, last_s / t

    ref_n = min(args.ref_n, len(ds))
    x, y = ds.get_batch(np.arange(ref_n))
    y = torch.as_tensor(y)
    ref_s, ref = best(lambda: authors_procedure(model, ck.state, ck.lr, x, y, dev), 1, dev)
    check = moso.score(model, [ck], SubsetView(ds, np.arange(ref_n)), device=dev)
    agree = np.max(np.abs(check - ref)) / np.max(np.abs(ref))

    n = args.n
    ref_per_img = ref_s / ref_n
    name = {"cnn": "small CNN, mnist5k", "resnet": f"ResNet-18 layout, width {args.width}, 32x32",
            "resnet18": f"ResNet-18 layout, width {args.width}, 32x32"}[args.model]
    threads = torch.get_num_threads()
    print(f"{name}; N={n}; device {dev}; torch {torch.__version__}; {threads} CPU threads; best of {args.repeat}; "
          f"scoring time per checkpoint of a {t}-checkpoint run; rounds interleaved")
    print(f"  training epoch (batch {args.train_batch_size}{', flip+crop' if augment else ''}): "
          f"{epoch_s:8.2f} s   {n / epoch_s:9.1f} img/s")
    print(f"  moso.score, all parameters, 1 ckpt:       {all_s:8.2f} s   {n / all_s:9.1f} img/s")
    print(f"  moso.score, last layer, 1 ckpt:           {last_s:8.2f} s   {n / last_s:9.1f} img/s")
    print(f"  authors' batch-size-1 procedure:          {ref_per_img * n:8.2f} s   {1 / ref_per_img:9.1f} img/s"
          f"   (timed on {ref_n} images)")
    print(f"  speed-up, all parameters vs batch-size-1: {ref_per_img * n / all_s:8.2f}x")
    print(f"  speed-up, last layer vs batch-size-1:     {ref_per_img * n / last_s:8.2f}x")
    print(f"  one checkpoint, all parameters:           {all_s / epoch_s:8.2f} training epochs")
    print(f"  one checkpoint, batch-size-1 procedure:   {ref_per_img * n / epoch_s:8.2f} training epochs")
    print(f"  agreement with the reference ({ref_n} images): max relative difference {agree:.1e}")


if __name__ == "__main__":
    main()
