"""Per-layer kernel timings: which exact conv strategy is fastest, and does the cost model pick it?
Also per-sample dot products by per-layer hooks vs forward-mode jvp.

    python benchmarks/kernels.py            # ResNet-18 layouts (width 16, 32) and the small CNN, batch 256

For every distinct conv layer shape: the forward time of the layer, the time of norms by each
strategy (shift, unfold, ghost, grouped), the strategy ``choose_strategy`` picks and the fastest one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from dataprune.grads import LayerCapture, cross_entropy, select_params  # noqa: E402
from dataprune.grads import conv as ck  # noqa: E402
from dataprune.grads.engine import _jvp_dots  # noqa: E402
from dataprune.models import SmallCNN, resnet18  # noqa: E402
from dataprune.utils import tune_cpu_allocator  # noqa: E402


def best_ms(fn, n=5):
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    tune_cpu_allocator()
    b = args.batch
    nets = [("resnet w16", resnet18(10, (3, 32, 32), width=16), (3, 32, 32)),
            ("resnet w32", resnet18(10, (3, 32, 32), width=32), (3, 32, 32)),
            ("cnn", SmallCNN(1, 10), (1, 28, 28))]
    hits = total = 0
    for name, model, shape in nets:
        torch.manual_seed(0)
        model.eval()
        x, y = torch.randn(b, *shape), torch.randint(0, 10, (b,))
        sel = select_params(model)
        vec = {n: torch.randn_like(p) for n, p in model.named_parameters()}
        with LayerCapture(model, sel) as cap:
            cap.forward_backward(x, y, cross_entropy)
            recs = {m: r[0] for m, r in cap.records.items()}
        hooks_ms = best_ms(lambda m=model, s_=sel, x_=x, y_=y, v=vec: _hook_dots(m, s_, x_, y_, v))
        jvp_ms = best_ms(lambda m=model, s_=sel, x_=x, y_=y, v=vec: _jvp_dots(m, s_, x_, y_, cross_entropy, v))
        print(f"\n{name}, batch {b}: per-sample dots for the whole model: hooks {hooks_ms:.0f} ms, jvp {jvp_ms:.0f} ms")
        print(f"  {'layer':28s} {'fwd':>6} {'shift':>7} {'unfold':>7} {'ghost':>7} {'grouped':>7}  chosen / fastest")
        seen = set()
        for mod, names in sel.modules.items():
            if not isinstance(mod, torch.nn.Conv2d):
                continue
            r = recs[mod]
            a, d, k, s, dil, pad = ck._geometry(mod, r.inputs[0], r.grad_out)
            key = (tuple(a.shape), tuple(d.shape), k, s)
            if key in seen:
                continue
            seen.add(key)
            times = {}
            for strategy in ("shift", "unfold", "ghost", "grouped"):
                if (strategy == "shift" and s != (1, 1)) or (strategy in ("ghost", "grouped") and mod.groups != 1):
                    continue
                kern = ck.ConvKernel(strategy=strategy)
                times[strategy] = best_ms(lambda k_=kern, m=mod, r_=r, nm=names: k_.stats(
                    m, r_.inputs, r_.grad_out, nm, need_sq=True, need_dot=False))
            chosen = ck.choose_strategy(mod, a.shape, d.shape, k, s, pad, need_dot=False)
            fastest = min(times, key=times.get)
            hits += chosen == fastest or times[chosen] <= 1.15 * times[fastest]
            total += 1
            fwd = best_ms(lambda m=mod, r_=r: m(r_.inputs[0]))
            label = f"{a.shape[1]}->{d.shape[1]} k{k[0]} s{s[0]} L={d.shape[2] * d.shape[3]}"
            cells = " ".join(f"{times[t]:7.1f}" if t in times else f"{'-':>7}"
                             for t in ("shift", "unfold", "ghost", "grouped"))
            print(f"  {label:28s} {fwd:6.1f} {cells}  {chosen} / {fastest}")
    print(f"\ncost model within 15% of the fastest strategy on {hits}/{total} layer shapes")


def _hook_dots(model, sel, x, y, vec):
    with LayerCapture(model, sel) as cap:
        cap.forward_backward(x, y, cross_entropy)
        return cap.stats(vec, need_sq=False, need_dot=True, batch=x.shape[0], dtype=x.dtype, device=x.device).dot


if __name__ == "__main__":
    main()
