"""The label evidence of the noise-aware policies, one way for every path: :func:`label_evidence`.

``policy="auto"`` sets aside the samples whose label the surrogate contradicts. Its evidence is the
surrogate's class probabilities in eval mode, on the deterministic view of the data (no random
transform), averaged over :data:`EVIDENCE_CHECKPOINTS` checkpoints read where the surrogate has
learnt the task but not yet memorised wrong labels. Where that is on the schedule is measured, not
assumed: a class-stratified share of the training set (:data:`HOLDOUT`) is held out of the
surrogate's training, its accuracy on those samples is read at every checkpoint, and the evidence
starts at the first checkpoint whose held-out accuracy is within :data:`PLATEAU_TOLERANCE` of the
best. A 10-epoch run at batch 32 on mnist5k gets there after an epoch or two; a run of a few steps
per epoch (an image folder of 1,400 images at batch 128) only after 7 of 10 epochs: fixed early
epochs read the evidence of a surrogate that had not learnt anything (issue: 38% of clean labels
flagged). On a long recipe the first scoring checkpoint (10% of the schedule) can come after the surrogate
has begun to memorise, so the judge also reads *probes*, snapshots at epochs 1, 2, 4, ... before it
(:func:`probe_epochs`), which are judged and may carry the evidence but are not scored.

The evidence is *credible* only when the surrogate has learnt the task on data it did not train on:
of the held-out samples, the share it either predicts as labelled or confidently puts in another
class (confident learning's flag) must reach :data:`CREDIBLE_EXPLAINED`. A surrogate that has not
learnt the task is wrong *without* being confident about many samples, or confidently wrong in a
way unrelated to the labels (measured: 0.70-0.73 of held-out samples explained in the first epochs
of a batch-128 run on 1,400 images, against 0.85-0.94 for every surrogate that had learnt, clean or
with 20-40% noise). Nor is a surrogate that has collapsed onto a few classes: its held-out predictions must
spread over at least :data:`COLLAPSED_SPREAD` of the classes the labels spread over. (The share of held-out
labels it contradicts is no test of collapse: under 40% symmetric noise a good surrogate contradicts 37-52%
of them; a rule "at most half" set no label aside in one seed of three of the suite's digits sym40, which then
kept 39% wrong labels.) Then no sample is set aside, and the result says so (``decisions["evidence"]``).
Without a held-out share (``holdout=0``, given checkpoints, fused plans), the fixed early segment of
:data:`EVIDENCE_SEGMENT` is used and the result says that
credibility could not be judged.

A surrogate whose held-out accuracy is best at its last checkpoint and still rising there (by more
than :data:`PLATEAU_TOLERANCE` since the one before) has not finished learning: what it gets wrong
may be samples it has not learnt yet, so it is not credible either (measured: sklearn digits as PNG
files, clean labels, batch 128 for 10 epochs with a flip augmentation: held-out accuracy 54% -> 80%
between epochs 7 and 9; its flags, 4-9% of the clean labels, cost 3-18 points when set aside) -- unless its
flags held. On samples it never trains on, a surrogate never comes to predict a wrong label, and does come to
predict a correct one it had not learnt: so of the held-out samples it got wrong at the checkpoint before, compare
the share now predicted as labelled among those it flagged and among those it was unsure of
(:func:`flags_resolved`). Flags resolved at under :data:`FLAGS_LEARNT_RATE` times the unsure rate (on at least
:data:`FLAGS_MIN` flags) are not samples it is still learning, and its evidence stands (mnist5k, 40% symmetric
noise, one seed of the suite: held-out accuracy 48% -> 56%, 1% of its flags resolved against 64% of its unsure
mistakes, 97% of its flags wrong labels; judged still learning, it had kept 39% wrong labels instead of 1%). That
test is for
a run of the recipe's whole schedule; a budget plan that stops early (``--budget``) is still learning by design
and is judged by the explained share and the spread alone (``judge(..., trend=False)``,
:attr:`dataprune.pipeline.Plan.judges_trend`).

What it cannot tell: a surrogate that has learnt the task only partly (82% held-out accuracy on
clean digits images with a flip augmentation that hurts digits) is confidently wrong about some
correct labels, and nothing in its outputs tells those apart from wrong labels; the result then
warns that the flags may be hard samples (:data:`CAUTION_ACCURACY`).

Constants fitted on the training data only (held-out shares of mnist5k and of sklearn digits
written as PNG files, clean and with 20-40% symmetric and pair-flip noise;
benchmarks/evidence_placement.py prints the table), never on a test set.
"""

from __future__ import annotations

import numpy as np

from .data import SubsetView, get_targets
from .trajectory import as_checkpoints

