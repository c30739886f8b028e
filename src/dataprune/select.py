"""From scores to the indices to keep.

``ratio`` is always the pruning ratio, the fraction of samples *removed* (as in the
pruning literature: ``ratio=0.7`` keeps 30%). The number kept is
``max(1, round((1 - ratio) * N))``.

Every policy is in the :data:`POLICIES` registry with the options it takes and the
per-sample *evidence* it reads (arrays a scoring method returns beside its scores:
``probs``, ``gradnorm``, ``disagreement``, ``label_prob``). :func:`select` accepts any of
the evidence names for any policy and uses those its policy needs, so
``select(scores, r, policy=p, **evidence)`` works with whatever a method returned.
:func:`selection` also returns what the policy estimated and decided.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .quotas import class_quotas, waterfill_quotas
from .utils import row_blocks

EVIDENCE = ("probs", "gradnorm", "disagreement", "label_prob", "features")
SAMPLINGS = ("top", "stratified")

# The constants of the ``auto`` policy (the recommended default), all fitted on validation splits
# (20% of the training set; balanced accuracy) of mnist5k variants -- clean, symmetric noise 20/40%,
# pair-flip 20/40%, long tail 10:1 and 50:1 -- with the CNN and the MLP, 2 tuning seeds; the test
# sets were not read (benchmarks/fit_default.py; the tables are in docs/when-does-moso-help.md).
# From this pruning ratio on, the trusted part of each class is sampled (AUTO_HIGH_SAMPLING) instead
# of keeping its top scores: at 10% of the data the top of a class-wise score is its most typical,
# mutually redundant samples (clean CNN at ratio 0.9: top 77.6, strata 77.6, random 87.1).
AUTO_STRATIFIED_FROM = 0.8
# Class quotas follow (trusted class size) ** AUTO_ALPHA, capped at the class size: 1 keeps every
# class's share, 0 equalises the counts (small classes kept whole first). 0 won every long-tailed
# cell from ratio 0.5 on (+25 to +30 points over 1 at 0.9) and equals 1 on balanced classes.
AUTO_ALPHA = 0.0
AUTO_STRATA = 10
# How a label is judged wrong (see confident_noise); "adaptive" had the best mean over all cells.
AUTO_NOISE_RULE = "adaptive"
# ... and where the neighbour labels alone judge (neighbours=1: a surrogate whose probabilities were not credible,
# evidence.judge_neighbours): confident learning. Fitted with benchmarks/fit_budget.py on validation splits of
# mnist5k at --budget 0.1 (CNN, 20%/40% symmetric and pair-flip noise, 10:1 long tail; tuning seeds 10-11; ratios
# 0.5/0.7/0.9; docs/results/neighbours-alone-2026-12-06): against acting on nothing, "confident" +5.54 points
# (ahead by more than 0.5 in 19 of 30 cells, behind in none), "adaptive" +4.89 (behind in 5: its calibrated rule
# also set aside 1,080 samples of which ~500 clean under 20% symmetric noise, -0.8 there).
NEIGHBOURS_NOISE_RULE = "confident"
# How the trusted samples of a class are kept from AUTO_STRATIFIED_FROM on: "random" or
# "stratified" (even over score strata).
AUTO_HIGH_SAMPLING = "random"
# ... and from AUTO_MID_FROM up to AUTO_STRATIFIED_FROM: an even sample across the class's score strata instead of its
# highest scores. Fitted on the full plan's validation evidence (benchmarks/fit_budget.py --budget full, mnist5k,
# clean / 10:1 / 20% and 40% symmetric and pair-flip noise x CNN and MLP, tuning seeds 10-13 noisy and 10-15 clean /
# 10:1; docs/results/within-0.7-2026-12-06): at ratio 0.7 +1.33 points of balanced validation accuracy over the top
# scores in 56 runs (35 ahead by more than 0.5, 10 behind: the CNN under 20% noise, -0.6 / -0.7), +1.09 in 36 runs of
# new seeds; at 0.5 -0.01 (no reason to move): the band starts between the two.
AUTO_MID_FROM = 0.6
AUTO_MID_SAMPLING = "stratified"
# With the surrogate's penultimate features (evidence ``features``), where label noise is evident: a trusted
# sample nearer another class's mean feature than its own class's goes last in its class (see auto_indices).
# Fitted on the same validation splits (benchmarks/fit_default.py, candidate "centre=1"; docs/cost.md and
# docs/when-does-moso-help.md give the table).
AUTO_CENTRE_RULE = True
# Where the trusted samples cannot fill the budget (40% noise at ratio 0.3), which set-aside samples come back first
# (see refill_order). Fitted on validation splits of mnist5k (benchmarks/fit_budget.py evidence --budget full; 40%
# symmetric and pair-flip noise, CNN and MLP, 4 tuning seeds, ratio 0.3, where the refill happens; the other settings
# and ratios do not refill): "both" +1.62 points of balanced accuracy over "margin" (pair-flip +4.0 / +3.8, symmetric
# -0.4 / -1.0); "centre" +2.06 but -4.3 on the symmetric MLP (features read at the end of the surrogate's run have
# moved towards the wrong labels it memorised; the early margin has partly learnt the pair flips). The table:
# docs/results/refill-2026-12-06.
REFILL_ORDERS = ("margin", "centre", "both")
AUTO_REFILL = "both"


def _check(scores, ratio, labels, num_samples):
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be a 1-D array of shape (N,), got shape {scores.shape}")
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        raise TypeError(f"scores must be numeric, got dtype {scores.dtype}")
    scores = scores.astype(np.float64)
    n = len(scores)
    if n == 0:
        raise ValueError("scores is empty: nothing to select from")
    if num_samples is not None and n != num_samples:
        raise ValueError(f"scores has {n} entries but the dataset has {num_samples} samples; "
                         "were the scores computed on another dataset or split?")
    nan = np.flatnonzero(np.isnan(scores))
    if len(nan):
        raise ValueError(f"scores contain {len(nan)} NaN value(s) (e.g. at indices {nan[:10].tolist()}); "
                         "fix or drop them before selecting (-inf is allowed and is pruned first)")
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        raise TypeError(f"ratio must be a number in [0, 1), got {ratio!r}") from None
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio is the fraction of samples removed and must be in [0, 1), got {ratio}")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels has shape {labels.shape} but scores has shape ({n},); they must be "
                             "aligned sample by sample")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
        if labels.min() < 0:
            raise ValueError(f"labels must be >= 0, found {labels.min()}")
        labels = labels.astype(np.int64)
    return scores, ratio, labels


def num_kept(n: int, ratio: float) -> int:
    """How many of ``n`` samples a pruning ratio keeps: ``max(1, round((1 - ratio) * n))``."""
    return max(1, int(np.floor((1.0 - ratio) * n + 0.5 + 1e-9)))


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    # Highest scores first; equal scores keep the lower index first (stable), so it is deterministic.
    return np.argsort(-scores, kind="stable")[:k]


def ccs_indices(scores: np.ndarray, k: int, *, beta: float = 0.1, strata: int = 50, hard: str = "high",
                rng: np.random.Generator) -> np.ndarray:
    """Coverage-centric selection (Zheng et al., ICLR 2023) of ``k`` samples.

    Drops the hardest ``floor(beta * N)`` samples (those at the ``hard`` end of the scores,
    "high" for difficulty scores such as EL2N, forgetting or -AUM), splits the rest of the
    score range into ``strata`` equal-width bins, then fills the budget bin by bin from the
    smallest bin up, each taking at most an equal share of what is left, sampled uniformly.
    """
    if hard not in ("high", "low"):
        raise ValueError(f"hard must be 'high' or 'low', got {hard!r}")
    if not 0 <= beta < 1:
        raise ValueError(f"beta (the hardest fraction dropped) must be in [0, 1), got {beta}")
    if strata < 1:
        raise ValueError(f"strata must be >= 1, got {strata}")
    n = len(scores)
    difficulty = scores if hard == "high" else -scores
    order = np.argsort(-difficulty, kind="stable")          # hardest first
    cut = min(int(beta * n), n - k)                          # never drop so many that k cannot be met
    pool = order[cut:]
    d = difficulty[pool]
    finite = np.isfinite(d)
    lo, hi = (d[finite].min(), d[finite].max()) if finite.any() else (0.0, 0.0)
    # (d - lo) / (hi - lo) * strata, not / width: a range of a few denormals gives a width of 0
    span = hi - lo if hi > lo else 1.0
    bins = np.clip(np.floor((np.clip(d, lo, hi) - lo) / span * strata), 0, strata - 1).astype(np.int64)
    groups = [pool[bins == b] for b in range(strata)]
    groups = sorted((g for g in groups if len(g)), key=len)
    chosen, budget = [], k
    for j, g in enumerate(groups):
        take = min(len(g), budget // (len(groups) - j))
        chosen.append(rng.choice(g, size=take, replace=False))
        budget -= take
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def noise_cutoff_indices(scores: np.ndarray, labels: np.ndarray, k: int, evidence: np.ndarray,
                         cutoff: float, *, sampling: str = "top", strata: int = 10,
                         rng: np.random.Generator | None = None) -> np.ndarray:
    """Per class: set aside the ``cutoff`` fraction with the largest ``evidence`` (most likely
    mislabelled), then keep the class's quota of the rest ("trusted" samples).

    ``sampling="top"`` keeps the trusted samples with the highest scores;
    ``sampling="stratified"`` splits the trusted samples' score range into ``strata``
    equal-width bins and fills the quota evenly across them, sampled uniformly within a
    bin with ``rng`` (coverage-centric sampling without its hard-sample drop, which the
    cutoff has already done). Quotas are class-balanced (:func:`class_quotas`). When a
    class's quota exceeds what is left after the cutoff, the set-aside samples with the
    least evidence fill the gap.
    """
    if not 0.0 <= cutoff < 1.0:
        raise ValueError(f"cutoff (the fraction set aside per class) must be in [0, 1), got {cutoff}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if sampling == "stratified" and rng is None:
        raise ValueError("sampling='stratified' needs rng= (a numpy Generator)")
    evidence = np.asarray(evidence, dtype=np.float64)
    if evidence.shape != scores.shape:
        raise ValueError(f"evidence has shape {evidence.shape} but scores has shape {scores.shape}")
    keep = []
    for c, q in class_quotas(labels, k).items():
        members = np.flatnonzero(labels == c)
        by_evidence = members[np.argsort(evidence[members], kind="stable")]      # least suspicious first
        n_out = min(int(np.floor(cutoff * len(members) + 1e-9)), len(members) - q)
        trusted = by_evidence[:len(members) - n_out]
        if sampling == "top":
            keep.append(trusted[_top(scores[trusted], q)])
        else:
            keep.append(trusted[ccs_indices(scores[trusted], q, beta=0.0, strata=strata, rng=rng)])
    return np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)


NOISE_RULES = ("adaptive", "confident", "confident_argmax", "argmax", "calibrated", "rate", "adaptive_rate", "none")
# "adaptive": where confident learning finds at least this share of the whole set suspect, the
# calibrated rule judges (it finds nearly every wrong label but also a few per cent of hard clean
# ones); below it, confident learning does (it leaves hard clean samples alone). A weak surrogate
# (a short run on little data) flags 2-9% of clean mnist5k this way, 20% label noise 15%.
ADAPTIVE_FROM = 0.1
# ... unless the calibrated rule would flag half of the labels or more: no learnable label noise
# does that (pair-flip noise must stay below 50%), a surrogate that has not learnt the task does.
UNCREDIBLE_FROM = 0.5


def noise_evident(confident_share: float, held_out_flagged: float | None = None) -> bool:
    """Whether label noise is evident: confident learning flags at least :data:`ADAPTIVE_FROM` of the set, or of the
    held-out samples the surrogate did not train on (``held_out_flagged``). The switch of the adaptive rule, of the
    off-centre rule and of the neighbour labels."""
    return max(float(confident_share), held_out_flagged or 0.0) >= ADAPTIVE_FROM


def confident_noise(probs: np.ndarray, labels: np.ndarray, rule: str = "confident", *,
                    held_out_flagged: float | None = None) -> dict:
    """Which labels look wrong, from the surrogate's class probabilities ``probs`` (N, C).

    ``rule="confident"`` is confident learning (Northcutt et al., JAIR 2021), per class: class j's
    threshold ``t_j`` is the mean probability of class j over the samples labelled j; a sample is
    confidently of class j when ``probs[i, j] >= t_j`` (the most probable such j when several), and
    *suspect* when that class is not its label. Thresholds per class make the estimate hold under
    class-dependent noise and imbalance: a rare class the model underfits gets a low threshold, so
    its hard samples are not taken for mislabelled ones. ``"argmax"``: suspect when the most
    probable class is not the label; ``"confident_argmax"``: both (confidently of another class *and* most
    probably another class: a rare class whose labels are mostly wrong gets a threshold so low that any small
    probability of it reaches it, and the confident rule alone then flags clean samples of other classes);
    ``"calibrated"``: the same after dividing each class's
    probability by its threshold; ``"adaptive"``: ``"calibrated"`` when confident learning finds at
    least :data:`ADAPTIVE_FROM` of the set suspect (noise is evident), else ``"confident"``;
    ``"none"``: nothing is suspect. ``held_out_flagged``: the share confident learning flags among samples
    the surrogate did *not* train on (:func:`dataprune.evidence.judge`); noise is evident when either share
    reaches :data:`ADAPTIVE_FROM` -- a surrogate that has begun to memorise its (learnable, e.g. pair-flip)
    wrong labels flags fewer of the samples it trained on than of the held-out ones.

    Returns ``{"suspect": (N,) bool, "margin": (N,)`` probability of the label minus the largest other
    probability (low = suspicious), ``"rate": {class: share of its samples suspect}``, ``"confident_share"``:
    the share confident learning flags, whatever the rule ``}``.
    """
    if rule not in NOISE_RULES:
        raise ValueError(f"unknown noise rule {rule!r}; valid: {', '.join(NOISE_RULES)}")
    probs = np.asarray(probs)
    if not np.issubdtype(probs.dtype, np.floating):
        probs = probs.astype(np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, c = probs.shape
    if labels.shape != (n,):
        raise ValueError(f"probs has {n} rows but labels has shape {labels.shape}")
    if labels.max(initial=0) >= c:
        raise ValueError(f"labels go up to {labels.max()} but probs has only {c} classes")
    thresholds = np.full(c, np.inf)
    for j in np.unique(labels):
        thresholds[j] = max(np.asarray(probs[labels == j, j], dtype=np.float64).mean(), 1e-12)
    divisor = np.where(np.isfinite(thresholds), thresholds, 1.0)[None, :]
    # Row by row in blocks (utils.ROW_BLOCK), in float64: the (N, C) temporaries stay one block's size (ImageNet:
    # 1.28M x 1000 probabilities), with the values an all-at-once pass gives.
    confident, margin, cmargin = np.empty(n, np.int64), np.empty(n), np.empty(n)
    by_calibrated, not_argmax = np.empty(n, bool), np.empty(n, bool)
    for a, b in row_blocks(n):
        p, lab = np.asarray(probs[a:b], dtype=np.float64), labels[a:b]
        above = p >= thresholds[None, :]
        confident[a:b] = np.where(above.any(1), np.where(above, p, -np.inf).argmax(1), -1)
        scaled = p / divisor
        by_calibrated[a:b] = scaled.argmax(1) != lab
        cmargin[a:b] = _label_margin(scaled, lab)
        margin[a:b] = _label_margin(p, lab)
        not_argmax[a:b] = p.argmax(1) != lab
    by_confident = (confident >= 0) & (confident != labels)
    if rule == "confident":
        suspect = by_confident
    elif rule == "confident_argmax":
        suspect = by_confident & not_argmax
    elif rule == "argmax":
        suspect = not_argmax
    elif rule == "calibrated":
        suspect = by_calibrated
    elif rule == "rate":
        suspect = _by_rate(cmargin, labels, confident, by_calibrated)
    elif rule in ("adaptive", "adaptive_rate"):
        if by_calibrated.mean() >= UNCREDIBLE_FROM:
            # A surrogate that contradicts most labels has not learnt the task (too short a run, too
            # little data): its opinion is no evidence. Only the confident flags remain, if credible.
            suspect = by_confident if by_confident.mean() < UNCREDIBLE_FROM else np.zeros(n, bool)
        elif noise_evident(by_confident.mean(), held_out_flagged):
            suspect = by_calibrated if rule == "adaptive" else _by_rate(cmargin, labels, confident, by_calibrated)
        else:
            suspect = by_confident
    else:
        suspect = np.zeros(n, bool)
    counts = np.bincount(labels, minlength=c)
    flagged = np.bincount(labels, weights=suspect, minlength=c)
    rate = {int(j): float(flagged[j] / counts[j]) for j in np.flatnonzero(counts)}
    return {"suspect": suspect, "margin": margin, "rate": rate, "confident_share": float(by_confident.mean())}


def _label_margin(p, labels):
    """(N,) each row's value at its label minus its largest value elsewhere (low = suspicious)."""
    rows = np.arange(len(labels))
    others = p.copy()
    others[rows, labels] = -np.inf
    return p[rows, labels] - others.max(1)


