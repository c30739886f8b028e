"""Retrain from scratch on a kept subset and report test accuracy; experiment grids.

:func:`retrain` is the unit: one model, one subset, one seed. :func:`run_grid` runs
methods x ratios x seeds, writing each finished cell to ``results.csv`` as it goes, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import csv
import io as _io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from . import io
from .data import get_targets
from .methods import get_method
from .select import auto_plan, select

from .train import TrainConfig, train
from .utils import seed_everything

# Policies that need per-sample evidence, and the method that provides it for scores without any.
EVIDENCE_POLICIES = ("noise_cutoff", "auto")
EVIDENCE_METHOD = "moso_class"

RESULT_COLUMNS = ["method", "ratio", "seed", "n_kept", "test_acc", "score_seconds", "train_seconds",
                  "policy", "budget", "epochs", "steps"]


def retrain(make_model: Callable[[], torch.nn.Module], train_set, test_set, keep_indices=None, *,
            config: TrainConfig | None = None, seed: int = 0, device=None, num_workers: int = 0,
            progress: bool = False, desc: str = "retrain", **overrides) -> dict:
    """Train a fresh ``make_model()`` on ``train_set[keep_indices]`` and measure test accuracy.

    The model is built after seeding with ``seed``, so the same seed gives the same
    initialisation for every subset. With ``config.budget == "steps"`` a subset trains
    as many optimizer steps as the full training set would.

    Returns
    -------
    dict with ``test_acc`` (fraction in [0, 1]), ``test_bacc`` (balanced accuracy: the mean of the
    per-class recalls), ``n_kept``, ``steps``, ``epochs``,
    ``train_seconds`` and ``budget``.
    """
    n = len(train_set)
    keep = np.arange(n) if keep_indices is None else np.asarray(keep_indices, dtype=np.int64)
    if keep.ndim != 1 or len(keep) == 0:
        raise ValueError(f"keep_indices must be a non-empty 1-D array, got shape {keep.shape}")
    if keep.min() < 0 or keep.max() >= n:
        raise ValueError(f"keep_indices must lie in [0, {n}); got values in [{keep.min()}, {keep.max()}]")
    if len(np.unique(keep)) != len(keep):
        raise ValueError("keep_indices contains duplicates")
    cfg = (config or TrainConfig()).replace(**overrides)
    seed_everything(seed)
    model = make_model()
    result = train(model, train_set, config=cfg, indices=keep, reference_size=n, seed=seed, device=device,
                   num_workers=num_workers, progress=progress, desc=desc)
    acc, bacc = accuracies(result.model, test_set, device=device, num_workers=num_workers)
    return {"test_acc": acc, "test_bacc": bacc, "n_kept": int(len(keep)), "steps": result.steps,
            "epochs": len(result.history), "train_seconds": result.seconds, "budget": cfg.budget}


def accuracies(model, dataset, *, device=None, num_workers: int = 0) -> tuple[float, float]:
    """Top-1 accuracy and balanced accuracy (the mean of per-class recalls, over the classes present)."""
    from .train import predict

    pred = predict(model, dataset, device=device, num_workers=num_workers).argmax(1).numpy()
    y = get_targets(dataset)
    if len(y) == 0:
        return float("nan"), float("nan")
    recalls = [float(np.mean(pred[y == c] == c)) for c in np.unique(y)]
    return float(np.mean(pred == y)), float(np.mean(recalls))


# ---------------------------------------------------------------- grids -----


@dataclass
class GridSpec:
    """Everything that determines a grid's results (stored as ``run.json``)."""

    dataset: str
    model: str
    methods: list[str]
    ratios: list[float]
    seeds: list[int]
    surrogate: dict
    retrain: dict
    checkpoint_epochs: list[int]
    policy: str = "class_balanced"                   # for entries without a "+policy" suffix
    partitions: int = 1
    label_noise: float = 0.0
    options: dict = field(default_factory=dict)   # per scoring method: extra keyword options
    policy_options: dict = field(default_factory=dict)  # per policy: extra keyword options (e.g. ccs beta)
    data: dict = field(default_factory=dict)      # how the dataset was loaded (root, noise seed, limit)


def parse_entry(entry: str, default_policy: str) -> tuple[str, str]:
    """``"aum+ccs"`` -> ("aum", "ccs"); ``"moso"`` -> ("moso", default_policy)."""
    method, _, policy = entry.partition("+")
    return method, policy or default_policy


def _read_results(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["ratio"] = float(r["ratio"])
        r["seed"] = int(r["seed"])
        r["test_acc"] = float(r["test_acc"])
    return rows


def _write_results(path: str, rows: list[dict]) -> None:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in sorted(rows, key=lambda r: (r["method"] != "full", r["method"], float(r["ratio"]), int(r["seed"]))):
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r.get(k)) for k in RESULT_COLUMNS})
    io.write_bytes(path, buf.getvalue().encode(), overwrite=True)


