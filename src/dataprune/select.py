"""From scores to the indices to keep.

``ratio`` is always the pruning ratio, the fraction of samples *removed* (as in the
pruning literature: ``ratio=0.7`` keeps 30%). The number kept is
``max(1, round((1 - ratio) * N))``.
"""

from __future__ import annotations

import numpy as np

POLICIES = ("topk", "class_balanced", "random", "ccs", "noise_cutoff", "auto")
POLICY_OPTIONS = {"ccs": {"beta", "strata", "hard", "per_class"},
                  "noise_cutoff": {"evidence", "cutoff", "sampling", "strata"},
                  "auto": {"evidence", "disagreement"}}
SAMPLINGS = ("top", "stratified")
# From this pruning ratio on, ``auto`` samples the trusted part of each class across score strata
# instead of keeping its top scores (coverage matters more than score once few samples remain).
AUTO_STRATIFIED_FROM = 0.8


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


def class_quotas(labels: np.ndarray, n_keep: int) -> dict[int, int]:
    """How many samples each class keeps so that every class keeps the same share.

    Class c gets ``floor(n_keep * n_c / N)``; the samples left over go one each to the
    classes with the largest fractional remainders (ties: the larger class, then the
    lower label). The quotas sum to ``n_keep`` exactly.
    """
    classes, sizes = np.unique(labels, return_counts=True)
    exact = n_keep * sizes / sizes.sum()
    quota = np.floor(exact + 1e-9).astype(np.int64)
    left = n_keep - int(quota.sum())
    order = sorted(range(len(classes)), key=lambda j: (-(exact[j] - quota[j]), -sizes[j], classes[j]))
    for j in order:
        if left == 0:
            break
        if quota[j] < sizes[j]:
            quota[j] += 1
            left -= 1
    return {int(c): int(q) for c, q in zip(classes, quota)}


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
    width = (hi - lo) / strata if hi > lo else 1.0
    bins = np.clip(np.floor((np.clip(d, lo, hi) - lo) / width), 0, strata - 1).astype(np.int64)
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


def auto_cutoff(disagreement: np.ndarray, ratio: float) -> float:
    """The ``auto`` policy's per-class cutoff, from the training data alone.

    ``rho`` = the share of samples whose given label the surrogate contradicts at a majority
    of checkpoints (an estimate of the label-noise rate plus the surrogate's training error).
    Up to a pruning ratio of 0.7 the cutoff is ``rho``: set aside about as many samples as
    look mislabeled, no more (on clean data a larger cutoff costs accuracy, because it
    removes informative hard samples). Between 0.7 and 0.9 it rises by 0.1: the smallest
    subsets cannot afford atypical samples. With ``s = clip((ratio - 0.7) / 0.2, 0, 1)``::

        cutoff = min(0.9 * ratio, rho + 0.1 * s)

    The constants were set on ``mnist5k`` (see ``docs/when-does-moso-help.md``); ``digits``
    was measured with them unchanged.
    """
    rho = estimated_noise_rate(disagreement)
    s = min(1.0, max(0.0, (ratio - 0.7) / 0.2))
    return float(min(0.9 * ratio, rho + 0.1 * s))


def estimated_noise_rate(disagreement: np.ndarray) -> float:
    """Share of samples whose label the surrogate contradicts at a majority of checkpoints."""
    return float(np.mean(np.asarray(disagreement, dtype=np.float64) > 0.5))