def _by_rate(cmargin, labels, confident, by_calibrated):
    """The ``"rate"`` rule: per labelled class i, confident learning's estimate of how many of its labels are
    wrong -- its size times the share of its *confidently counted* samples that are confidently another class
    (the calibrated confident joint of Northcutt et al.) -- and that many of the calibrated rule's flags, the
    most suspicious first (lowest calibrated margin: the label's probability over its threshold minus the
    largest other class's). A short surrogate's calibrated rule also flags hard clean samples it has not learnt
    yet; the estimated count keeps the least suspicious of them."""
    n = len(labels)
    suspect = np.zeros(n, bool)
    for j in np.unique(labels):
        members = np.flatnonzero(labels == j)
        counted = confident[members] >= 0
        if not counted.any():
            continue
        wrong = int(round(len(members) * float((confident[members][counted] != j).mean())))
        flagged = members[by_calibrated[members]]
        take = flagged[np.argsort(cmargin[flagged], kind="stable")[:wrong]]
        suspect[take] = True
    return suspect


def trusted_means(features, labels, trusted) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, means)``: each label's mean feature (float64) over its ``trusted`` samples, over all of the
    class's samples when none of it is trusted (the class centres of :func:`off_centre` and :func:`centre_distance`)."""
    classes = np.unique(labels)
    means = np.stack([features[(labels == c) & trusted].astype(np.float64).mean(0) if ((labels == c) & trusted).any()
                      else features[labels == c].astype(np.float64).mean(0) for c in classes])
    return classes, means