# Share of the training set held out of the surrogate's training (class-stratified), at most
# HOLDOUT_MAX samples. The held-out samples are still scored and selected like the others. Fewer than
# HOLDOUT_MIN held-out samples measure accuracy too coarsely (+-0.09 at 30): no holdout then.
HOLDOUT = 0.1
HOLDOUT_MAX = 2000
HOLDOUT_MIN = 100
# A checkpoint whose accuracy on samples it trained on exceeds its held-out accuracy by more than this has
# started to memorise its training labels (wrong ones included): its outputs no longer contradict them.
MEMORISATION_GAP = 0.1
# Probes: where the held-out share is judged, the surrogate also keeps snapshots at epochs 1, 2, 4, 8, ...
# before its first scoring checkpoint (:func:`probe_epochs`), for the judge and the label evidence only (not
# scored). A long recipe's first scoring checkpoint (10% of 100 epochs) can come after the surrogate has
# begun to memorise wrong labels: mnist5k-MLP, 100 epochs, 20% noise: trained-on accuracy 0.84-0.86 against
# 0.61-0.65 held-out at epoch 10 (validation split; docs/when-does-moso-help.md).
PROBE_BASE = 2
# Held-out accuracy within this much of the best checkpoint's counts as learnt.
PLATEAU_TOLERANCE = 0.02
# How many consecutive checkpoints, from the first learnt one, are averaged.
EVIDENCE_CHECKPOINTS = 2
# Share of held-out samples predicted as labelled or confidently flagged, below which the surrogate has not
# learnt the task and its flags are not used.
CREDIBLE_EXPLAINED = 0.8
# How a judgment that acts on no label ends its reason (judge_neighbours replaces it where the features judge them).
NOT_JUDGED = "; no label was judged wrong"
# Held-out accuracy on the samples it does not flag below which the result warns that flags may be hard samples
# (a warning only; under 20-40% noise a good surrogate reads 0.82-0.90 here, because it misses some wrong labels).
CAUTION_ACCURACY = 0.8
# A surrogate still rising at its last checkpoint is judged still learning unless its flags held: of the held-out
# samples confident learning flagged at the checkpoint before, the share now predicted as labelled is under this
# multiple of the same share among the held-out samples it got wrong there without flagging them (its unsure
# mistakes), on at least FLAGS_MIN flags. The ratio estimates the share of its flags that behave like samples it
# has not learnt yet: wrong labels are never predicted as labelled on samples it does not train on. Fitted on
# training-data held-out shares of mnist5k (benchmarks/trend_judgments.py, docs/results/trend-2026-12-06; 230
# full-plan judgments, recipes of 3-10 epochs at batch 32/128): rising surrogates with >= 20 flags resolved them at
# 0.79-1.85 of the unsure rate on clean labels, 0.09-0.35 under symmetric and 20% pair-flip noise. Checked on sklearn
# digits as a PNG folder (train/ only), where the test was built: clean 0.53-0.98, still learning.
FLAGS_LEARNT_RATE = 0.5
FLAGS_MIN = 20
# A surrogate whose predictions on the held-out samples spread over fewer than this share of the classes their
# labels spread over (effective numbers of classes, exp(entropy)) has collapsed onto a few classes: its flags
# are not evidence. Label noise that a surrogate can learn through leaves the spread near 1 (symmetric noise
# spreads the labels, the predictions follow the true classes; pair flips move whole shares between classes).
COLLAPSED_SPREAD = 0.5
# The penultimate features of the evidence (``features``), read at the surrogate's last checkpoint: at most this
# many columns (a fixed random projection above it), stored as float16.
FEATURE_DIMS = 128


def spread(predicted, labels) -> float:
    """Effective number of classes (exp of the entropy of the class shares) of ``predicted`` over that of
    ``labels``: 1 when the predictions spread over the classes as the labels do, 1/C when all fall in one of C."""
    def effective(x):
        counts = np.bincount(np.asarray(x, dtype=np.int64))
        p = counts[counts > 0] / max(counts.sum(), 1)
        return float(np.exp(-(p * np.log(p)).sum())) if len(p) else 0.0

    base = effective(labels)
    return effective(predicted) / base if base else 0.0