def auto_plan(disagreement: np.ndarray, ratio: float) -> dict:
    """What ``policy="auto"`` does at this ratio: ``{"cutoff", "sampling", "estimated_noise"}``.

    The cutoff is :func:`auto_cutoff`; the trusted samples are kept by top score below a
    pruning ratio of ``AUTO_STRATIFIED_FROM`` (0.8) and sampled across score strata from it
    on, where a top-k of the most typical samples would be redundant.
    """
    return {"cutoff": auto_cutoff(disagreement, ratio),
            "sampling": "stratified" if ratio >= AUTO_STRATIFIED_FROM - 1e-12 else "top",
            "estimated_noise": estimated_noise_rate(disagreement)}


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
        Required by ``policy="class_balanced"``.
    policy : "topk" | "class_balanced" | "random" | "ccs"
        ``topk`` keeps the highest scores overall; ``class_balanced`` keeps the highest
        scores within each class, the same share of every class (see
        :func:`class_quotas` for how remainders are spread); ``random`` keeps a uniformly
        random subset (scores ignored), seeded by ``seed``; ``ccs`` is coverage-centric
        selection (:func:`ccs_indices`; options ``beta``, ``strata``, ``hard``, and
        ``per_class=True`` to run it inside each class with class-balanced quotas);
        ``noise_cutoff`` sets aside, per class, the ``cutoff`` fraction with the largest
        ``evidence`` (e.g. the accumulated gradient norm) before a class-balanced top-k
        (:func:`noise_cutoff_indices`; options ``cutoff``, ``evidence``, ``sampling`` "top" or
        "stratified", ``strata``); ``auto`` is ``noise_cutoff`` with the cutoff and the sampling
        derived from ``disagreement`` and the ratio (:func:`auto_plan`) -- the recommended
        default with class-wise MoSo scores, which provide both arrays.
    num_samples : int, optional
        The dataset's length, checked against ``len(scores)``.

    Examples
    --------
    >>> select([0.1, 0.9, 0.5, 0.3], ratio=0.5)
    array([1, 2])
    >>> select([0.1, 0.9, 0.5, 0.3], ratio=0.5, labels=[0, 0, 1, 1], policy="class_balanced")
    array([1, 2])
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; valid: {', '.join(POLICIES)}")
    valid = POLICY_OPTIONS.get(policy, set())
    unknown = set(options) - valid
    if unknown:
        raise TypeError(f"policy {policy!r} takes no option(s) {sorted(unknown)}"
                        + (f"; valid: {sorted(valid)}" if valid else ""))
    scores, ratio, labels = _check(scores, ratio, labels, num_samples)
    n = len(scores)
    k = num_kept(n, ratio)
    rng = np.random.default_rng(seed)
    if policy == "topk":
        keep = _top(scores, k)
    elif policy == "random":
        keep = rng.choice(n, size=k, replace=False)
    elif policy == "ccs":
        per_class = options.pop("per_class", False)
        if per_class:
            if labels is None:
                raise ValueError("policy='ccs' with per_class=True needs labels=")
            keep = []
            for c, q in class_quotas(labels, k).items():
                members = np.flatnonzero(labels == c)
                keep.append(members[ccs_indices(scores[members], q, rng=rng, **options)])
            keep = np.concatenate(keep)
        else:
            keep = ccs_indices(scores, k, rng=rng, **options)
    elif policy in ("noise_cutoff", "auto"):
        if labels is None:
            raise ValueError(f"policy={policy!r} needs labels=")
        needed = {"noise_cutoff": ("evidence", "cutoff"), "auto": ("evidence", "disagreement")}[policy]
        missing = [o for o in needed if options.get(o) is None]
        if missing:
            raise ValueError(f"policy={policy!r} needs {' and '.join(missing)}= (per-sample arrays from "
                             "class-wise MoSo: dataprune.methods.moso_variants.classwise_score(..., return_aux=True))"
                             if missing != ["cutoff"] else "policy='noise_cutoff' needs cutoff= (a fraction per class)")
        for name in ("evidence", "disagreement"):
            if name in options and np.shape(options[name]) != (n,):
                raise ValueError(f"{name} has shape {np.shape(options[name])}; expected ({n},) like the scores")
        if policy == "auto":
            plan = auto_plan(options["disagreement"], ratio)
        else:
            plan = {"cutoff": float(options["cutoff"]), "sampling": options.get("sampling", "top")}
        keep = noise_cutoff_indices(scores, labels, k, options["evidence"], plan["cutoff"],
                                    sampling=plan["sampling"], strata=int(options.get("strata", 10)), rng=rng)
    else:
        if labels is None:
            raise ValueError("policy='class_balanced' needs labels=")
        keep = []
        for c, q in class_quotas(labels, k).items():
            members = np.flatnonzero(labels == c)
            keep.append(members[_top(scores[members], q)])
        keep = np.concatenate(keep)
    return np.sort(keep).astype(np.int64)