def off_centre(features, labels, trusted, *, chunk: int = 65536) -> np.ndarray:
    """(N,) bool: samples whose features are nearer another class's mean than their own label's, the class
    means taken over the ``trusted`` samples (all of a class's samples when none of it is trusted). Rows are
    compared in chunks: memory O(chunk x classes), whatever N."""
    f = np.asarray(features)
    labels = np.asarray(labels, dtype=np.int64)
    if f.ndim != 2 or len(f) != len(labels):
        raise ValueError(f"features must have shape (N, D) with N = {len(labels)}, got {f.shape}")
    classes, means = trusted_means(f, labels, trusted)
    msq = (means ** 2).sum(1)
    out = np.zeros(len(labels), bool)
    for a in range(0, len(labels), chunk):
        x = f[a:a + chunk].astype(np.float64)
        d2 = msq[None, :] - 2.0 * x @ means.T          # + |x|^2, the same for every class
        out[a:a + chunk] = classes[d2.argmin(1)] != labels[a:a + chunk]
    return out


def refill_order(margin, distance, how: str) -> np.ndarray:
    """Sort keys (ascending = back first) for the set-aside samples that return when the trusted ones cannot fill
    the budget: ``"margin"``, the highest label margin of the early evidence first; ``"centre"``, the nearest to
    their label's trusted class mean in feature space first (``distance``, :func:`centre_distance`); ``"both"``,
    the sum of the two ranks (as shares, 0-1). Without ``distance`` (no features), the margin."""
    def share(x):
        r = np.empty(len(x))
        r[np.argsort(x, kind="stable")] = np.arange(len(x))
        return r / max(len(x) - 1, 1)

    if how not in REFILL_ORDERS:
        raise ValueError(f"unknown refill order {how!r}; valid: {', '.join(REFILL_ORDERS)}")
    if distance is None or how == "margin":
        return -np.asarray(margin, dtype=np.float64)
    if how == "centre":
        return np.asarray(distance, dtype=np.float64)
    return share(np.asarray(distance, dtype=np.float64)) + share(-np.asarray(margin, dtype=np.float64))