def holdout_indices(labels, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a class-stratified random share ``fraction`` of ``labels`` (at most
    :data:`HOLDOUT_MAX`; classes with fewer than 5 samples give none; none at all when that would be
    fewer than :data:`HOLDOUT_MIN`)."""
    labels = np.asarray(labels)
    if not 0 <= fraction <= 1:
        raise ValueError(f"holdout must be in [0, 1), got {fraction}")
    fraction = min(fraction, HOLDOUT_MAX / max(len(labels), 1))
    if fraction * len(labels) < HOLDOUT_MIN:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed, 31337])
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = int(round(fraction * len(members))) if len(members) >= 5 else 0
        held.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(held)).astype(np.int64) if held else np.zeros(0, dtype=np.int64)


def _probs(model, checkpoints, dataset, *, batch_size, device, num_workers):
    from .methods.uncertainty import probabilities

    return [p.numpy() for p in probabilities(model, checkpoints, dataset, batch_size=batch_size, device=device,
                                             num_workers=num_workers)]


def probe_epochs(first_checkpoint: int) -> list[int]:
    """Epochs 1, 2, 4, 8, ... (powers of :data:`PROBE_BASE`) before ``first_checkpoint``: the extra
    snapshots the judge reads on a long recipe (none for a first checkpoint at epoch 1: 10-epoch recipes)."""
    out, e = [], 1
    while e < int(first_checkpoint):
        out.append(e)
        e *= PROBE_BASE
    return out


def tolerance(accuracy: float, n_held: int) -> float:
    """How far apart two held-out accuracies must be to differ: :data:`PLATEAU_TOLERANCE`, or two standard
    errors of an accuracy measured on ``n_held`` samples when that is larger (320 samples at 55%: 0.056;
    noisy labels make held-out accuracy wander by that much between checkpoints of a learnt surrogate)."""
    a = min(max(float(accuracy), 0.0), 1.0)
    return max(PLATEAU_TOLERANCE, 2.0 * float(np.sqrt(a * (1 - a) / max(n_held, 1))))


# The share of the trajectory whose outputs are the label evidence (fitted on validation splits of mnist5k:
# the first 3 of 10 epochs found 63-69% of 40% flipped labels with an MLP, all checkpoints 15-32%).
EVIDENCE_SEGMENT = 0.3


def early_checkpoints(epochs) -> list[int]:
    """Positions of the checkpoints whose outputs are the label evidence (see :data:`EVIDENCE_SEGMENT`):
    those up to that share of the last checkpoint's epoch, and at least the first two."""
    epochs = list(epochs)
    order = sorted(range(len(epochs)), key=lambda k: epochs[k])
    limit = max(epochs[order[min(1, len(order) - 1)]], EVIDENCE_SEGMENT * max(epochs))
    return [k for k, e in enumerate(epochs) if e <= limit + 1e-9]


def evidence_positions(epochs, held_accuracy=None, trained_accuracy=None, n_held: int | None = None) -> list[int]:
    """Positions (in ``epochs``' order) of the checkpoints whose outputs are the evidence.

    With held-out accuracies: among the checkpoints that have not started to memorise (accuracy on
    trained-on samples at most :data:`MEMORISATION_GAP` above the held-out one; the first checkpoint
    when none), the first whose held-out accuracy is within :data:`PLATEAU_TOLERANCE` of their best,
    and the next one (:data:`EVIDENCE_CHECKPOINTS` in all). Without: the fixed early segment."""
    epochs = list(epochs)
    if held_accuracy is None:
        return early_checkpoints(epochs)
    order = sorted(range(len(epochs)), key=lambda k: epochs[k])
    acc = np.asarray(held_accuracy, dtype=np.float64)
    fitted = acc if trained_accuracy is None else np.asarray(trained_accuracy, dtype=np.float64)
    fresh = [j for j, k in enumerate(order) if fitted[k] - acc[k] <= MEMORISATION_GAP + 1e-12] or [0]
    best = max(acc[order[j]] for j in fresh)
    tol = PLATEAU_TOLERANCE if n_held is None else tolerance(best, n_held)
    start = next(j for j in fresh if acc[order[j]] >= best - tol - 1e-12)
    # The next checkpoint is averaged in even when it has begun to memorise: where the first learnt one is an
    # early, barely trained checkpoint (40% pair-flip noise on digits: held-out 0.30 at epoch 1, 0.48 at epoch
    # 4 with a 0.12 gap measured on 115 samples), reading it alone kept 28-32% wrong labels instead of 11-14%
    # (training labels of the suite's digits-cnn-pair40, 2026-12-01). On a long recipe the probes make the
    # first learnt checkpoint an early one.
    return sorted(order[start:start + EVIDENCE_CHECKPOINTS])


# Why a judgment has no held-out samples when the checkpoints come from the user's own run (judge's ``given``).
GIVEN_CHECKPOINTS = ("the checkpoints were given: the run they come from trained on every sample, so none is held "
                     "out to test it on; a surrogate that dataprune trains itself holds a share out and is judged "
                     "on it")


def judge(model, checkpoints, dataset, *, held=None, batch_size: int = 512, device=None,
          num_workers: int = 0, trend: bool = True, given: bool = False) -> dict:
    """Where to read the label evidence and whether it is credible, from the held-out samples ``held``
    (positions of ``dataset``, the deterministic view, that the surrogate did not train on): a report
    with ``evidence_epochs`` (the checkpoints to read), held-out and trained-on accuracy per checkpoint,
    ``credible`` (True, False, or None when it could not be judged) and ``why`` / ``caution``. Costs
    eval-mode passes over the held-out samples and as many trained-on ones, not over the data.

    ``trend``: whether a held-out accuracy still rising at the last checkpoint makes the evidence not credible
    (the surrogate has not finished learning). True for a run of the recipe's whole schedule, where it was
    validated; a budget plan that stops early is still learning by design and is judged by what it explains
    (:data:`CREDIBLE_EXPLAINED`) and its spread alone, as a plan of one checkpoint always was. ``given``: the
    checkpoints come from the user's own run (the reason there are no held-out samples, :data:`GIVEN_CHECKPOINTS`)."""
    cks = as_checkpoints(checkpoints)
    if not cks:
        raise ValueError("label evidence needs the surrogate's checkpoints")
    labels = get_targets(dataset)
    epochs = [c.epoch for c in cks]
    held = np.zeros(0, dtype=np.int64) if held is None else np.asarray(held, dtype=np.int64)
    common = dict(batch_size=max(batch_size, 256), device=device, num_workers=num_workers)
    report = {"checkpoint_epochs": epochs, "held_out": int(len(held))}
    if not len(held):
        use = evidence_positions(epochs)
        report.update({"evidence_epochs": [epochs[k] for k in use], "credible": None,
                       "why": "no held-out samples (" + (GIVEN_CHECKPOINTS if given else
                                                            f"the training set gives fewer than {HOLDOUT_MIN}, or none "
                                                            "were asked for") +
                              "): whether the surrogate had learnt the task could not be judged; the "
                              "evidence is read at the start of its schedule"})
        return report
    held_probs = _probs(model, cks, SubsetView(dataset, held), **common)
    acc = [float((p.argmax(1) == labels[held]).mean()) for p in held_probs]
    # The same number of samples it trained on, for the memorisation gap.
    rest = np.setdiff1d(np.arange(len(labels)), held)
    probe = np.sort(np.random.default_rng(len(held)).choice(rest, size=min(len(held), len(rest)), replace=False))
    fitted = [float((p.argmax(1) == labels[probe]).mean())
              for p in _probs(model, cks, SubsetView(dataset, probe), **common)]
    use = evidence_positions(epochs, acc, fitted, n_held=len(held))
    report.update({"held_out_accuracy": [round(a, 4) for a in acc], "trained_accuracy": [round(a, 4) for a in fitted],
                   "evidence_epochs": [epochs[k] for k in use]})
    flagged, right, explained, spread_ = _held_out_test(np.mean([held_probs[k] for k in use], axis=0), labels[held])
    unflagged_acc = float(right[~flagged].mean()) if (~flagged).any() else 0.0
    report.update({"held_out_flagged": round(float(flagged.mean()), 4), "held_out_explained": round(explained, 4),
                   "held_out_accuracy_unflagged": round(unflagged_acc, 4), "held_out_spread": round(spread_, 4),
                   "credible": bool(explained >= CREDIBLE_EXPLAINED and spread_ >= COLLAPSED_SPREAD)})
    order = sorted(range(len(epochs)), key=lambda k: epochs[k])
    rising = trend and len(order) > 1 and use[0] == order[-1] and \
        acc[order[-1]] - acc[order[-2]] > tolerance(acc[order[-1]], len(held))
    still_learning = False
    if rising:
        moved = flags_resolved(held_probs[order[-2]], held_probs[order[-1]], labels[held])
        report["held_out_moved"] = {k: v if v is None or isinstance(v, int) else round(v, 4) for k, v in moved.items()}
        still_learning = not flags_hold(moved)
        rise = (f"held-out accuracy {acc[order[-2]]:.0%} at epoch {epochs[order[-2]]}, {acc[order[-1]]:.0%} at epoch "
                f"{epochs[order[-1]]}")
        since = f"of what it got wrong at epoch {epochs[order[-2]]}, it now predicts as labelled " + \
            (f"{moved['flags_resolved']:.0%} of the {moved['flagged']} samples it flagged"
             if moved["flagged"] else "no flagged sample (it flagged none)") + \
            (f" and {moved['unsure_resolved']:.0%} of the {moved['unsure']} it was unsure of"
             if moved["unsure"] else "")
        if not still_learning:
            report["trend"] = (f"the surrogate was still improving at its last checkpoint ({rise}), but its flags "
                               f"held ({since}): the rise is in samples it was unsure of, so the trend does not "
                               "discard its evidence")
    if still_learning:
        report["credible"] = False
        report["why"] = (f"the surrogate was still learning at its last checkpoint ({rise}; {since}): it cannot yet "
                         "tell wrong labels from samples it has not learnt" + NOT_JUDGED + " (a longer surrogate "
                         "recipe, more steps per epoch, would)")
    elif explained < CREDIBLE_EXPLAINED:
        report["why"] = (f"the surrogate had not learnt the task: on samples it did not train on, it predicted "
                         f"the label or confidently another class for only {explained:.0%} (needs "
                         f"{CREDIBLE_EXPLAINED:.0%})" + NOT_JUDGED)
    elif not report["credible"]:
        report["why"] = (f"the surrogate has collapsed onto few classes: on samples it did not train on its "
                         f"predictions spread over {spread_:.0%} of the classes the labels spread over (needs "
                         f"{COLLAPSED_SPREAD:.0%}), and it contradicts {flagged.mean():.0%} of their labels"
                         + NOT_JUDGED)
    elif unflagged_acc < CAUTION_ACCURACY:
        report["caution"] = (f"the surrogate is right on {unflagged_acc:.0%} of the held-out samples it does not "
                             "flag: some samples it flags may be hard, not mislabelled (a longer or better "
                             "surrogate recipe would tell them apart)")
    fell = diverged(epochs, acc, fitted, len(held), chance=1.0 / max(len(np.unique(labels)), 1))
    if fell:
        report["diverged"] = fell
        told = (f"its accuracy fell after epoch {fell['peak_epoch']} (held-out {fell['held_out_peak']:.0%} -> "
                f"{fell['held_out_last']:.0%}, on samples it trained on {fell['trained_peak']:.0%} -> "
                f"{fell['trained_last']:.0%} at epoch {fell['last_epoch']}): the training diverged, and the scores "
                "come from the same run (a lower learning rate or gradient clipping in the recipe would help)")
        if report["credible"] is False:
            report["why"] = report.get("why", "") + "; " + told
        else:
            report["caution"] = told + ("; " + report["caution"] if report.get("caution") else "")
    return report


def diverged(epochs, held_accuracy, trained_accuracy, n_held: int, *, chance: float = 0.0) -> dict | None:
    """Whether the surrogate's training diverged: at its last checkpoint both its held-out accuracy and its accuracy
    on samples it trained on fell from their best by more than :func:`tolerance` and by more than half of what the
    best had learnt above ``chance`` (so a dip between two checkpoints of a run still learning is not one).
    Memorising wrong labels lowers the held-out accuracy only (on samples it trained on it rises), so label noise
    alone does not read as a divergence. None, or the peak and last accuracies with their epochs. (No run of the
    validation evidence, 554 judged surrogates on mnist5k variants, reads as diverged.)"""
    order = sorted(range(len(epochs)), key=lambda k: epochs[k])
    if len(order) < 2:
        return None
    held = [float(held_accuracy[k]) for k in order]
    fitted = [float(trained_accuracy[k]) for k in order]
    peak = int(np.argmax(held))
    for best, last in ((held[peak], held[-1]), (max(fitted), fitted[-1])):
        if best - last <= max(tolerance(best, n_held), 0.5 * (best - chance)):
            return None
    return {"peak_epoch": int(epochs[order[peak]]), "last_epoch": int(epochs[order[-1]]),
            "held_out_peak": round(held[peak], 4), "held_out_last": round(held[-1], 4),
            "trained_peak": round(max(fitted), 4), "trained_last": round(fitted[-1], 4)}


def _held_out_test(probs, labels) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The credibility test's parts on held-out samples, for class probabilities or neighbour label shares ``probs``
    (N, C): ``(flagged, right, explained, spread)``: confident learning's flags, predicted as labelled, the share
    explained by either, and the spread of the predictions (:func:`spread`)."""
    from .select import confident_noise

    flagged = confident_noise(probs, labels, "confident")["suspect"]
    predicted = np.asarray(probs).argmax(1)
    right = predicted == labels
    return flagged, right, float((right | flagged).mean()), spread(predicted, labels)


def judged_by_neighbours(report: dict | None) -> bool:
    """Whether a judge's ``report`` says the probabilities were not credible and the neighbour labels were
    (:func:`judge_neighbours`): they judged the labels instead."""
    return bool(report) and report.get("credible") is False and \
        bool((report.get("neighbours_judged") or {}).get("credible"))


def judge_neighbours(features, labels, held, report: dict) -> dict:
    """Whether a surrogate whose probabilities were not credible (:func:`judge`) still gives credible label evidence in
    its feature space: the labels of each held-out sample's nearest neighbours
    (:func:`dataprune.select.neighbour_labels`, its own label excluded) judged by the same test as the probabilities,
    on the same samples: predicted as labelled or confidently another class for at least :data:`CREDIBLE_EXPLAINED`
    of them, spread over at least :data:`COLLAPSED_SPREAD` of the classes, and contradicting fewer than
    :data:`dataprune.select.UNCREDIBLE_FROM` of their labels (no learnable label noise does; neighbourhoods that do
    not group the classes do: their label shares are diffuse, confident learning then flags nearly every sample,
    and a flagged sample counts as explained). A short surrogate's head may not have learnt the task when its
    features already group the samples (mnist5k, 32 optimizer steps: held-out accuracy 20-40%, neighbours' labels
    right on 80-89% of the clean ones). Updates and returns ``report`` (the judge's, ``credible: False``):
    ``neighbours_judged``, and where credible ``neighbours = 1.0`` (the label evidence is the neighbour labels alone)
    and a ``why`` that says so. Costs held-out x N x D multiply-adds."""
    from .select import NEIGHBOURS_K, UNCREDIBLE_FROM, neighbour_labels

    labels = np.asarray(labels, dtype=np.int64)
    held = np.asarray(held, dtype=np.int64)
    if not len(held):
        return report
    shares = neighbour_labels(features, labels, rows=held).astype(np.float64)
    flagged, right, explained, spread_ = _held_out_test(shares, labels[held])
    credible = bool(explained >= CREDIBLE_EXPLAINED and spread_ >= COLLAPSED_SPREAD
                    and flagged.mean() < UNCREDIBLE_FROM)
    report["neighbours_judged"] = {"held_out_accuracy": round(float(right.mean()), 4),
                                   "held_out_explained": round(explained, 4), "held_out_spread": round(spread_, 4),
                                   "held_out_flagged": round(float(flagged.mean()), 4), "credible": credible}
    if credible:
        report["neighbours"] = 1.0
        report["why"] = (report.get("why", "the surrogate's probabilities were not credible").split(NOT_JUDGED)[0]
                         + f"; the labels of each sample's {NEIGHBOURS_K} nearest neighbours in its feature space "
                         f"judged them instead (on the samples it did not train on, they predicted the label or "
                         f"confidently another class for {explained:.0%})")
    return report


# A surrogate that trained most of the recipe (the full plan) mixes the neighbour labels into its label evidence only
# where its features have not memorised the labels it trained on: the neighbour labels must flag the trained-on
# samples at least this share as often as the held-out ones (judge_neighbour_memory). Fitted on mnist5k validation
# splits (benchmarks/fit_budget.py --budget full, tuning seeds 10-13, 20%/40% symmetric and pair-flip x CNN and MLP,
# docs/results/neighbour-memory-2026-12-06): the ratio read 0.71-1.09 for the CNN, whose cells gained from the mix
# (pair-flip up to +2.9), and 0.30-0.61 for the MLP, whose features of wrong labels had moved toward the class they
# claim (the mix kept 5-9% wrong labels instead of 2%, -2 to -3 points).
NEIGHBOURS_UNMEMORISED_FROM = 2 / 3


def judge_neighbour_memory(features, labels, held, report: dict, *, mix: float, seed: int = 0) -> dict:
    """Whether a long surrogate's features have begun to memorise its training labels, read from the neighbour
    labels (:func:`dataprune.select.neighbour_labels`): the share of samples confident learning flags on them among
    as many trained-on samples as held out, over that share among the held-out samples. A feature space that has
    memorised its wrong labels puts them among neighbours that share them, on the samples it trained on only.
    Where the held-out share shows label noise (at least :data:`dataprune.select.ADAPTIVE_FROM`) and the ratio
    reaches :data:`NEIGHBOURS_UNMEMORISED_FROM`, ``report["neighbours"] = mix`` (the policy mixes them into the
    label evidence). Updates and returns ``report`` (``neighbour_memory``: the two shares, the ratio, the
    decision). Costs 2 x held-out x N x D multiply-adds."""
    from .select import ADAPTIVE_FROM, confident_noise, neighbour_labels

    labels = np.asarray(labels, dtype=np.int64)
    held = np.asarray(held, dtype=np.int64)
    trained = np.setdiff1d(np.arange(len(labels)), held)
    if not len(held) or len(trained) < len(held):
        return report
    trained = np.sort(np.random.default_rng([seed, 7]).choice(trained, len(held), replace=False))
    rows = np.concatenate([held, trained])
    flags = confident_noise(neighbour_labels(features, labels, rows=rows), labels[rows], "confident")["suspect"]
    on_held, on_trained = float(flags[:len(held)].mean()), float(flags[len(held):].mean())
    ratio = on_trained / on_held if on_held > 0 else None
    mixed = bool(on_held >= ADAPTIVE_FROM and ratio is not None and ratio >= NEIGHBOURS_UNMEMORISED_FROM)
    report["neighbour_memory"] = {"held_out_flagged": round(on_held, 4), "trained_flagged": round(on_trained, 4),
                                  "ratio": None if ratio is None else round(ratio, 4), "mixed": mixed}
    if mixed:
        report["neighbours"] = float(mix)
    return report


# ... and wherever the label noise is a systematic flip: where confident learning finds a class's samples flipped to one
# other class at this mean rate over the classes (dominant_flips) or more. A flip near the size of a class's own share
# teaches the probabilities the flip itself (an image labelled 7 in 40% of its kind looks like a 7 to a model trained
# on them), while the neighbour labels, formed again from the trusted samples, still see the class the features put
# it in -- memorised or not. Fitted on mnist5k validation splits (benchmarks/fit_budget.py --budget full, tuning seeds
# 10-15, 20%/40% symmetric and pair-flip x CNN and MLP; docs/results/flip-gate-2026-12-06): the rate read 0.20-0.28
# under 40% pair-flip, where the mix gained in every run (MLP +7.3 on average, which the memorisation test left
# out), 0.10-0.16 under 20% pair-flip and at most 0.06 under symmetric noise; the threshold is the middle of that gap.
# Out of sample (seeds 16-18, and 30% pair-flip): 0.19-0.28 under 40%, 0.16-0.24 under 30%, the others as before.
NEIGHBOURS_FROM_FLIPS = 0.18


def dominant_flips(probs, labels) -> float:
    """The share of a class's samples that confident learning flags (:func:`dataprune.select.confident_noise`) and
    the probabilities ``probs`` (N, C) put in one other class -- the class most of its flags go to -- averaged over
    the labelled classes. About the pair-flip rate under pair-flip noise (less what confident learning misses); about
    rate / (C - 1) under symmetric noise."""
    from .select import confident_noise

    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs)
    flagged = confident_noise(probs, labels, "confident")["suspect"]
    predicted = probs.argmax(1)
    rates = []
    for c in np.unique(labels):
        mine = labels == c
        counts = np.bincount(predicted[mine & flagged], minlength=probs.shape[1])
        counts[c] = 0
        rates.append(counts.max() / mine.sum())
    return float(np.mean(rates)) if rates else 0.0


def judge_flips(probs, labels, report: dict, *, mix: float) -> dict:
    """Whether the label noise a long surrogate finds is systematic enough for the neighbour labels to judge beside its
    probabilities: where the held-out flag share (``report["held_out_flagged"]``, from :func:`judge`) shows label
    noise (at least :data:`dataprune.select.ADAPTIVE_FROM`) and :func:`dominant_flips` of ``probs`` (N, C) reaches
    :data:`NEIGHBOURS_FROM_FLIPS`, ``report["neighbours"] = mix`` (the policy mixes them into the label evidence).
    Updates and returns ``report`` (``flips``: the rate and the decision)."""
    from .select import ADAPTIVE_FROM

    rate = dominant_flips(probs, labels)
    mixed = bool(report.get("held_out_flagged", 0) >= ADAPTIVE_FROM and rate >= NEIGHBOURS_FROM_FLIPS)
    report["flips"] = {"dominant_rate": round(rate, 4), "mixed": mixed}
    if mixed:
        report["neighbours"] = float(mix)
    return report


def judge_neighbour_mix(probs, features, labels, held, report: dict, *, mix: float, seed: int = 0) -> dict:
    """Whether a long surrogate (the full plan) mixes its neighbour labels into its label evidence: where the label
    noise is a systematic flip (:func:`judge_flips`, on the probabilities ``probs``), or else where its ``features``
    have not memorised the labels (:func:`judge_neighbour_memory`). Updates and returns ``report`` (both tests
    recorded where run; ``report["neighbours"] = mix`` where either asks for the mix)."""
    report = judge_flips(probs, labels, report, mix=mix)
    if not report["flips"]["mixed"]:
        report = judge_neighbour_memory(features, labels, held, report, mix=mix, seed=seed)
    return report


def flags_resolved(before, after, labels) -> dict:
    """How the mistakes of a surrogate at one checkpoint (class probabilities ``before``, (N, C)) fare at a later
    one (``after``): ``flagged`` / ``unsure``, how many samples confident learning flags / how many others it gets
    wrong, and ``flags_resolved`` / ``unsure_resolved``, the share of each predicted as labelled by ``after`` (None
    where there were none). Flags resolving at a small fraction of the rate of its unsure mistakes are not samples
    it has not learnt yet (:data:`FLAGS_LEARNT_RATE`)."""
    labels = np.asarray(labels)
    flagged, unsure = mistakes(before, labels)
    return resolved(flagged, unsure, np.asarray(after).argmax(1) == labels)


def mistakes(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(flagged, unsure)`` boolean masks of a model's mistakes from its class probabilities ``probs`` (N, C): the
    samples confident learning flags, and the others it predicts as another class than their label."""
    from .select import confident_noise

    labels = np.asarray(labels)
    flagged = confident_noise(probs, labels, "confident")["suspect"]
    return flagged, (np.asarray(probs).argmax(1) != labels) & ~flagged


def resolved(flagged, unsure, right) -> dict:
    """:func:`flags_resolved`'s figures from the earlier mistakes (:func:`mistakes`) and ``right``, which samples the
    later model predicts as labelled."""
    return {"flagged": int(flagged.sum()), "unsure": int(unsure.sum()),
            "flags_resolved": float(right[flagged].mean()) if flagged.any() else None,
            "unsure_resolved": float(right[unsure].mean()) if unsure.any() else None}


def flags_hold(moved: dict) -> bool:
    """Whether a rising surrogate's flags held (:func:`flags_resolved`): at least :data:`FLAGS_MIN` flags, and
    flags predicted as labelled at under :data:`FLAGS_LEARNT_RATE` times the rate of its unsure mistakes."""
    if moved["flagged"] < FLAGS_MIN or not moved["unsure_resolved"]:
        return False
    return moved["flags_resolved"] < FLAGS_LEARNT_RATE * moved["unsure_resolved"]


def features(model, checkpoints, dataset, *, batch_size: int = 512, device=None, num_workers: int = 0) -> np.ndarray:
    """The evidence array ``features``: (N, min(D, :data:`FEATURE_DIMS`)) float16 penultimate features of
    ``dataset`` (the deterministic view) at the last checkpoint, eval mode; what ``policy="auto"`` reads to
    put samples nearer another class's mean last (:func:`dataprune.select.off_centre`). One forward pass."""
    import torch

    from .methods.geometry import embeddings

    cks = as_checkpoints(checkpoints)
    if not cks:
        raise ValueError("features need the surrogate's checkpoints")
    return as_evidence_features(embeddings(model, cks[-1:], dataset, batch_size=max(batch_size, 256), device=device,
                                           num_workers=num_workers, dims=FEATURE_DIMS, dtype=torch.float32).numpy())


def as_evidence_features(f: np.ndarray) -> np.ndarray:
    """Features as the evidence keeps them: float16, which holds ~3 significant digits, rescaled first where any
    would overflow it (|x| > 65504)."""
    f = np.asarray(f)
    scale = float(np.abs(f).max()) if f.size else 0.0
    return (f / scale if scale > 1e4 else f).astype(np.float16)


def label_evidence(model, checkpoints, dataset, *, held=None, batch_size: int = 512, device=None,
                   num_workers: int = 0, report: dict | None = None) -> tuple[dict, dict]:
    """``(aux, report)``: the evidence arrays ``probs`` (N, C) and ``disagreement`` (N,), read in eval
    mode from ``dataset`` (the deterministic view) at the checkpoints :func:`judge` chose (or that a
    given ``report`` names), and the report. Costs one eval-mode pass over the data per checkpoint read."""
    cks = as_checkpoints(checkpoints)
    if report is None:
        report = judge(model, cks, dataset, held=held, batch_size=batch_size, device=device, num_workers=num_workers)
    chosen = [c for c in cks if c.epoch in set(report["evidence_epochs"])]
    labels = get_targets(dataset)
    probs = _probs(model, chosen, dataset, batch_size=max(batch_size, 256), device=device, num_workers=num_workers)
    mean = np.mean(probs, axis=0)
    wrong = np.mean([p.argmax(1) != labels for p in probs], axis=0)
    return {"probs": mean.astype(np.float32), "disagreement": wrong}, report


def apply_credibility(policy: str, policy_options: dict | None, reports) -> tuple[dict, dict]:
    """``(policy_options, decisions)`` for a selection that reads label evidence. With ``policy="auto"``
    and a surrogate that is not credible (any part's report), nothing it says is acted on: no label is
    judged wrong (noise rule ``"none"``) and each class's quota is a uniform random sample of the class
    (``within="random"``) instead of its top scores -- the scores come from the same surrogate -- and its
    features do not reorder anything (``centre_rule=False``), unless the caller named these options. A
    credible surrogate's held-out flag share goes to the policy (``held_out_flagged``: noise is evident when
    it reaches :data:`dataprune.select.ADAPTIVE_FROM`, even if memorisation hides it on the trained-on
    samples). Where the probabilities were not credible but the neighbour labels in the surrogate's feature space were
    (:func:`judge_neighbours`, on every part that was not credible), those judge the labels instead
    (``neighbours=1``). The reports go into the decisions. The CLI,
    the bench and :func:`dataprune.prune` all call this."""
    options = dict(policy_options or {})
    if isinstance(reports, dict):           # one report (a result's decisions["evidence"])
        reports = [reports]
    reports = [r for r in (reports or []) if r]
    if not reports:
        return options, {}
    doubted = [r for r in reports if r.get("credible") is False]
    rescued = all(judged_by_neighbours(r) for r in doubted) and \
        float(options.get("neighbours", 1.0)) >= 1.0         # (a caller who turned the neighbours off: not rescued)
    if policy == "auto" and doubted and rescued:
        # Probabilities not credible, features' neighbourhoods credible (judge_neighbours): the neighbours' labels
        # alone judge the labels; noise is evident where they flag ADAPTIVE_FROM of the whole set *and* of the
        # held-out samples (either alone crossed it on clean data: docs/results/neighbours-alone-2026-12-06); the
        # scores still order nothing.
        options.setdefault("neighbours", 1.0)
        options.setdefault("held_out_flagged", float(np.mean([r["neighbours_judged"]["held_out_flagged"]
                                                              for r in doubted])))
        options.setdefault("within", "random")
        options.setdefault("centre_rule", False)
    elif policy == "auto" and doubted:
        options.setdefault("noise", "none")
        options.setdefault("within", "random")
        options.setdefault("centre_rule", False)
    elif policy == "auto":
        held = [r["held_out_flagged"] for r in reports if r.get("held_out_flagged") is not None]
        if held:      # what the surrogate says of samples it did not train on: is label noise evident?
            options.setdefault("held_out_flagged", float(np.mean(held)))
        mix = [float(r["neighbours"]) for r in reports if r.get("neighbours")]
        if mix:       # a plan that stops early: its label evidence also reads the neighbours' labels
            options.setdefault("neighbours", max(mix))
    return options, {"evidence": reports[0] if len(reports) == 1 else reports}