def confident_noise(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Which labels look wrong, by confident learning (Northcutt et al., JAIR 2021), per class.

    ``probs`` (N, C) are the surrogate's class probabilities (averaged over checkpoints). Class j's
    threshold ``t_j`` is the mean probability of class j over the samples labelled j; a sample is
    confidently of class j when ``probs[i, j] >= t_j`` (the most probable such j when several), and
    *suspect* when that class is not its label. Thresholds per class make the estimate hold under
    class-dependent noise and imbalance: a rare class the model underfits gets a low threshold, so
    its hard samples are not taken for mislabelled ones.

    Returns ``{"suspect": (N,) bool, "margin": (N,)`` probability of the label minus the largest other
    probability (low = suspicious), ``"rate": {class: share of its samples suspect}``, ``"confident":
    (N,)`` the confident class or -1}.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, c = probs.shape
    if labels.shape != (n,):
        raise ValueError(f"probs has {n} rows but labels has shape {labels.shape}")
    thresholds = np.full(c, np.inf)
    for j in np.unique(labels):
        thresholds[j] = probs[labels == j, j].mean()
    above = probs >= thresholds[None, :]
    masked = np.where(above, probs, -np.inf)
    confident = np.where(above.any(1), masked.argmax(1), -1)
    suspect = (confident >= 0) & (confident != labels)
    own = probs[np.arange(n), labels]
    others = probs.copy()
    others[np.arange(n), labels] = -np.inf
    margin = own - others.max(1)
    rate = {int(j): float(suspect[labels == j].mean()) for j in np.unique(labels)}
    return {"suspect": suspect, "margin": margin, "rate": rate, "confident": confident}


def waterfill_quotas(sizes: dict, k: int, alpha: float = 1.0) -> dict:
    """Split ``k`` kept samples among classes with ``sizes`` available: class c's target is proportional
    to ``size_c ** alpha`` and capped at ``size_c``; what a capped class cannot take goes to the others
    in the same proportions. ``alpha=1`` keeps every class's share, ``alpha=0`` equalises the counts as
    far as the class sizes allow (the small classes are kept whole first). Integer quotas sum to
    ``min(k, sum(sizes))`` (largest remainders; ties to the larger class, then the lower label).
    """
    classes = sorted(sizes)
    size = np.array([sizes[c] for c in classes], dtype=np.float64)
    k = int(min(k, size.sum()))
    weight = np.where(size > 0, np.power(np.maximum(size, 1e-300), alpha), 0.0)
    quota = np.zeros(len(classes))
    free = size > 0
    left = float(k)
    # Raise the water level until every class is either full or at its share of the level.
    while left > 1e-9 and free.any():
        share = left * weight * free / (weight * free).sum()
        full = free & (quota + share >= size)
        if not full.any():
            quota += share
            break
        left -= float((size - quota)[full].sum())
        quota[full] = size[full]
        free &= ~full
    base = np.floor(quota + 1e-9).astype(np.int64)
    rest = k - int(base.sum())
    order = sorted(range(len(classes)), key=lambda j: (-(quota[j] - base[j]), -size[j], classes[j]))
    for j in order:
        if rest <= 0:
            break
        if base[j] < size[j]:
            base[j] += 1
            rest -= 1
    return {int(c): int(q) for c, q in zip(classes, base)}


def auto2_indices(scores, labels, k, *, probs, ratio, alpha=1.0, noise="cl", within="auto", strata=10,
                  hard_cut=0.0, rng):
    """Exploration form of the next ``auto`` policy (see benchmarks/fit_default.py)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if noise == "cl":
        info = confident_noise(probs, labels)
        suspect, margin = info["suspect"], info["margin"]
    else:
        margin = np.zeros(len(labels))
        suspect = np.zeros(len(labels), bool)
    trusted = ~suspect
    if hard_cut:
        for c in np.unique(labels):
            members = np.flatnonzero((labels == c) & trusted)
            n_cut = int(np.floor(hard_cut * len(members)))
            if n_cut:
                trusted[members[np.argsort(margin[members], kind="stable")[:n_cut]]] = False
    sizes = {int(c): int(((labels == c) & trusted).sum()) for c in np.unique(labels)}
    quotas = waterfill_quotas(sizes, k, alpha)
    keep = []
    for c, q in quotas.items():
        members = np.flatnonzero((labels == c) & trusted)
        if q == 0:
            continue
        if within == "random":
            keep.append(rng.choice(members, size=q, replace=False))
        elif within == "top" or (within == "auto" and ratio < AUTO_STRATIFIED_FROM - 1e-12):
            keep.append(members[_top(scores[members], q)])
        else:
            keep.append(members[ccs_indices(scores[members], q, beta=0.0, strata=strata, rng=rng)])
    keep = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
    if len(keep) < k:   # fewer trusted samples than the budget: the least suspicious of the rest
        rest = np.setdiff1d(np.arange(len(labels)), keep)
        keep = np.concatenate([keep, rest[np.argsort(-margin[rest], kind="stable")[:k - len(keep)]]])
    return np.sort(keep).astype(np.int64)