def centre_distance(features, labels, trusted, rows, *, chunk: int = 65536) -> np.ndarray:
    """(len(rows),) Euclidean distance of each of ``rows``' features to the mean feature of its label's ``trusted``
    samples (all of the class's samples when none is trusted), in chunks of rows."""
    f = np.asarray(features)
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    classes, means = trusted_means(f, labels, trusted)
    position = {int(c): j for j, c in enumerate(classes)}
    which = np.array([position[int(c)] for c in labels[rows]], dtype=np.int64)
    out = np.empty(len(rows))
    for a in range(0, len(rows), chunk):
        x = f[rows[a:a + chunk]].astype(np.float64)
        out[a:a + chunk] = np.linalg.norm(x - means[which[a:a + chunk]], axis=1)
    return out


# k of the neighbour-label evidence (:func:`neighbour_labels`) and the most samples its neighbours are drawn from (a
# cost bound). k: 25 over 10 on the flag counts of --budget 0.25's evidence on mnist5k validation runs (training
# labels only; fewer wrong labels missed at a similar count of clean samples flagged); not tuned further.
NEIGHBOURS_K = 25
NEIGHBOURS_MAX = 20000
# Where the probabilities are mixed with the neighbour labels (0 < neighbours < 1), the neighbour labels are formed
# again this many times with only the samples the last mixed evidence trusts as neighbours: a wrong label no longer
# votes for its given class in its neighbours' shares (under 40% pair-flip noise 40% of a class's neighbours carry
# the flipped label). Fitted on mnist5k validation splits (benchmarks/fit_budget.py, candidates nb=0.5 / nbt=0.5[/2],
# docs/results/trusted-neighbours-2026-12-06): at --budget 0.25 (tuning seeds 10-13, 7 noisy settings x ratios
# 0.5/0.7/0.9) 1 round +0.22 points of balanced accuracy over 0 (ahead by more than 0.5 in 7 of 21 cells, behind
# in 4; 40% pair-flip CNN +2.3 / -0.6 / +1.5, kept wrong labels 3.9% -> 1.9%), 2 rounds +0.14; at 0.41 (seeds
# 10-11) 1 round +0.13 (5 ahead, 3 behind of 27); clean and long-tail cells identical (noise not evident).
TRUSTED_NEIGHBOURS = 1


