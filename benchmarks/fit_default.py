"""Fit the recommended default's constants on validation splits of mnist5k (never the test set).

Phase 1 (``evidence``): for every setting (a generated variant of mnist5k x an architecture) and
tuning seed, train the surrogate on the training part of a stratified 80/20 split of the
(varied) training set and record, at every epoch, everything a selection rule may use:
class-wise MoSo terms over all parameters and over the last layer, per-sample gradient norms,
eval-mode softmax outputs, and the training pass's own per-sample records. Saved as one .npz
per setting and seed.

Phase 2 (``eval``): every candidate rule selects a subset at ratios 0.3/0.5/0.7/0.9 from that
evidence; each subset is retrained with the preset's recipe and scored on the *validation* part
(accuracy and balanced accuracy, the mean of per-class recalls: the test sets are balanced, the
long-tailed training sets are not). One CSV row per (setting, seed, candidate, ratio).

The test set is never loaded here. ``python benchmarks/fit_default.py evidence|eval|table
--out runs/fit-default [--jobs 2]``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

SETTINGS = {  # name -> load_dataset keywords (on top of mnist5k, val_split 0.2)
    "clean": {},
    "sym20": {"label_noise": 0.2},
    "sym40": {"label_noise": 0.4},
    "pair20": {"label_noise": 0.2, "noise_kind": "pair"},
    "pair40": {"label_noise": 0.4, "noise_kind": "pair"},
    "pair30": {"label_noise": 0.3, "noise_kind": "pair"},   # (between the suite's two; not in GRID)
    "lt10": {"imbalance": 10},
    "lt50": {"imbalance": 50},
}
GRID = [(s, "cnn") for s in SETTINGS] + [(s, "mlp") for s in ("clean", "sym40", "pair40", "lt50")]
SEEDS = (10, 11)
RATIOS = (0.3, 0.5, 0.7, 0.9)
# The data family everything is fitted on, from the environment (DATAPRUNE_FIT_FAMILY) so that every script that
# imports it and its worker processes agree: "mnist5k" (the default; the suite's mnist5k recipe) or "digits-like"
# (mnist5k drawn as the digits set was, dataset "mnist5k-8x8", 1,800 of its 4,000 training images -- the same share
# of every class -- as digits has 1,797, with the suite's digits recipe of 15 epochs): a second family, to see
# whether a rule carries over to data like digits before digits' test set is read (it matches digits' format, size
# and recipe, not its ease: docs/results/digits-like-family-2026-12-06).
FAMILIES = {"mnist5k": {"dataset": "mnist5k", "epochs": 10},
            "digits-like": {"dataset": "mnist5k-8x8", "epochs": 15, "share": 1800 / 4000}}
FAMILY = os.environ.get("DATAPRUNE_FIT_FAMILY", "mnist5k")
if FAMILY not in FAMILIES:
    raise SystemExit(f"DATAPRUNE_FIT_FAMILY={FAMILY!r}: valid {', '.join(FAMILIES)}")
EPOCHS, BATCH, LR = FAMILIES[FAMILY]["epochs"], 32, 0.05
# --lean: class-wise terms (over all parameters) only at the epochs the shipped default reads; features and
# probabilities at every epoch. About a third of the evidence time.
LEAN_EPOCHS = (1, 3, 5, 7, 9)
VAL_SPLIT = 0.2


def _split(setting):
    from dataprune.data import load_dataset

    family = FAMILIES[FAMILY]
    load = dict(SETTINGS[setting])
    if "share" in family:
        # the same share of every class (after the long tail, which load_dataset applies first): a long tail of
        # the family is as long, and its classes as small, as the same tail of digits
        tail = load_dataset(family["dataset"], noise_seed=0, need_test=False, imbalance=load.get("imbalance", 1.0))
        load["train_limit"] = int(round(family["share"] * len(tail.train)))
    return load_dataset(family["dataset"], val_split=VAL_SPLIT, noise_seed=0, **load)


def _make(arch, split):
    from dataprune.models import build_model

    return lambda: build_model(arch, split.num_classes, split.input_shape)


def evidence(setting, arch, seed, out, lean=False):
    import torch

    torch.set_num_threads(1)
    from dataprune.data import get_targets
    from dataprune.methods import moso_variants
    from dataprune.methods.dynamics import DynamicsRecorder
    from dataprune.methods.uncertainty import probabilities
    from dataprune.train import TrainConfig, train
    from dataprune.utils import seed_everything

    path = os.path.join(out, "evidence", f"{setting}-{arch}-seed{seed}.npz")
    if os.path.exists(path):
        return path
    split = _split(setting)
    make = _make(arch, split)
    ds = split.train
    labels = get_targets(ds)
    rec = DynamicsRecorder(len(ds))
    seed_everything(seed)
    t0 = time.perf_counter()
    run = train(make(), ds, config=TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=LR), seed=seed,
                checkpoint_epochs=range(1, EPOCHS + 1), callbacks=[rec])
    t_train = time.perf_counter() - t0
    hist = rec.history()
    out_arrays = {"labels": labels, "flipped": split.flipped if split.flipped is not None else np.zeros(len(ds), bool),
                  "lr": np.array([c.lr for c in run.checkpoints]),
                  "epoch": np.array([c.epoch for c in run.checkpoints]),
                  "train_target_prob": hist.target_prob, "train_margin": hist.margin, "train_correct": hist.correct,
                  "train_seconds": np.array(t_train)}
    from dataprune.methods.geometry import embeddings

    cls_all, cls_last, gn_all, gn_last, probs, feats = [], [], [], [], [], []
    scored = np.array([not lean or c.epoch in LEAN_EPOCHS for c in run.checkpoints])
    for ck, sc in zip(run.checkpoints, scored, strict=True):
        feats.append(embeddings(make(), [ck], ds).numpy().astype(np.float16))
        probs.append(next(probabilities(make(), [ck], ds)).numpy().astype(np.float32))
        if not sc:    # lean: only the epochs the shipped default reads get the (costly) class-wise terms
            for lst in (cls_all, cls_last, gn_all, gn_last):
                lst.append(np.zeros(len(ds)))
            continue
        s, aux = moso_variants.classwise_score(make(), [(ck.state, 1.0)], ds, return_aux=True)
        cls_all.append(s)
        gn_all.append(aux["gradnorm"])
        if lean:
            cls_last.append(np.zeros(len(ds)))
            gn_last.append(np.zeros(len(ds)))
            continue
        s, aux = moso_variants.classwise_score(make(), [(ck.state, 1.0)], ds, return_aux=True, params="last_layer")
        cls_last.append(s)
        gn_last.append(aux["gradnorm"])
    out_arrays.update(cls_all=np.stack(cls_all), cls_last=np.stack(cls_last), gn_all=np.stack(gn_all),
                      gn_last=np.stack(gn_last), probs=np.stack(probs), feats=np.stack(feats),
                      scored=scored, lean=np.array(lean))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **out_arrays)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------ candidates --

def _ev(e, epochs=None, params="all"):
    """Sums over the chosen epochs (1-based, default all) of lr-weighted class-wise scores etc."""
    sel = np.arange(len(e["epoch"])) if epochs is None else np.flatnonzero(np.isin(e["epoch"], epochs))
    params = "last" if params == "last_layer" else params
    if "scored" in e and (not e["scored"][sel].all() or (params != "all" and bool(e["lean"]))):
        # lean evidence: no class-wise terms at these epochs / for these parameters (None fails loudly if read)
        return {"score": None, "gradnorm": None, "probs": e["probs"][sel].mean(0),
                "wrong": (e["probs"][sel].argmax(2) != e["labels"][None]).mean(0)}
    lr = e["lr"][sel][:, None]
    cls = (e["cls_all"] if params == "all" else e["cls_last"])[sel]
    gn = (e["gn_all"] if params == "all" else e["gn_last"])[sel]
    return {"score": (lr * cls).sum(0), "gradnorm": (lr * gn).sum(0), "probs": e["probs"][sel].mean(0),
            "wrong": (e["probs"][sel].argmax(2) != e["labels"][None]).mean(0)}


def candidate(name, e, ratio, seed):
    import importlib

    S = importlib.import_module("dataprune.select")

    labels = e["labels"]
    n = len(labels)
    k = S.num_kept(n, ratio)
    rng = np.random.default_rng(seed)
    if name == "random":
        return S.select(np.zeros(n), ratio, labels=labels, policy="random", seed=seed)
    if name == "auto_v1":   # the previous default: epochs 1,3,5,7,9, a global gradient-norm cutoff
        v = _ev(e, [1, 3, 5, 7, 9])
        rho = float(np.mean(v["wrong"] > 0.5))
        cutoff = min(0.9 * ratio, rho + 0.1 * min(1.0, max(0.0, (ratio - 0.7) / 0.2)))
        return S.noise_cutoff_indices(v["score"], labels, k, v["gradnorm"], cutoff,
                                      sampling="top" if ratio < 0.8 else "stratified", rng=rng)
    opts = dict(part.split("=") for part in name.split(":")[1:]) if ":" in name else {}
    sets = {"all": None, "odd": [1, 3, 5, 7, 9], "early2": [1, 2], "early3": [1, 2, 3], "early5": [1, 2, 3, 4, 5],
            "e2": [2], "e3": [3], "last": [10]}
    v = _ev(e, sets[opts.get("ev", "odd")], opts.get("params", "all"))
    probs = _ev(e, sets[opts.get("pev", "early3")])["probs"]
    # "adaptive10": the adaptive rule as shipped (global switch at 10%)
    rule = {"adaptive10": "adaptive"}.get(opts.get("noise", "confident"), opts.get("noise", "confident"))
    score = v["score"]
    if opts.get("mid"):     # within a class, the trusted samples whose score is nearest the class median
        trusted = ~S.confident_noise(probs, labels, rule)["suspect"]
        score = score.copy()
        for c in np.unique(labels):
            members = labels == c
            ref = members & trusted if (members & trusted).any() else members
            score[members] = -np.abs(v["score"][members] - np.median(v["score"][ref]))
    if opts.get("fw") or opts.get("gate") or opts.get("nc"):
        score = _feature_rule(e, labels, score, ~S.confident_noise(probs, labels, rule)["suspect"], opts)
    keep, _ = S.auto_indices(score, labels, k, probs=probs, ratio=ratio, rng=rng,
                             alpha=float(opts.get("alpha", S.AUTO_ALPHA)),
                             noise=rule,
                             within=opts.get("within", "auto"), high=opts.get("hi"),
                             stratified_from=float(opts.get("strat", S.AUTO_STRATIFIED_FROM)),
                             features=_feats(e, opts) if opts.get("centre") else None,
                             centre_rule=bool(opts.get("centre")))
    return keep


def _feats(e, opts):
    """Penultimate features at epoch ``fe`` (default the last)."""
    epochs = list(e["epoch"])
    return e["feats"][epochs.index(int(opts.get("fe", epochs[-1])))].astype(np.float32)


def _pct(x):
    """Within-group percentile ranks in (0, 1], ties by order."""
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(1, len(x) + 1) / len(x)
    return r


def _feature_rule(e, labels, score, trusted, opts):
    """Feature-space rules for which trusted samples of a class to keep: the distance d of each
    sample's penultimate features (epoch ``fe``, default the last) to the mean of its class's trusted
    samples. ``fw=w``: blend the class-wise percentile of the score with that of Moderate-DS's band
    ``-|d - median d|`` (weight w); ``gate=q``: samples beyond the q-quantile of d go last."""
    epochs = list(e["epoch"])
    fe = int(opts.get("fe", epochs[-1]))
    f = e["feats"][epochs.index(fe)].astype(np.float64)
    out = score.astype(np.float64).copy()
    w = float(opts.get("fw", 0.0))
    if opts.get("nc"):
        # nearest trusted class mean in feature space is another class: the sample goes last in its class
        cls = np.unique(labels)
        use = np.ones(len(labels), bool) if opts.get("ncall") else trusted    # class means of all / trusted
        means = np.stack([f[(labels == c) & use].mean(0) if ((labels == c) & use).any()
                          else f[labels == c].mean(0) for c in cls])
        d2 = (f ** 2).sum(1)[:, None] - 2 * f @ means.T + (means ** 2).sum(1)[None]
        far = cls[d2.argmin(1)] != labels
    else:
        far = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        ref = members[trusted[members]] if trusted[members].any() else members
        d = np.linalg.norm(f[members] - f[ref].mean(0), axis=1)
        med = np.median(d[trusted[members]]) if trusted[members].any() else np.median(d)
        s = (1 - w) * _pct(score[members]) + w * _pct(-np.abs(d - med))
        if opts.get("gate"):
            q = np.quantile(d[trusted[members]] if trusted[members].any() else d, float(opts["gate"]))
            s = np.where(d > q, s - 2.0, s)
        out[members] = np.where(far[members], s - 2.0, s)
    return out


CANDIDATES = ["random", "auto_v1", "v2:alpha=0.5:noise=calibrated", "v2:alpha=0.5:noise=calibrated:hi=random",
              "v2:alpha=0.5:hi=random", "v2:alpha=0:noise=calibrated:hi=random",
              "v2:alpha=1:noise=calibrated:hi=random",
              "v2:alpha=0.5:noise=argmax:hi=random", "v2:alpha=0.5:noise=calibrated:hi=random:params=last",
              "v2:alpha=0.5:noise=calibrated:within=random"]


def evaluate(setting, arch, seed, names, out, ratios=RATIOS):
    import torch

    torch.set_num_threads(1)
    from dataprune.evaluate import retrain
    from dataprune.train import TrainConfig

    split = _split(setting)
    e = dict(np.load(os.path.join(out, "evidence", f"{setting}-{arch}-seed{seed}.npz")))
    rows = []
    for name in names:
        for ratio in ratios:
            keep = candidate(name, e, ratio, seed)
            res = retrain(_make(arch, split), split.train, split.val, keep,
                          config=TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=LR), seed=seed)
            rows.append({"setting": setting, "arch": arch, "seed": seed, "candidate": name, "ratio": ratio,
                         "val_acc": res["test_acc"], "val_bacc": res["test_bacc"], "n_kept": len(keep),
                         "kept_flipped": float(e["flipped"][keep].mean())})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=["evidence", "eval", "table"])
    ap.add_argument("--out", default="runs/fit-default")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--ratios", default=",".join(map(str, RATIOS)), help="pruning ratios evaluated")
    ap.add_argument("--lean", action="store_true", help="class-wise terms at epochs 1,3,5,7,9 (all parameters) only")
    ap.add_argument("--grid", help="comma-separated setting-arch pairs, e.g. clean-cnn,lt50-mlp")
    args = ap.parse_args()
    grid = GRID if not args.grid else [tuple(g.split("-")) for g in args.grid.split(",")]
    units = [(s, a, seed) for s, a in grid for seed in SEEDS]
    if args.phase == "evidence":
        with ProcessPoolExecutor(args.jobs) as pool:
            futs = [pool.submit(evidence, s, a, seed, args.out, args.lean) for s, a, seed in units]
            for f in as_completed(futs):
                print("done", f.result(), flush=True)
        return
    path = os.path.join(args.out, "results.csv")
    done = set()
    if os.path.exists(path):
        with open(path) as f:
            done = {(r["setting"], r["arch"], r["seed"], r["candidate"]) for r in csv.DictReader(f)}
    if args.phase == "table":
        table(path)
        return
    names = args.candidates.split(",")
    with ProcessPoolExecutor(args.jobs) as pool:
        futs = []
        for s, a, seed in units:
            todo = [c for c in names if (s, a, str(seed), c) not in done]
            for c in todo:
                futs.append(pool.submit(evaluate, s, a, seed, [c], args.out,
                                        tuple(float(r) for r in args.ratios.split(","))))
        for f in as_completed(futs):
            rows = f.result()
            new = not os.path.exists(path)
            with open(path, "a", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                if new:
                    w.writeheader()
                w.writerows(rows)
            print(rows[0]["setting"], rows[0]["arch"], rows[0]["seed"], rows[0]["candidate"],
                  " ".join(f"{r['val_bacc']:.3f}" for r in rows), flush=True)


def table(path):
    import collections

    with open(path) as f:
        rows = list(csv.DictReader(f))
    acc = collections.defaultdict(list)
    for r in rows:
        acc[(r["setting"] + "-" + r["arch"], r["candidate"], float(r["ratio"]))].append(float(r["val_bacc"]))
    settings = sorted({k[0] for k in acc})
    cands = list(dict.fromkeys(r["candidate"] for r in rows))
    for s in settings:
        print(f"\n{s}  (validation balanced accuracy %, mean over seeds; diff to random)")
        for c in cands:
            cells = []
            for ratio in RATIOS:
                v = acc.get((s, c, ratio))
                base = acc.get((s, "random", ratio))
                if not v:
                    cells.append("   -   ")
                elif base:
                    cells.append(f"{100 * np.mean(v):5.1f} ({100 * (np.mean(v) - np.mean(base)):+.1f})")
                else:
                    cells.append(f"{100 * np.mean(v):5.1f}")
            print(f"  {c:32s} " + "  ".join(cells))
    print("\nmean difference to random over all settings and ratios:")
    for c in cands:
        d = [np.mean(acc[k]) - np.mean(acc[(k[0], "random", k[2])]) for k in acc
             if k[1] == c and (k[0], "random", k[2]) in acc]
        worst = min(d) if d else float("nan")
        print(f"  {c:32s} mean {100 * np.mean(d):+.2f}  worst {100 * worst:+.2f}  cells {len(d)}")


if __name__ == "__main__":
    main()
