"""Fit the budgeted default's noise rule on validation splits of mnist5k (never the test set).

A budgeted plan (``--budget 0.25`` buys ``early2-head`` on a 10-epoch recipe) judges labels with a 2-epoch
surrogate. Where label noise is evident the full plan's rule (``adaptive`` -> ``calibrated``) flags nearly every
wrong label and, from a surrogate this short, also the hard clean samples it has not learnt yet. This script
compares rules on exactly the budget plan's evidence:

Phase ``evidence``: per setting (a generated variant of mnist5k x an architecture, 80/20 stratified split) and
tuning seed, ``dp.prune(..., budget=B)`` on the training part; saves the scores, the class probabilities, the
policy options the evidence report gives (credibility, held-out flag share) and which labels are wrong.
Phase ``eval``: each candidate noise rule selects at ratios 0.5/0.7/0.9 (the cost benchmark's) from that evidence;
the subset is retrained with the recipe and scored on the validation samples whose labels the noise left
alone (the validation labels carry the training set's noise). Phase ``table``: means per setting and rule.

``python benchmarks/fit_budget.py evidence|eval|table --out runs/fit-budget [--jobs 2] [--budget 0.25]``

Whether a budget plan's gap is its scores or its label evidence: the full plan's evidence in a folder of its own
(``evidence --budget full --out runs/fit-full``), then ``eval --reference runs/fit-full --candidates
centre,ref,ref-evidence,ref-scores`` swaps one for the other (see :func:`candidate`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

from dynamic import clean_val  # noqa: E402
from fit_default import BATCH, EPOCHS, LR, SETTINGS, _make, _split  # noqa: E402

GRID = [(s, "cnn") for s in ("clean", "sym20", "pair20", "sym40", "pair40", "lt10")] + \
       [(s, "mlp") for s in ("clean", "sym20", "pair40")]
SEEDS = (10, 11)
RATIOS = (0.5, 0.7, 0.9)
# Noise rules compared (dataprune.select.NOISE_RULES); "auto" = the policy's own choice for this plan; "centre":
# auto with the penultimate features (the off-centre rule of the full plan, where noise is evident).
CANDIDATES = ("auto", "confident", "adaptive_rate", "centre")


def append_rows(futures, path):
    """Append the rows (lists of dicts) of ``futures`` to the CSV file ``path`` as each finishes, flushed, with a
    header where the file is empty (so an interrupted evaluation keeps what finished); yields each future's rows."""
    with open(path, "a", newline="") as f:
        writer = None
        for fut in as_completed(futures):
            rows = fut.result()
            for row in rows:
                if writer is None:
                    writer = csv.DictWriter(f, fieldnames=list(row))
                    if f.tell() == 0:
                        writer.writeheader()
                writer.writerow(row)
                f.flush()
            yield rows


def _budget(text):
    return None if text == "full" else float(text)


def _recipe():
    from dataprune.train import TrainConfig

    return TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=LR)


def evidence(setting, arch, seed, out, budget):
    import torch

    torch.set_num_threads(1)
    import dataprune as dp

    path = os.path.join(out, "evidence", f"{setting}-{arch}-seed{seed}.npz")
    if os.path.exists(path):
        return path
    import dataprune.pipeline as pipeline

    # The penultimate features too (a budgeted plan does not read them: one more pass), for the off-centre
    # candidate; the plan, its scores and probabilities do not change.
    # (once per worker process: it runs many settings)
    if not getattr(pipeline.scores_with_evidence, "forces_features", False):
        scoring = pipeline.scores_with_evidence

        def with_features(*a, **k):
            return scoring(*a, **{**k, "with_features": True})

        with_features.forces_features = True
        pipeline.scores_with_evidence = with_features
    split = _split(setting)
    res = dp.prune(_make(arch, split), split.train, ratio=0.5, budget=budget, config=_recipe(), seed=seed)
    flipped = split.flipped if split.flipped is not None else np.zeros(len(split.train), bool)
    report = res.decisions.get("evidence", {})
    from dataprune.evidence import apply_credibility

    popts = apply_credibility("auto", {}, report)[0]      # what dp.prune's policy was given
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, scores=res.scores, probs=res.evidence["probs"], labels=res.labels, flipped=flipped,
                        features=res.evidence["features"], popts=json.dumps(popts), plan=res.provenance["plan"],
                        cost=float(res.cost.get("cost_fraction") or np.nan), report=json.dumps(report))
    os.replace(tmp, path)
    return path