def neighbour_labels(features, labels, *, k: int = NEIGHBOURS_K, max_refs: int = NEIGHBOURS_MAX, seed: int = 0,
                     chunk: int = 2048, rows=None, refs=None) -> np.ndarray:
    """(N, C) float32: for each sample, the shares of the labels among its ``k`` nearest neighbours by cosine
    similarity of ``features`` (N, D), itself excluded. Neighbours are drawn from all samples, or from a
    class-stratified random ``max_refs`` of them on a larger set (the cost is N x refs x D). Label evidence from the
    data's geometry rather than the surrogate's head: a sample whose label its neighbours do not share is suspect.
    ``rows`` (positions): only those samples' shares, (len(rows), C), their neighbours still drawn from all.
    ``refs`` ((N,) bool): the samples that may be neighbours (e.g. those whose labels are trusted)."""
    import torch

    from .quotas import stratified_fraction

    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    c = int(labels.max()) + 1 if n else 0
    f = torch.as_tensor(np.asarray(features, dtype=np.float32))
    f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-8)
    pool = np.arange(n) if refs is None else np.flatnonzero(np.asarray(refs, dtype=bool))
    refs = pool if len(pool) <= max_refs else \
        np.sort(pool[stratified_fraction(labels[pool], max_refs / len(pool), seed)])
    k = max(1, min(int(k), len(refs) - 1))
    rf, ry = f[refs], torch.as_tensor(labels[refs])
    pos = torch.full((n,), -1, dtype=torch.long)
    pos[torch.as_tensor(refs)] = torch.arange(len(refs))
    queries = torch.arange(n) if rows is None else torch.as_tensor(np.asarray(rows, dtype=np.int64))
    out = np.zeros((len(queries), c), dtype=np.float32)
    for s in range(0, len(queries), chunk):
        q = queries[s:s + chunk]
        sim = f[q] @ rf.T
        own = pos[q]
        mine = torch.nonzero(own >= 0).flatten()
        sim[mine, own[mine]] = -float("inf")             # not its own neighbour
        nb = sim.topk(k, dim=1).indices
        out[s:s + chunk] = torch.nn.functional.one_hot(ry[nb], c).float().mean(1).numpy()
    return out