def summarize(rows: list[dict]) -> dict:
    """``{(method, ratio): (mean, std, count)}`` of test accuracy over seeds."""
    cells: dict = {}
    for r in rows:
        cells.setdefault((r["method"], float(r["ratio"])), []).append(float(r["test_acc"]))
    return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in cells.items()}


def markdown_table(rows: list[dict]) -> str:
    """Methods as rows, pruning ratios as columns, mean ± std test accuracy (%) over seeds."""
    summary = summarize(rows)
    ratios = sorted({r for (m, r) in summary if m != "full"})
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "full"]
    lines = ["| method | " + " | ".join(f"ratio {r:g}" for r in ratios) + " |",
             "|---|" + "---|" * len(ratios)]
    for m in methods:
        cells = []
        for r in ratios:
            mean, std, cnt = summary.get((m, r), (float("nan"),) * 3)
            cells.append("-" if cnt != cnt else f"{100 * mean:.1f} ± {100 * std:.1f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if ("full", 0.0) in summary:
        mean, std, cnt = summary[("full", 0.0)]
        lines.append(f"\nFull data (ratio 0): {100 * mean:.1f} ± {100 * std:.1f} (n={cnt}).")
    return "\n".join(lines) + "\n"


def plot_results(rows: list[dict], path: str, title: str = "") -> None:
    """Accuracy vs pruning ratio, one line per method, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarize(rows)
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "full"]
    fig, ax = plt.subplots(figsize=(8.6 if len(methods) > 4 else 6.4, 4.6), dpi=110)
    colors = plt.get_cmap("tab20" if len(methods) > 10 else "tab10")
    markers = "osD^vP*Xh<>"
    for i, m in enumerate(methods):
        pts = sorted((r, v) for (mm, r), v in summary.items() if mm == m)
        xs = [p[0] for p in pts]
        # MoSo and random stand out; the rest share thinner lines
        lw = 2.4 if m in ("random", "moso") or m.startswith("moso") else 1.3
        ax.errorbar(xs, [100 * p[1][0] for p in pts], yerr=[100 * p[1][1] for p in pts], marker=markers[i % len(markers)],
                    ms=4, lw=lw, capsize=3, color=colors(i % colors.N), label=m,
                    ls="--" if m == "random" else "-")
    if ("full", 0.0) in summary:
        ax.axhline(100 * summary[("full", 0.0)][0], color="gray", ls=":", lw=1, label="full data")
    ax.set_xlabel("pruning ratio (fraction of training data removed)")
    ax.set_ylabel("test accuracy (%)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    with io.atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def run_grid(spec: GridSpec, split, make_model: Callable[[], torch.nn.Module], out_dir: str | None = None, *,
             device=None, batch_size: int = 256, num_workers: int = 0, progress: bool = False,
             force: bool = False, log: Callable[[str], None] = lambda s: None) -> list[dict]:
    """Score once per method and seed, prune at every ratio, retrain, collect test accuracy.

    With ``out_dir``, writes ``run.json`` (the spec), ``results.csv`` after every finished
    cell, ``scores/<method>-seed<s>.npy`` and ``indices/<method>-r<ratio>-seed<s>.npy``
    with JSON sidecars, ``results.md`` and ``accuracy_vs_ratio.png``. Re-running with the
    same spec skips finished cells; a different spec in the same folder is refused
    unless ``force`` (which starts over).
    """

    rows: list[dict] = []
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        run_path = os.path.join(out_dir, "run.json")
        want = json.loads(json.dumps(asdict(spec)))
        if os.path.isfile(run_path) and not force:
            have = io.read_json(run_path)
            if have != want:
                diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
                raise ValueError(f"{out_dir} holds a run with different settings ({', '.join(diff)}); "
                                 "use another --out folder, or --force to start over there")
            rows = _read_results(os.path.join(out_dir, "results.csv"))
        io.write_json(run_path, want, overwrite=True)
        if force:
            rows = []
    done = {(r["method"], float(r["ratio"]), int(r["seed"])) for r in rows}
    targets = get_targets(split.train)
    fingerprint = io.dataset_fingerprint(split.train, targets)
    rcfg = TrainConfig(**spec.retrain)
    scfg = TrainConfig(**spec.surrogate)

    def save(rows_):
        if out_dir is not None:
            _write_results(os.path.join(out_dir, "results.csv"), rows_)

    for seed in spec.seeds:
        if ("full", 0.0, seed) not in done:
            log(f"[seed {seed}] retraining on the full data ({len(split.train)} samples)")
            res = retrain(make_model, split.train, split.test, None, config=rcfg, seed=seed, device=device,
                          num_workers=num_workers, progress=progress, desc="full data")
            rows.append({"method": "full", "ratio": 0.0, "seed": seed, "policy": "", "score_seconds": 0.0, **res})
            save(rows)
            log(f"  full data: test accuracy {res['test_acc']:.4f}")
        todo = [m for m in spec.methods if any((m, float(r), seed) not in done for r in spec.ratios)]
        if not todo:
            continue
        needed = list(dict.fromkeys(parse_entry(m, spec.policy)[0] for m in todo))
        if any(parse_entry(m, spec.policy)[1] in EVIDENCE_POLICIES and not get_method(parse_entry(m, spec.policy)[0]).aux
               for m in todo) and EVIDENCE_METHOD not in needed:
            needed.append(EVIDENCE_METHOD)
        scores, seconds, aux = _scores_for_seed(spec, split, make_model, needed, seed, scfg, out_dir, fingerprint,
                                                device, batch_size, num_workers, progress, log, force)
        for m in todo:
            method, policy = parse_entry(m, spec.policy)
            popts = dict(spec.policy_options.get(policy, {}))
            if policy in EVIDENCE_POLICIES:
                evidence = aux.get(method) or aux[EVIDENCE_METHOD]
                popts["evidence"] = evidence["gradnorm"]
                if policy == "auto":
                    popts["disagreement"] = evidence["disagreement"]
            for ratio in spec.ratios:
                if (m, float(ratio), seed) in done:
                    continue
                keep = select(scores[method], ratio, labels=targets, policy=policy, seed=seed, **popts)
                if out_dir is not None:
                    io.save_array(os.path.join(out_dir, "indices", f"{m}-r{ratio:g}-seed{seed}.npy"), keep,
                                  {"kind": "indices", "method": method, "ratio": ratio, "policy": policy,
                                   "policy_options": spec.policy_options.get(policy, {}), "seed": seed,
                                   **(auto_plan(popts["disagreement"], ratio) if policy == "auto" else {}),
                                   "dataset": spec.dataset, "fingerprint": fingerprint}, overwrite=True)
                res = retrain(make_model, split.train, split.test, keep, config=rcfg, seed=seed, device=device,
                              num_workers=num_workers, progress=progress, desc=f"{m} r={ratio:g}")
                rows.append({"method": m, "ratio": float(ratio), "seed": seed, "policy": policy,
                             "score_seconds": seconds[method], **res})
                save(rows)
                log(f"  {m:>12s} ratio {ratio:g}: kept {res['n_kept']}, test accuracy {res['test_acc']:.4f}")
    if out_dir is not None:
        title = f"{spec.dataset} / {spec.model}" + (f", {spec.label_noise:.0%} label noise" if spec.label_noise else "")
        io.write_bytes(os.path.join(out_dir, "results.md"), markdown_table(rows).encode(), overwrite=True)
        plot_results(rows, os.path.join(out_dir, "accuracy_vs_ratio.png"), title)
    return rows


def _scores_for_seed(spec, split, make_model, methods, seed, scfg, out_dir, fingerprint, device, batch_size,
                     num_workers, progress, log, force):
    """Scores (and auxiliary arrays) per method for one seed: loaded from ``out_dir/scores`` when there."""
    from .pipeline import surrogate_scores

    scores, seconds, aux, missing = {}, {}, {}, []
    for m in methods:
        path = None if out_dir is None else os.path.join(out_dir, "scores", f"{m}-seed{seed}.npy")
        if path and os.path.isfile(path) and not force:
            arr, meta = io.load_array(path)
            io.check_fingerprint(meta.get("fingerprint"), fingerprint, path)
            scores[m], seconds[m] = arr, float(meta.get("seconds", 0.0))
            if meta.get("aux"):
                aux[m] = io.load_aux(path, meta)
        else:
            missing.append(m)
    if missing:
        log(f"[seed {seed}] training the surrogate and scoring: {', '.join(missing)}")
        t0 = time.perf_counter()
        run = surrogate_scores(missing, split.train, make_model, config=scfg,
                               checkpoint_epochs=spec.checkpoint_epochs, partitions=spec.partitions, seed=seed,
                               device=device, batch_size=batch_size, num_workers=num_workers, progress=progress,
                               options=spec.options)
        log(f"  surrogate {run.surrogate_seconds:.1f}s; scoring " +
            ", ".join(f"{m} {run.seconds[m]:.1f}s" for m in missing) + f" (total {time.perf_counter() - t0:.1f}s)")
        for m in missing:
            scores[m], seconds[m] = run.scores[m], run.seconds[m]
            if m in run.aux:
                aux[m] = run.aux[m]
            if out_dir is not None:
                path = os.path.join(out_dir, "scores", f"{m}-seed{seed}.npy")
                meta = {"kind": "scores", "method": m, "seed": seed, "dataset": spec.dataset,
                        "model": spec.model, "options": spec.options.get(m, {}),
                        "surrogate": spec.surrogate, "partitions": spec.partitions,
                        "checkpoints": [{"epoch": c.epoch, "lr": c.lr} for part in run.checkpoints for c in part],
                        "seconds": run.seconds[m], "surrogate_seconds": run.surrogate_seconds,
                        "fingerprint": fingerprint, "higher_is": "keep"}
                if m in run.aux:
                    meta["aux"] = io.save_aux(path, run.aux[m])
                io.save_array(path, run.scores[m], meta, overwrite=True)
    return scores, seconds, aux
