"""The first thing to run on a lent GPU: one short script (under 5 minutes on one GPU), every figure
measured side by side in the same run.

On a CIFAR-shaped ResNet-18 (3x32x32 inputs, 10 classes, a learnable signal, ``--n`` samples):

1. scoring speed: ``moso.score`` over all parameters and over the head, per checkpoint, against the
   method authors' batch-size-1 procedure (timed on ``--ref-n`` samples, linear in N), and their
   agreement there;
2. peak memory of training and of scoring (``torch.cuda.max_memory_allocated``; the process's peak
   resident memory on the CPU);
3. autocast: a training epoch in fp32, bf16 and (CUDA) fp16 with a gradient scaler;
4. the cost of the default pipeline: ``dp.prune`` (recommended default, its full plan, and
   ``budget=0.25``, 0.5 with ``--tiny``) against one full training run of the same recipe, both timed here;
5. pruning while training in a user's loop on the device: ``DynamicPruner("dynamic", ratio 0.5)`` with bf16 autocast
   where the device has it, a ``OneCycleLR`` stretched over the pruned epochs (it must end at the schedule's end), a
   state saved after the second epoch and a resumed run that must end at the same weights; its time per epoch
   against the same loop unpruned, and the free memory the class-means check reads (``available_memory``).

It writes ``--out`` (JSON) and prints a table. ``--tiny`` runs the same code on a few dozen 16x16
images on the CPU in seconds (the test suite does, so the script cannot rot).

    python benchmarks/gpu_check.py --out gpu_check.json            # on the GPU machine
    python benchmarks/gpu_check.py --tiny                          # CPU smoke run
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

import dataprune as dp  # noqa: E402
from dataprune import moso  # noqa: E402
from dataprune.data import ArrayDataset, SubsetView  # noqa: E402
from dataprune.models import resnet18  # noqa: E402
from scoring import authors_procedure  # noqa: E402


def cifar_like(n, size, seed=0):
    """uint8 images whose class shows as a coloured square at a class-dependent place, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = torch.randint(0, 120, (n, 3, size, size), generator=g, dtype=torch.uint8)
    q = size // 4
    for c in range(10):
        r, col = (c // 4) * q, (c % 4) * q
        x[y == c, c % 3, r:r + q, col:col + q] += 120
    return ArrayDataset(x, y.numpy(), scale=1 / 255, mean=[0.5] * 3, std=[0.25] * 3)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def peak_reset(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # KiB on Linux: process peak


def dynamic_loop(make, ds, device, *, epochs, batch_size):
    """Section 5: a user's loop with DynamicPruner, autocast, a stretched OneCycleLR and a resume."""
    import math

    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from dataprune.grads.terms import available_memory

    precision = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    total = epochs * math.ceil(len(ds) / batch_size)

    def run(prune, stop=None, state=None):
        torch.manual_seed(1)
        model = make().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        pruner = dp.DynamicPruner(ds, model=model, epochs=epochs, ratio=0.5 if prune else 0.0, method="dynamic",
                                  optimizer=opt, seed=0)
        loader = DataLoader(pruner.dataset, batch_sampler=pruner.batch_sampler(batch_size))
        sched = pruner.stretch(torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=total), loader, total)
        first = 0
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            pruner.load_state_dict(state["pruner"])
            first = state["epoch"] + 1
        times = []
        for epoch in range(first, epochs if stop is None else stop + 1):
            sync(device)
            t0 = time.perf_counter()
            pruner.set_epoch(epoch)
            for idx, x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=precision):
                    logits = model(x)
                    losses = F.cross_entropy(logits.float(), y, reduction="none")
                loss = pruner.update(idx, losses, logits=logits, targets=y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            sync(device)
            times.append(time.perf_counter() - t0)
        pruner.end_epoch()
        state = {"model": copy.deepcopy(model.state_dict()), "opt": copy.deepcopy(opt.state_dict()),
                 "sched": sched.state_dict(), "pruner": pruner.state_dict(), "epoch": epoch}
        return model, pruner, sched, times, state

    _, _, _, plain_times, _ = run(False)
    model, pruner, sched, times, _ = run(True)
    _, _, _, _, half = run(True, stop=1)
    resumed, _, _, _, _ = run(True, state=half)
    # (on a GPU, kernels that add in a varying order make two runs differ slightly anyway: the figure, not a verdict)
    diff = max(float((a.float() - b.float()).abs().max()) if a.numel() else 0.0 for a, b in
               zip(model.state_dict().values(), resumed.state_dict().values(), strict=True))
    free = available_memory(device)
    return {"dynamic_precision": str(precision).replace("torch.", ""),
            "plain_epoch_seconds": float(np.mean(plain_times[1:] or plain_times)),
            "dynamic_epoch_seconds": float(np.mean(times[1:] or times)),
            "dynamic_saved_fraction": pruner.saved_fraction,
            "dynamic_evidence": pruner.evidence_decision.get("why", "credible" if pruner.evidence_decision.get(
                "credible") else None),
            "stretched_last_step": int(sched.scheduler.last_epoch), "stretched_total_steps": total,
            "resume_max_abs_diff": diff, "available_memory_gib": (free or 0) / 2 ** 30}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=5120)
    ap.add_argument("--ref-n", type=int, default=64)
    ap.add_argument("--width", type=int, default=64, help="ResNet-18 base width (64 = standard)")
    ap.add_argument("--epochs", type=int, default=10, help="the recipe's epochs (the full run the cost divides by)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--tiny", action="store_true", help="a few seconds on the CPU (smoke test)")
    ap.add_argument("--out", help="write the figures here as JSON")
    args = ap.parse_args(argv)
    if args.tiny:
        args.n, args.ref_n, args.width, args.epochs, args.batch_size, args.size = 64, 6, 4, 3, 16, 16
    device = torch.device(args.device)
    torch.manual_seed(0)
    ds = cifar_like(args.n, args.size)
    shape = (3, args.size, args.size)
    make = lambda: resnet18(10, shape, width=args.width)  # noqa: E731
    recipe = dict(epochs=args.epochs, batch_size=args.batch_size, lr=0.1, augment="flip_crop")
    out = {"device": str(device), "torch": torch.__version__, "n": args.n, "model": f"resnet18 width {args.width}",
           "input": list(shape), "recipe": recipe,
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}

    # 1-2. one epoch, then scoring a checkpoint, against the batch-size-1 procedure; peak memory.
    model = make()
    dp.train(copy.deepcopy(model), ds, epochs=1, batch_size=args.batch_size, device=device)      # warm-up
    peak_reset(device)
    epoch_s, res = timed(lambda: dp.train(copy.deepcopy(model), ds, epochs=2, batch_size=args.batch_size,
                                          lr=0.1, checkpoint_epochs=[1, 2], device=device), device)
    epoch_s /= 2
    out["train_epoch_seconds"], out["train_peak_mb"] = epoch_s, peak_mb(device)
    cks = res.checkpoints[:1]
    moso.score(model, cks, SubsetView(ds, np.arange(min(256, args.n))), device=device)           # warm-up
    peak_reset(device)
    all_s, _ = timed(lambda: moso.score(model, cks, ds, device=device), device)
    out["score_peak_mb"] = peak_mb(device)
    head_s, _ = timed(lambda: moso.score(model, cks, ds, params="last_layer", device=device), device)
    ref_n = min(args.ref_n, args.n)
    x, y = ds.get_batch(np.arange(ref_n))
    ref_s, ref = timed(lambda: authors_procedure(model, cks[0].state, cks[0].lr, x, torch.as_tensor(y), device),
                       device)
    mine = moso.score(model, cks, SubsetView(ds, np.arange(ref_n)), device=device)
    ref_full = ref_s / ref_n * args.n
    out.update(score_all_seconds=all_s, score_head_seconds=head_s, batch1_seconds_extrapolated=ref_full,
               speedup_all_vs_batch1=ref_full / all_s, speedup_head_vs_batch1=ref_full / head_s,
               checkpoint_in_epochs=all_s / epoch_s,
               agreement_max_rel=float(np.max(np.abs(mine - ref)) / max(np.max(np.abs(ref)), 1e-30)))

    # 3. autocast
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    for prec in precisions:
        try:
            s, _ = timed(lambda prec=prec: dp.train(copy.deepcopy(model), ds, epochs=1, batch_size=args.batch_size,
                                                    precision=prec, device=device), device)
            out[f"epoch_seconds_{prec}"] = s
        except (RuntimeError, ValueError) as exc:        # a device without bf16 kernels says so
            out[f"epoch_seconds_{prec}"] = None
            out[f"epoch_error_{prec}"] = str(exc).splitlines()[0]

    # 4. the default pipeline against one full training run of the same recipe, timed here.
    full_s, _ = timed(lambda: dp.train(make(), ds, device=device, **recipe), device)
    out["full_run_seconds"] = full_s
    # (a 3-epoch tiny recipe has no plan as cheap as 0.25: its tiny run uses 0.5)
    for name, budget in (("default", None), ("budget", 0.5 if args.tiny else 0.25)):
        s, r = timed(lambda budget=budget: dp.prune(make, ds, ratio=0.5, budget=budget, device=device,
                                                    **recipe), device)
        out[f"prune_{name}_seconds"] = s
        out[f"prune_{name}_cost_measured"] = s / full_s
        out[f"prune_{name}_plan"] = r.cost.get("plan")
        out[f"prune_{name}_set_aside"] = r.decisions.get("set_aside")
        out[f"prune_{name}_budget"] = budget

    # 5. dynamic pruning in a user's loop, on the device.
    out.update(dynamic_loop(make, ds, device, epochs=min(args.epochs, 4), batch_size=args.batch_size))

    print(f"{out['model']} on {args.n} images {shape}, device {device}{' (' + out['gpu'] + ')' if out['gpu'] else ''}"
          f", torch {out['torch']}")
    rows = [("training epoch", f"{epoch_s:.2f} s", f"peak {out['train_peak_mb']:.0f} MiB"),
            ("moso, all params, 1 ckpt", f"{all_s:.2f} s", f"{out['checkpoint_in_epochs']:.2f} epochs; peak "
             f"{out['score_peak_mb']:.0f} MiB"),
            ("moso, head, 1 ckpt", f"{head_s:.2f} s", ""),
            ("batch-size-1 procedure", f"{ref_full:.2f} s", f"extrapolated from {ref_n}; speed-up "
             f"{out['speedup_all_vs_batch1']:.1f}x (all), {out['speedup_head_vs_batch1']:.1f}x (head); agreement "
             f"{out['agreement_max_rel']:.1e}")]
    for prec in precisions:
        v = out.get(f"epoch_seconds_{prec}")
        rows.append((f"epoch, {prec}", "n/a" if v is None else f"{v:.2f} s",
                     out.get(f"epoch_error_{prec}", "" if v is None or not out.get("epoch_seconds_fp32") else
                             f"{out['epoch_seconds_fp32'] / v:.2f}x fp32's speed")))
    rows.append(("full training run", f"{full_s:.2f} s", f"{args.epochs} epochs"))
    for name in ("default", "budget"):
        rows.append((f"dp.prune {name}", f"{out[f'prune_{name}_seconds']:.2f} s",
                     f"{out[f'prune_{name}_cost_measured']:.2f} of the full run (plan {out[f'prune_{name}_plan']})"))
    rows.append(("user loop, dynamic 0.5", f"{out['dynamic_epoch_seconds']:.2f} s",
                 f"per epoch against {out['plain_epoch_seconds']:.2f} s unpruned ({out['dynamic_precision']}); "
                 f"{out['dynamic_saved_fraction']:.2f} of the passes skipped; schedule ended at step "
                 f"{out['stretched_last_step']} of {out['stretched_total_steps']}; resumed run's weights within "
                 f"{out['resume_max_abs_diff']:.1e} of the uninterrupted run's"))
    rows.append(("free memory read", f"{out['available_memory_gib']:.1f} GiB", "what the class-means check compares"))
    for a, b, c in rows:
        print(f"  {a:28s} {b:>10s}   {c}")
    if args.out:
        from dataprune.io import write_json

        write_json(args.out, out, overwrite=True)
    return out


if __name__ == "__main__":
    main()