def auto_indices(scores, labels, k, *, probs, ratio, rng, alpha: float | None = None,
                 stratified_from: float | None = None, strata: int = AUTO_STRATA, noise: str | None = None,
                 within: str = "auto", high: str | None = None, features=None,
                 centre_rule: bool | None = None, held_out_flagged: float | None = None,
                 neighbours: float = 0.0, trusted_neighbours: int | None = None) -> tuple[np.ndarray, dict]:
    """The ``auto`` policy (the recommended default): ``(kept indices, decisions)``.

    1. *Labels that look wrong*: :func:`confident_noise` (rule ``noise``, default
       :data:`AUTO_NOISE_RULE`) on the surrogate's early class probabilities ``probs`` (N, C) flags,
       per class, the samples it puts in another class; they are set aside (never more than the
       budget allows: the least suspicious come back first).
    2. *Class quotas*: ``k`` is split over the classes' trusted samples by :func:`waterfill_quotas`
       with exponent ``alpha`` (default :data:`AUTO_ALPHA`, equal counts): small classes keep
       more than their share, since a long-tailed training set still has to serve every class.
    3. *Within a class*: below ratio :data:`AUTO_MID_FROM` the highest scores; from it an even sample across
       ``strata`` score strata (:data:`AUTO_MID_SAMPLING`); from ``stratified_from`` (default
       :data:`AUTO_STRATIFIED_FROM`) on ``high`` (default :data:`AUTO_HIGH_SAMPLING`): a uniform random sample of the
       trusted samples, or an even sample across the strata.

    4. *Off-centre samples last* (with ``features``, (N, D) penultimate features of the surrogate,
       and ``centre_rule``, default :data:`AUTO_CENTRE_RULE`), where label noise is evident (confident
       learning flags at least :data:`ADAPTIVE_FROM` of the set): a trusted sample nearer another
       class's mean feature than its own class's (:func:`off_centre`) is kept only when its class's
       quota needs it. It catches wrong labels the probabilities missed (pair-flip noise).

    ``neighbours`` (with ``features``, where label noise is evident): the label evidence is ``probs`` mixed with this
    weight of the label shares of each sample's nearest neighbours in feature space (:func:`neighbour_labels`); 0 =
    the probabilities alone; 1 = the neighbour labels alone, which then also decide whether noise is evident, judged
    by :data:`NEIGHBOURS_NOISE_RULE` unless ``noise`` is given (``probs`` is not read: a surrogate whose probabilities
    were not credible, :func:`dataprune.evidence.judge_neighbours`). ``trusted_neighbours`` (default
    :data:`TRUSTED_NEIGHBOURS`): the mixed evidence is formed that many times more, with only the samples the last
    round trusts as neighbours (wrong labels no longer vote for their class).

    ``decisions`` says what was estimated and done: the per-class noise estimate, how many samples
    were set aside, the quotas and the sampling.
    """
    alpha = AUTO_ALPHA if alpha is None else float(alpha)
    stratified_from = AUTO_STRATIFIED_FROM if stratified_from is None else float(stratified_from)
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    classes = np.unique(labels)
    neighbours = float(neighbours or 0.0) if features is not None else 0.0
    rounds = TRUSTED_NEIGHBOURS if trusted_neighbours is None else int(trusted_neighbours)
    noise = (NEIGHBOURS_NOISE_RULE if neighbours >= 1.0 else AUTO_NOISE_RULE) if noise is None else noise
    if neighbours >= 1.0 and noise != "none":
        # The neighbour labels alone (the surrogate's probabilities were not credible, its features' neighbourhoods
        # were): they also say whether noise is evident; where it is not, nothing is set aside.
        probs = neighbour_labels(features, labels)
        info = confident_noise(probs, labels, noise)
        # Evident only where the whole set and the held-out samples (``held_out_flagged``, their own neighbour-label
        # flags) both show it: features this weak flag 2-10.5% of clean labels, and one estimate alone crossed the
        # switch on clean data (a 10:1 long tail's 130 held-out samples 14.6%, a PNG folder's whole set 10.5%).
        if not (noise_evident(info["confident_share"]) and (held_out_flagged is None or
                                                            noise_evident(held_out_flagged))):
            noise, neighbours = "none", 0.0
            info = confident_noise(probs, labels, noise)
    else:
        info = confident_noise(probs, labels, noise, held_out_flagged=held_out_flagged)
        # Mixed in only where label noise is evident, as the off-centre rule: on clean labels there is nothing to find.
        if neighbours and noise != "none" and noise_evident(info["confident_share"], held_out_flagged):
            own, refs = np.asarray(probs, dtype=np.float64), None
            for _ in range(1 + rounds):         # every sample as a neighbour, then only the ones the mix trusts
                probs = (1.0 - neighbours) * own + neighbours * neighbour_labels(features, labels, refs=refs)
                info = confident_noise(probs, labels, noise, held_out_flagged=held_out_flagged)
                refs = ~info["suspect"]
        else:
            neighbours, rounds = 0.0, 0        # not read (decisions["neighbours"] says what was)
    suspect, margin, rate = info["suspect"], info["margin"], info["rate"]
    trusted = ~suspect
    sizes = {int(c): int(((labels == c) & trusted).sum()) for c in classes}
    quotas = waterfill_quotas(sizes, k, alpha)
    high = AUTO_HIGH_SAMPLING if high is None else high
    sampling = high if ratio >= stratified_from - 1e-12 else AUTO_MID_SAMPLING if ratio >= AUTO_MID_FROM - 1e-12 \
        else "top"
    if within != "auto":
        sampling = within
    centre_rule = AUTO_CENTRE_RULE if centre_rule is None else bool(centre_rule)
    # Only where label noise is evident (confident learning flags ADAPTIVE_FROM of the set or more, the switch
    # of the adaptive rule): on clean labels the off-centre samples are hard, not mislabelled, ones.
    evident = noise != "none" and noise_evident(info["confident_share"], held_out_flagged)
    last = off_centre(features, labels, trusted) & trusted if (features is not None and centre_rule and evident) \
        else np.zeros(len(labels), bool)

    def pick(members, q):
        if sampling == "random":
            return rng.choice(members, size=q, replace=False)
        if sampling == "top":
            return members[_top(scores[members], q)]
        return members[ccs_indices(scores[members], q, beta=0.0, strata=strata, rng=rng)]

    keep = []
    for c, q in quotas.items():
        members = np.flatnonzero((labels == c) & trusted)
        if q == 0:
            continue
        first, then = members[~last[members]], members[last[members]]
        got = pick(first, min(q, len(first))) if len(first) else np.zeros(0, dtype=np.int64)
        if q > len(first):
            got = np.concatenate([got, pick(then, q - len(first))])
        keep.append(got)
    keep = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
    refilled = 0
    if len(keep) < k:   # fewer trusted samples than the budget: the least suspicious of the rest
        rest = np.setdiff1d(np.arange(len(labels)), keep)
        order = refill_order(margin[rest], None if features is None else
                             centre_distance(features, labels, trusted, rest), AUTO_REFILL)
        extra = rest[np.argsort(order, kind="stable")[:k - len(keep)]]
        refilled = len(extra)
        keep = np.concatenate([keep, extra])
    decisions = {"estimated_noise": float(suspect.mean()),
                 "estimated_noise_per_class": {int(c): round(float(r), 4) for c, r in rate.items()},
                 "set_aside": int(suspect.sum()) - refilled, "set_aside_per_class":
                 {int(c): int((suspect & (labels == c)).sum()) for c in classes},
                 "quotas": quotas, "alpha": alpha, "noise_rule": noise, "sampling": sampling,
                 "noise_evident": bool(evident), "held_out_flagged": held_out_flagged,
                 "off_centre": int(last.sum()), "off_centre_kept": int(np.isin(keep, np.flatnonzero(last)).sum()),
                 "neighbours": neighbours, "trusted_neighbours": rounds if 0 < neighbours < 1 else 0,
                 "strata": strata if sampling == "stratified" else None}
    return keep, decisions