def shipped_options(e, seed):
    """The auto policy's options for saved full-plan evidence ``e`` (a loaded ``evidence`` file) as the pipeline
    gives them: the options saved with it, plus the neighbour mix where the surrogate was credible and
    :func:`dataprune.evidence.judge_neighbour_mix` (the judgment the pipeline runs after scoring, which the saved
    options predate) asks for it."""
    from dataprune.evidence import holdout_indices, judge_neighbour_mix
    from dataprune.pipeline import NEIGHBOURS_MIX
    from dataprune.select import TRUSTED_NEIGHBOURS

    given = json.loads(str(e["popts"]))
    report = json.loads(str(e["report"])) if "report" in e else {}
    if report.get("credible", "noise" not in given) is True:
        labels = e["labels"]
        judged = judge_neighbour_mix(e["probs"], e["features"].astype(np.float32), labels,
                                     holdout_indices(labels, 0.1, seed * 1000),
                                     {"credible": True, "held_out_flagged": given.get("held_out_flagged", 0)},
                                     mix=NEIGHBOURS_MIX, seed=seed * 1000)
        if judged.get("neighbours"):
            given = {**given, "neighbours": NEIGHBOURS_MIX, "trusted_neighbours": TRUSTED_NEIGHBOURS}
    return given


def candidate(name, e, ratio, seed, ref=None):
    """``NAME[:WITHIN]``: a noise rule (or ``auto`` / ``centre``), optionally with how the trusted samples of a class
    are kept (``within``: ``top``, ``random``, ``stratified``; default the policy's own by ratio). Where the evidence
    itself is in question, with ``ref`` (the same setting's evidence from another plan, ``--reference``):
    ``ref`` = that plan as it is, ``ref-evidence`` = these scores with its label evidence (class probabilities,
    held-out report, features), ``ref-scores`` = its scores with this evidence; ``nocentre`` = ``auto`` without the
    off-centre rule; ``judged-no-trend`` = ``centre`` where the evidence counts as credible without the judge's
    still-learning test (:func:`dataprune.evidence.judge`); ``nb=W`` = ``centre`` with the label evidence mixed with
    weight W of the neighbour labels in feature space (``neighbours``, :func:`dataprune.select.neighbour_labels`);
    ``nbt=W[/R[/RULE]]`` the same, recomputed R times (default 1, as shipped; ``nb=W`` 0) with only the samples the
    last round trusts as neighbours (``trusted_neighbours``), with the noise rule RULE;
    where the neighbour labels alone judge the labels (a surrogate whose probabilities were not credible,
    ``neighbours=1``; elsewhere ``centre``): ``knn-none`` = nothing acted on (as before),
    ``knn[-whole][/RULE]`` = with the noise rule RULE, ``-whole`` without the held-out flag share; ``knn-own`` /
    ``knn-score`` = each class's quota by the policy's default sampling of the surrogate's scores / of the share of a
    sample's neighbours that carry its label, instead of a random sample."""
    import importlib

    from dataprune.evidence import COLLAPSED_SPREAD, CREDIBLE_EXPLAINED
    from dataprune.select import selection

    S = importlib.import_module("dataprune.select")
    if name.startswith("refill="):     # the policy as shipped, with this refill order (select.AUTO_REFILL)
        shipped, S.AUTO_REFILL = S.AUTO_REFILL, name.split("=", 1)[1]
        try:
            return candidate("centre", e, ratio, seed, ref)
        finally:
            S.AUTO_REFILL = shipped

    if name.startswith(("nb=", "nbt=")):   # the shipped policy, its label evidence mixed with neighbour labels
        head, _, rest = name.partition("=")   # nbt=W[/ROUNDS[/RULE]]: recomputed with the samples it trusts as
        parts = rest.split("/")                  # the only neighbours, ROUNDS times; noise rule RULE
        w, rounds, rule = parts[0], parts[1] if len(parts) > 1 else "1", parts[2] if len(parts) > 2 else ""
        e = {**e, "popts": json.dumps({**json.loads(str(e["popts"])), "neighbours": float(w),
                                       "trusted_neighbours": int(rounds) if head == "nbt" else 0,
                                       **({"noise": rule} if rule else {})})}
        name = "centre"
    if name.startswith("knn"):        # where the neighbour labels alone judge (popts neighbours=1): variants
        given = json.loads(str(e["popts"]))
        if given.get("neighbours", 0) >= 1:
            if name == "knn-none":       # as before judge_neighbours: a surrogate not credible acts on nothing
                given = {"noise": "none", "within": "random", "centre_rule": False}
            elif name == "knn-own":      # the class quotas filled by the surrogate's own scores (policy default)
                given.pop("within", None)
            elif name == "knn-score":    # ... by how many of a sample's neighbours share its label (most first)
                from dataprune.select import neighbour_labels

                given.pop("within", None)
                shares = neighbour_labels(e["features"], e["labels"])
                e = {**e, "scores": shares[np.arange(len(e["labels"])), e["labels"]].astype(np.float64)}
            else:                        # knn[-whole][/RULE]: without the held-out flag share; another noise rule
                head, _, rule = name.partition("/")
                if head == "knn-whole":
                    given.pop("held_out_flagged", None)
                if rule:
                    given["noise"] = rule
            e = {**e, "popts": json.dumps(given)}
        name = "centre"
    if name in ("ref", "ref-evidence", "ref-scores"):
        if ref is None:
            raise SystemExit(f"candidate {name!r} needs --reference (a folder of another plan's evidence)")
        e = {"ref": ref, "ref-evidence": {**ref, "scores": e["scores"]},
             "ref-scores": {**e, "scores": ref["scores"]}}[name]
        name = "centre"
    elif name == "nocentre":
        name = "auto"
    popts = json.loads(str(e["popts"]))
    if name == "judged-no-trend":
        # the judgment without the still-learning test (credible by the explained share and the spread alone)
        report = json.loads(str(e["report"]))
        if str(report.get("why", "")).startswith("the surrogate was still learning") and \
                report.get("held_out_explained", 0) >= CREDIBLE_EXPLAINED and report.get("held_out_spread", 0) >= \
                COLLAPSED_SPREAD:
            popts = {"held_out_flagged": float(report["held_out_flagged"])}
        name = "centre"
    name, _, within = name.partition(":")
    if within and popts.get("within") is None:          # (a surrogate judged not credible keeps its random draw)
        popts["within"] = within
    if name == "centre":
        popts["features"] = e["features"]
    elif name != "auto" and "noise" not in popts:      # a surrogate judged not credible: nothing is acted on
        popts["noise"] = name
    sel = selection(e["scores"], ratio, labels=e["labels"], policy="auto", seed=seed, probs=e["probs"], **popts)
    return sel.keep, sel.decisions