@dataclass
class Selection:
    """Kept indices (sorted int64) and what the policy estimated and decided on the way."""

    keep: np.ndarray
    policy: str
    decisions: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PolicySpec:
    name: str
    fn: Callable              # (scores, k, ratio, labels, rng, evidence, **options) -> (keep, decisions)
    summary: str
    options: tuple = ()
    evidence: tuple = ()      # evidence arrays it needs
    needs_labels: bool = False
    optional: tuple = ()      # evidence arrays it uses when given


def _topk(scores, k, ratio, labels, rng, evidence):
    return _top(scores, k), {}


def _random(scores, k, ratio, labels, rng, evidence):
    return rng.choice(len(scores), size=k, replace=False), {}


def _class_balanced(scores, k, ratio, labels, rng, evidence):
    quotas = class_quotas(labels, k)
    keep = [np.flatnonzero(labels == c)[_top(scores[labels == c], q)] for c, q in quotas.items()]
    return np.concatenate(keep), {"quotas": quotas}


def _ccs(scores, k, ratio, labels, rng, evidence, per_class=False, **options):
    if not per_class:
        return ccs_indices(scores, k, rng=rng, **options), {}
    if labels is None:
        raise ValueError("policy='ccs' with per_class=True needs labels=")
    quotas = class_quotas(labels, k)
    keep = []
    for c, q in quotas.items():
        members = np.flatnonzero(labels == c)
        keep.append(members[ccs_indices(scores[members], q, rng=rng, **options)])
    return np.concatenate(keep), {"quotas": quotas}


def _noise_cutoff(scores, k, ratio, labels, rng, evidence, cutoff=None, sampling="top", strata=10):
    if cutoff is None:
        raise ValueError("policy='noise_cutoff' needs cutoff= (the fraction of each class set aside)")
    keep = noise_cutoff_indices(scores, labels, k, evidence["gradnorm"], float(cutoff), sampling=sampling,
                                strata=int(strata), rng=rng)
    return keep, {"cutoff": float(cutoff), "sampling": sampling}


def _auto(scores, k, ratio, labels, rng, evidence, noise=None, within="auto", centre_rule=None,
          held_out_flagged=None, neighbours=0.0, trusted_neighbours=None):
    return auto_indices(scores, labels, k, probs=evidence["probs"], ratio=ratio, rng=rng, noise=noise, within=within,
                        features=evidence.get("features"), centre_rule=centre_rule,
                        held_out_flagged=held_out_flagged, neighbours=neighbours,
                        trusted_neighbours=trusted_neighbours)


def _dual(scores, k, ratio, labels, rng, evidence, c_d=4.0):
    from .methods.dual import beta_weights

    w = beta_weights(evidence["label_prob"], scores, ratio, c_d=float(c_d))
    return rng.choice(len(scores), size=k, replace=False, p=w / w.sum()), {"c_d": float(c_d)}


POLICIES: dict[str, PolicySpec] = {p.name: p for p in [
    PolicySpec("topk", _topk, "the highest scores overall"),
    PolicySpec("class_balanced", _class_balanced, "the highest scores within each class, the same share of every "
               "class", needs_labels=True),
    PolicySpec("random", _random, "a uniformly random subset (scores ignored), seeded"),
    PolicySpec("ccs", _ccs, "coverage-centric: drop the hardest beta, then sample evenly over score strata "
               "(Zheng et al. 2023)", options=("beta", "strata", "hard", "per_class")),
    PolicySpec("noise_cutoff", _noise_cutoff, "per class, set aside the cutoff share with the largest gradnorm, "
               "then class-balanced top-k", options=("cutoff", "sampling", "strata"), evidence=("gradnorm",),
               needs_labels=True),
    PolicySpec("auto", _auto, "the recommended default: set aside the labels the surrogate contradicts (per "
               "class), equal class counts where sizes allow, top scores below ratio 0.6, score strata to 0.8, "
               "a random sample from it",
               options=("noise", "within", "centre_rule", "held_out_flagged", "neighbours", "trusted_neighbours"),
               evidence=("probs",),
               needs_labels=True,
               optional=("features",)),
    PolicySpec("dual", _dual, "DUAL's ratio-adaptive Beta sampling over the mean label probability "
               "(Cho et al. 2025)", options=("c_d",), evidence=("label_prob",)),
]}


_SAMPLING_WORDS = {"top": "the highest scores", "random": "a uniformly random sample of the trusted samples",
                   "stratified": "an even sample across {strata} score strata"}


def describe_sampling(decisions: dict) -> str | None:
    """How a policy chose within each class, in plain words (None when it did not say)."""
    sampling = decisions.get("sampling")
    if sampling is None:
        return None
    return _SAMPLING_WORDS.get(sampling, sampling).format(strata=decisions.get("strata"))


def describe_neighbours(decisions: dict) -> str | None:
    """What the neighbour labels did to the label evidence, in plain words (None where they were not read)."""
    if not decisions.get("neighbours"):
        return None
    if decisions["neighbours"] >= 1.0:
        return (f"the labels of each sample's {NEIGHBOURS_K} nearest neighbours in the surrogate's feature space "
                "(its probabilities were not credible, its features' neighbourhoods were)")
    trusted = (", formed again with only the trusted samples as neighbours"
               if decisions.get("trusted_neighbours") else "")
    why = next(filter(None, map(_neighbour_why, evidence_reports(decisions))), "")
    return (f"the surrogate's probabilities mixed with the labels of each sample's {NEIGHBOURS_K} nearest neighbours "
            f"in its feature space (weight {decisions['neighbours']:g}{trusted}){why}")