def evaluate(setting, arch, seed, names, out, ratios=RATIOS, reference=None):
    import torch

    torch.set_num_threads(1)
    from dataprune.evaluate import retrain

    split = _split(setting)
    val = clean_val(split)
    e = dict(np.load(os.path.join(out, "evidence", f"{setting}-{arch}-seed{seed}.npz")))
    ref = dict(np.load(os.path.join(reference, "evidence", f"{setting}-{arch}-seed{seed}.npz"))) if reference else None
    rows = []
    for name in names:
        for ratio in ratios:
            keep, dec = candidate(name, e, ratio, seed, ref)
            res = retrain(_make(arch, split), split.train, val, keep, config=_recipe(), seed=seed)
            rows.append({"setting": setting, "arch": arch, "seed": seed, "candidate": name, "ratio": ratio,
                         "val_acc": res["test_acc"], "val_bacc": res["test_bacc"], "n_kept": len(keep),
                         "set_aside": dec.get("set_aside"), "rule": dec.get("noise_rule"),
                         "kept_flipped": float(e["flipped"][keep].mean())})
    return rows


def table(path):
    import collections

    with open(path) as f:
        rows = list(csv.DictReader(f))
    acc, wrong, aside = (collections.defaultdict(list) for _ in range(3))
    for r in rows:
        key = (r["setting"] + "-" + r["arch"], r["candidate"])
        acc[key + (float(r["ratio"]),)].append(100 * float(r["val_bacc"]))
        wrong[key].append(100 * float(r["kept_flipped"]))
        aside[key].append(float(r["set_aside"]))
    settings = list(dict.fromkeys(r["setting"] + "-" + r["arch"] for r in rows))
    cands = list(dict.fromkeys(r["candidate"] for r in rows))
    ratios = sorted({float(r["ratio"]) for r in rows})
    out = ["Balanced accuracy (%) on the validation samples with clean labels, mean of the tuning seeds, at ratios "
           + " / ".join(map(str, ratios)) + "; kept wrong labels (%) and samples set aside, mean over ratios and "
           "seeds.",
           "", "| setting | " + " | ".join(cands) + " |", "|---" * (len(cands) + 1) + "|"]
    for s in settings:
        cells = []
        for c in cands:
            accs = " / ".join(f"{np.mean(acc[(s, c, r)]):.1f}" if acc.get((s, c, r)) else "-" for r in ratios)
            cells.append(f"{accs} (wrong {np.mean(wrong[(s, c)]):.1f}%, aside {np.mean(aside[(s, c)]):.0f})")
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    out += ["", "Mean over all cells, difference to the first candidate, cells ahead / behind by more than 0.5:", ""]
    base = cands[0]
    for c in cands:
        d = [np.mean(v) - np.mean(acc[k[:1] + (base,) + k[2:]]) for k, v in acc.items() if k[1] == c]
        mean = np.mean([np.mean(v) for k, v in acc.items() if k[1] == c])
        out.append(f"- {c}: mean {mean:.2f}, {np.mean(d):+.2f} vs {base}, ahead {sum(x > 0.5 for x in d)}, "
                   f"behind {sum(x < -0.5 for x in d)} of {len(d)}; worst {min(d):+.2f}")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=["evidence", "eval", "table"])
    ap.add_argument("--out", default="runs/fit-budget")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--budget", type=_budget, default=0.25, help="a cost budget, or 'full' (no budget: the full plan, "
                    "the reference the budget plans are compared with)")
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--grid", help="comma-separated setting-arch pairs, e.g. sym20-cnn,clean-mlp")
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="tuning seeds (default %(default)s)")
    ap.add_argument("--ratios", default=",".join(map(str, RATIOS)), help="pruning ratios (default %(default)s)")
    ap.add_argument("--reference", help="another plan's --out folder (e.g. --budget full) for the candidates ref, "
                    "ref-evidence, ref-scores")
    args = ap.parse_args()
    grid = GRID if not args.grid else [tuple(g.rsplit("-", 1)) for g in args.grid.split(",")]
    for s, _ in grid:
        if s not in SETTINGS:
            raise SystemExit(f"unknown setting {s!r}; valid: {', '.join(SETTINGS)}")
    csv_path = os.path.join(args.out, "eval.csv")
    if args.phase == "table":
        print(table(csv_path))
        return
    jobs = [(s, a, int(seed)) for s, a in grid for seed in args.seeds.split(",")]
    with ProcessPoolExecutor(args.jobs) as ex:
        if args.phase == "evidence":
            futs = [ex.submit(evidence, s, a, seed, args.out, args.budget) for s, a, seed in jobs]
            for f in as_completed(futs):
                print(f.result(), flush=True)
            return
        names = args.candidates.split(",")
        ratios = tuple(float(r) for r in args.ratios.split(","))
        futs = [ex.submit(evaluate, s, a, seed, names, args.out, ratios, args.reference) for s, a, seed in jobs]
        for rows in append_rows(futs, csv_path):
            print(rows[-1]["setting"], rows[-1]["arch"], rows[-1]["seed"], "done", flush=True)


if __name__ == "__main__":
    main()