def evidence_reports(decisions: dict) -> list[dict]:
    """The judge's reports in ``decisions["evidence"]``: one report, or one per part of a partitioned run."""
    ev = decisions.get("evidence")
    return [] if not ev else list(ev) if isinstance(ev, list) else [ev]


def _neighbour_why(report: dict) -> str:
    """Why a full plan mixed its neighbour labels in (:func:`dataprune.evidence.judge_neighbour_mix`)."""
    flips, memory = report.get("flips") or {}, report.get("neighbour_memory") or {}
    if flips.get("mixed"):
        return (f", because the label noise looks like a systematic flip: on average "
                f"{flips['dominant_rate']:.0%} of a class's samples look like one other class")
    if memory.get("mixed"):
        return (f", because its features have not memorised the labels: its neighbours flag the samples it "
                f"trained on {memory['ratio']:.2f} times as often as held-out ones")
    return ""


def policy_names() -> list[str]:
    return list(POLICIES)


def selection(scores, ratio: float, *, labels=None, policy: str = "topk", seed: int = 0,
              num_samples: int | None = None, **options) -> Selection:
    """Like :func:`select`, and also what the policy estimated and decided (a :class:`Selection`)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; valid: {', '.join(POLICIES)}")
    spec = POLICIES[policy]
    evidence = {k: options.pop(k) for k in list(options) if k in EVIDENCE}
    if "evidence" in options:          # the older name of noise_cutoff's gradient-norm evidence
        evidence.setdefault("gradnorm", options.pop("evidence"))
    unknown = set(options) - set(spec.options)
    if unknown:
        raise TypeError(f"policy {policy!r} takes no option(s) {sorted(unknown)}"
                        + (f"; valid: {', '.join(spec.options)}" if spec.options else "")
                        + f" (evidence arrays: {', '.join(EVIDENCE)})")
    scores, ratio, labels = _check(scores, ratio, labels, num_samples)
    n = len(scores)
    if spec.needs_labels and labels is None:
        raise ValueError(f"policy={policy!r} needs labels=")
    missing = [e for e in spec.evidence if evidence.get(e) is None]
    if missing:
        raise ValueError(f"policy={policy!r} needs the per-sample evidence {', '.join(missing)}= that a scoring "
                         f"method records beside its scores (e.g. method 'recommended' or 'moso_class' with "
                         f"return_aux=True{'; dual: method dual' if 'label_prob' in missing else ''})")
    used = list(spec.evidence) + [e for e in spec.optional if evidence.get(e) is not None]
    for name in used:
        arr = np.asarray(evidence[name])
        if arr.shape[:1] != (n,):
            raise ValueError(f"{name} has shape {arr.shape}; expected ({n}, ...) like the scores")
        evidence[name] = arr
    evidence = {name: evidence[name] for name in used}
    k = num_kept(n, ratio)
    rng = np.random.default_rng(seed)
    bad = np.isneginf(scores)
    if not bad.any():
        keep, decisions = spec.fn(scores, k, ratio, labels, rng, evidence, **options)
    else:
        # -inf (a sample whose score could not be computed) is pruned first by every policy: the policy
        # sees only the finite samples, and -inf ones are kept only when there are too few of those.
        ok = np.flatnonzero(~bad)
        decisions = {}
        keep = np.zeros(0, dtype=np.int64)
        if len(ok):
            sub, decisions = spec.fn(scores[ok], min(k, len(ok)), ratio, None if labels is None else labels[ok], rng,
                                     {name: arr[ok] for name, arr in evidence.items()}, **options)
            keep = ok[np.asarray(sub, dtype=np.int64)]
        if k > len(ok):
            keep = np.concatenate([keep, np.flatnonzero(bad)[:k - len(ok)]])
        decisions = {**decisions, "non_finite": int(bad.sum()), "non_finite_kept": int(max(0, k - len(ok)))}
    keep = np.sort(np.asarray(keep)).astype(np.int64)
    return Selection(keep, policy, decisions)


def select(scores, ratio: float, *, labels=None, policy: str = "topk", seed: int = 0,
           num_samples: int | None = None, **options) -> np.ndarray:
    """Indices of the samples to keep, sorted, int64.

    Parameters
    ----------
    scores : array, shape (N,)
        Higher = keep. ``-inf`` is allowed (pruned first); NaN is an error.
    ratio : float in [0, 1)
        Fraction of samples removed.
    labels : array of int, shape (N,), optional
        Required by the class-aware policies.
    policy : str
        One of :data:`POLICIES` (``dataprune list`` prints them): ``topk``, ``class_balanced``
        (the same share of every class, remainders by :func:`class_quotas`), ``random``,
        ``ccs`` (options ``beta``, ``strata``, ``hard``, ``per_class``), ``noise_cutoff`` (options
        ``cutoff``, ``sampling``, ``strata``; evidence ``gradnorm``), ``auto`` (the recommended
        default, :func:`auto_indices`; evidence ``probs``, and ``features`` when given; options
        ``noise``, ``within``, ``centre_rule``), ``dual`` (evidence ``label_prob``).
    **options
        The policy's options, and any evidence arrays (``probs``, ``gradnorm``, ``disagreement``,
        ``label_prob``, ``features``); evidence a policy does not use is ignored.
    num_samples : int, optional
        The dataset's length, checked against ``len(scores)``.

    Examples
    --------
    >>> select([0.1, 0.9, 0.5, 0.3], ratio=0.5)
    array([1, 2])
    >>> select([0.1, 0.9, 0.5, 0.3], ratio=0.5, labels=[0, 0, 1, 1], policy="class_balanced")
    array([1, 2])
    """
    return selection(scores, ratio, labels=labels, policy=policy, seed=seed, num_samples=num_samples,
                     **options).keep
