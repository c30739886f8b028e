"""Property tests for select(): sizes, uniqueness, order, class shares, determinism, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dataprune.select import class_quotas, num_kept, select

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
ratios = st.floats(0.0, 0.99)


@st.composite
def problems(draw):
    n = draw(st.integers(1, 300))
    scores = draw(arrays(np.float64, n, elements=finite))
    labels = draw(arrays(np.int64, n, elements=st.integers(0, draw(st.integers(0, 6)))))
    return scores, labels, draw(ratios)


@settings(max_examples=150, deadline=None)
@given(problems(), st.sampled_from(["topk", "class_balanced", "random"]), st.integers(0, 2**31))
def test_size_sorted_unique_in_range(problem, policy, seed):
    scores, labels, ratio = problem
    keep = select(scores, ratio, labels=labels, policy=policy, seed=seed)
    assert keep.dtype == np.int64
    assert len(keep) == num_kept(len(scores), ratio)
    assert np.all(np.diff(keep) > 0)                     # sorted, no duplicates
    assert keep.min() >= 0 and keep.max() < len(scores)
    again = select(scores, ratio, labels=labels, policy=policy, seed=seed)
    assert np.array_equal(keep, again)                   # deterministic for a seed


@settings(max_examples=150, deadline=None)
@given(problems())
def test_topk_keeps_the_highest(problem):
    scores, _, ratio = problem
    keep = select(scores, ratio)
    dropped = np.setdiff1d(np.arange(len(scores)), keep)
    if len(dropped):
        assert scores[keep].min() >= scores[dropped].max()


@settings(max_examples=150, deadline=None)
@given(problems())
def test_class_balanced_keeps_the_same_share_of_every_class(problem):
    scores, labels, ratio = problem
    keep = select(scores, ratio, labels=labels, policy="class_balanced")
    k = len(keep)
    n = len(scores)
    for c in np.unique(labels):
        members = labels == c
        kept_c = int(members[keep].sum())
        share = k * members.sum() / n
        assert abs(kept_c - share) < 1 + 1e-9                  # within one sample of the exact share
        # and within the class it keeps that class's highest scores
        kept_scores = scores[keep][labels[keep] == c]
        dropped_scores = scores[members & ~np.isin(np.arange(n), keep)]
        if len(kept_scores) and len(dropped_scores):
            assert kept_scores.min() >= dropped_scores.max()


def test_quota_remainders_go_to_largest_fractions():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 2)
    # keep 5 of 10: exact shares 2.5, 1.5, 1.0 -> floors 2, 1, 1 and one left over: class 0
    # (tie on fraction .5 with class 1; the larger class wins)
    assert class_quotas(labels, 5) == {0: 3, 1: 1, 2: 1}
    assert sum(class_quotas(labels, 7).values()) == 7


def test_random_policy_changes_with_seed_and_ignores_scores():
    s = np.arange(100.0)
    a = select(s, 0.5, policy="random", seed=1)
    b = select(s, 0.5, policy="random", seed=2)
    c = select(-s, 0.5, policy="random", seed=1)
    assert not np.array_equal(a, b) and np.array_equal(a, c)


def test_minus_infinity_is_pruned_first():
    s = np.array([1.0, -np.inf, 0.5, 2.0])
    assert select(s, 0.25).tolist() == [0, 2, 3]


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError, match="ratio"):
        select(np.zeros(10), ratio)


def test_bad_inputs_have_clear_messages():
    with pytest.raises(ValueError, match="10 entries but the dataset has 12"):
        select(np.zeros(10), 0.5, num_samples=12)
    with pytest.raises(ValueError, match=r"2 NaN value\(s\) \(e.g. at indices \[1, 3\]\)"):
        select(np.array([0, np.nan, 1, np.nan]), 0.5)
    with pytest.raises(ValueError, match=r"labels has shape \(3,\) but scores has shape \(4,\)"):
        select(np.zeros(4), 0.5, labels=[0, 1, 0], policy="class_balanced")
    with pytest.raises(ValueError, match="needs labels"):
        select(np.zeros(4), 0.5, policy="class_balanced")
    with pytest.raises(ValueError, match="unknown policy 'best'.*topk, class_balanced, random"):
        select(np.zeros(4), 0.5, policy="best")
    with pytest.raises(ValueError, match="1-D"):
        select(np.zeros((2, 2)), 0.5)
    with pytest.raises(TypeError, match="labels must be integers"):
        select(np.zeros(2), 0.5, labels=[0.5, 1.0])


# ----------------------------------------------- ccs, noise_cutoff, auto ----

@st.composite
def labelled(draw, max_classes=6):
    n = draw(st.integers(4, 200))
    scores = draw(arrays(np.float64, n, elements=finite))
    labels = draw(arrays(np.int64, n, elements=st.integers(0, draw(st.integers(1, max_classes - 1)))))
    return scores, labels, draw(st.floats(0.0, 0.95))


def _common(keep, n, ratio):
    assert keep.dtype == np.int64 and len(keep) == num_kept(n, ratio)
    assert np.all(np.diff(keep) > 0) and keep.min() >= 0 and keep.max() < n


@settings(max_examples=120, deadline=None)
@given(labelled(), st.floats(0.0, 0.9), st.integers(1, 20), st.booleans(), st.integers(0, 2**31))
def test_ccs_properties(problem, beta, strata, per_class, seed):
    scores, labels, ratio = problem
    n = len(scores)
    keep = select(scores, ratio, labels=labels, policy="ccs", beta=beta, strata=strata, per_class=per_class, seed=seed)
    _common(keep, n, ratio)
    assert np.array_equal(keep, select(scores, ratio, labels=labels, policy="ccs", beta=beta, strata=strata,
                                       per_class=per_class, seed=seed))
    if per_class:
        quotas = class_quotas(labels, num_kept(n, ratio))
        assert {c: int((labels[keep] == c).sum()) for c in quotas} == quotas
    else:
        # the hardest floor(beta * N) samples are dropped whenever the budget leaves room for it
        k = num_kept(n, ratio)
        cut = int(beta * n)
        if cut <= n - k:
            hardest = np.argsort(-scores, kind="stable")[:cut]
            assert not np.isin(hardest, keep).any()


@settings(max_examples=120, deadline=None)
@given(labelled(), st.floats(0.0, 0.9), st.sampled_from(["top", "stratified"]), st.integers(0, 2**31))
def test_noise_cutoff_properties(problem, cutoff, sampling, seed):
    scores, labels, ratio = problem
    n = len(scores)
    evidence = np.random.default_rng(seed % 1000).random(n)
    keep = select(scores, ratio, labels=labels, policy="noise_cutoff", gradnorm=evidence, cutoff=cutoff,
                  sampling=sampling, seed=seed)
    _common(keep, n, ratio)
    quotas = class_quotas(labels, num_kept(n, ratio))
    assert {c: int((labels[keep] == c).sum()) for c in quotas} == quotas
    for c, q in quotas.items():
        members = np.flatnonzero(labels == c)
        n_out = min(int(np.floor(cutoff * len(members) + 1e-9)), len(members) - q)
        set_aside = members[np.argsort(evidence[members], kind="stable")][len(members) - n_out:]
        assert not np.isin(set_aside, keep).any()       # the most suspicious never come back while others remain


@st.composite
def with_probs(draw):
    scores, labels, ratio = draw(labelled())
    n = len(labels)
    c = int(labels.max()) + 1
    logits = draw(arrays(np.float64, (n, c), elements=st.floats(-4, 4, allow_nan=False)))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return scores, labels, ratio, probs


@settings(max_examples=150, deadline=None)
@given(with_probs(), st.sampled_from([0.0, 0.5, 1.0]),
       st.sampled_from(["confident", "argmax", "calibrated", "adaptive"]), st.integers(0, 2**31))
def test_auto_properties(problem, alpha, rule, seed):
    from dataprune.select import auto_indices, confident_noise, waterfill_quotas

    scores, labels, ratio, probs = problem
    n = len(scores)
    k = num_kept(n, ratio)
    keep, d = auto_indices(scores, labels, k, probs=probs, ratio=ratio, rng=np.random.default_rng(seed),
                           alpha=alpha, noise=rule)
    keep = np.sort(keep)
    _common(keep, n, ratio)
    suspect = confident_noise(probs, labels, rule)["suspect"]
    trusted_sizes = {int(c): int(((labels == c) & ~suspect).sum()) for c in np.unique(labels)}
    # quotas: a split of min(k, trusted) that follows size ** alpha, capped at the trusted sizes
    assert d["quotas"] == waterfill_quotas(trusted_sizes, k, alpha)
    assert sum(d["quotas"].values()) == min(k, sum(trusted_sizes.values()))
    _check_water_level(trusted_sizes, k, alpha, d["quotas"])
    # a suspect sample is kept only when the trusted samples cannot fill the budget
    if (~suspect).sum() >= k:
        assert not suspect[keep].any()
        assert {c: int((labels[keep] == c).sum()) for c in d["quotas"]} == d["quotas"]
    from dataprune.select import AUTO_HIGH_SAMPLING, AUTO_MID_FROM, AUTO_MID_SAMPLING, AUTO_STRATIFIED_FROM

    assert d["sampling"] == ("top" if ratio < AUTO_MID_FROM else AUTO_MID_SAMPLING if ratio < AUTO_STRATIFIED_FROM
                             else AUTO_HIGH_SAMPLING)
    if d["sampling"] == "top" and (~suspect).sum() >= k:
        # within a class, no trusted sample left out scores above one kept
        for c in d["quotas"]:
            members = np.flatnonzero((labels == c) & ~suspect)
            kept_c = np.intersect1d(members, keep)
            out_c = np.setdiff1d(members, keep)
            if len(kept_c) and len(out_c):
                assert scores[kept_c].min() >= scores[out_c].max()
    again, _ = auto_indices(scores, labels, k, probs=probs, ratio=ratio, rng=np.random.default_rng(seed),
                            alpha=alpha, noise=rule)
    assert np.array_equal(np.sort(again), keep)


def _check_water_level(sizes, k, alpha, q):
    """An independent check of water-filling: find the level L with sum(min(size, L * size**alpha)) = k by
    bisection; every quota is its class's min(size, L * size**alpha) up to rounding (one sample)."""
    cls = [c for c in sizes if sizes[c] > 0]
    k = min(k, sum(sizes[c] for c in cls))
    if not cls:
        return

    def filled(level):
        return sum(min(sizes[c], level * sizes[c] ** alpha) for c in cls)

    lo, hi = 0.0, float(max(sizes.values()) + 1)
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if filled(mid) < k else (lo, mid)
    for c in cls:
        target = min(sizes[c], hi * sizes[c] ** alpha)
        assert abs(q[c] - target) <= 1 + 1e-6, (c, q[c], target)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(0, 9), st.integers(0, 300), min_size=1, max_size=8), st.integers(0, 2000),
       st.floats(0.0, 1.0))
def test_waterfill_quotas(sizes, k, alpha):
    from dataprune.select import waterfill_quotas

    q = waterfill_quotas(sizes, k, alpha)
    _check_water_level(sizes, k, alpha, q)
    assert sum(q.values()) == min(k, sum(sizes.values()))
    assert all(0 <= q[c] <= sizes[c] for c in sizes)
    # a class below its capacity never gets fewer than a smaller class (the water level is shared)
    for a in sizes:
        for b in sizes:
            if sizes[a] >= sizes[b] and q[b] == sizes[b] and q[a] < sizes[a]:
                assert q[a] >= q[b] - 1


def test_waterfill_alpha_zero_equalises_and_one_keeps_shares():
    from dataprune.select import waterfill_quotas

    sizes = {0: 400, 1: 100, 2: 8}
    assert waterfill_quotas(sizes, 108, 0.0) == {0: 50, 1: 50, 2: 8}       # the rare class kept whole
    assert waterfill_quotas(sizes, 254, 1.0) == {0: 200, 1: 50, 2: 4}      # every class keeps half
    assert waterfill_quotas(sizes, 1000, 0.5) == sizes


def test_quota_ties_go_to_the_larger_class_then_the_lower_label():
    # keep 1 of 4: three classes with the same remainder; equal sizes -> the lowest label wins
    assert class_quotas(np.array([2, 2, 1, 1, 0, 0]), 1) == {0: 1, 1: 0, 2: 0}
    # keep 2 of 4: exact shares 0.5 and 1.5, equal remainders, different sizes -> the larger class wins
    assert class_quotas(np.array([0] + [1] * 3), 2) == {0: 0, 1: 2}
    # the same sizes with the labels swapped: still the larger class, not the lower label
    assert class_quotas(np.array([1] + [0] * 3), 2) == {0: 2, 1: 0}


def test_adaptive_noise_rule():
    from dataprune.select import confident_noise

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    clean = np.full((200, 4), 0.05)
    clean[np.arange(200), labels] = 0.85
    clean[:6, (labels[:6] + 1) % 4], clean[:6, labels[:6]] = 0.6, 0.3     # a few hard samples, 3%
    noisy = clean.copy()
    flip = np.arange(0, 200, 4)                                             # 25% of every class look wrong
    noisy[flip] = 0.05
    noisy[flip, (labels[flip] + 1) % 4] = 0.85
    hard_and_flipped = np.union1d(flip, np.arange(6))
    # little evidence of noise: only what confident learning flags
    a = confident_noise(clean, labels, "adaptive")["suspect"]
    assert np.array_equal(a, confident_noise(clean, labels, "confident")["suspect"])
    # noise is evident: the calibrated rule takes over and finds every flipped label
    b = confident_noise(noisy, labels, "adaptive")["suspect"]
    assert np.array_equal(b, confident_noise(noisy, labels, "calibrated")["suspect"])
    assert set(flip) <= set(np.flatnonzero(b)) <= set(hard_and_flipped)
    # a surrogate that knows nothing is no evidence: never half of the labels set aside
    guess = rng.dirichlet(np.ones(4), size=200)
    assert confident_noise(guess, labels, "calibrated")["suspect"].mean() >= 0.5
    assert confident_noise(guess, labels, "adaptive")["suspect"].mean() < 0.5


def test_rate_rule_takes_confident_learnings_count_of_the_calibrated_flags():
    from dataprune.select import confident_noise

    # class 0: 80 easy samples, 10 hard clean ones the surrogate leans the other way on, 10 wrong labels it
    # confidently puts in class 1; class 1: 100 easy samples.
    labels = np.repeat([0, 1], 100)
    probs = np.tile([0.1, 0.9], (200, 1))
    probs[:80], probs[80:90], probs[90:100] = [0.9, 0.1], [0.45, 0.55], [0.05, 0.95]
    calibrated = np.flatnonzero(confident_noise(probs, labels, "calibrated")["suspect"])
    assert calibrated.tolist() == list(range(80, 100))                 # the hard clean ones too
    # confidently counted in class 0: the 80 easy and the 10 wrong (threshold 0.77 for class 0, 0.9 for class
    # 1); 10 of 90 are another class, so round(100 x 10 / 90) = 11 of class 0 are judged wrong: the 10 wrong
    # labels (lowest calibrated margin) and the most suspicious hard one -- the first, on a stable tie.
    rate = np.flatnonzero(confident_noise(probs, labels, "rate")["suspect"])
    assert rate.tolist() == [80] + list(range(90, 100))
    # adaptive_rate: "rate" where noise is evident (here on the held-out samples: confident learning flags 5%
    # of these, below ADAPTIVE_FROM), confident learning's own flags where it is not
    assert np.array_equal(confident_noise(probs, labels, "adaptive_rate", held_out_flagged=0.2)["suspect"],
                          confident_noise(probs, labels, "rate")["suspect"])
    assert np.flatnonzero(confident_noise(probs, labels, "adaptive_rate")["suspect"]).tolist() == list(range(90, 100))


def test_confident_argmax_leaves_alone_what_only_a_rare_class_s_low_threshold_flags():
    from dataprune.select import confident_noise

    # class 0: 90 samples, 80 easy, 10 hard clean ones (most probably class 0, but below its threshold 0.856, and
    # 0.25 on class 2); class 1: 90 easy; class 2, rare and mostly mislabelled: 20 samples, 15 of them wrong labels
    # of class 0, so its threshold is low (0.2375) and the hard class-0 samples reach it.
    labels = np.repeat([0, 1, 2], [90, 90, 20])
    probs = np.zeros((200, 3))
    probs[:80] = [0.9, 0.05, 0.05]
    probs[80:90] = [0.5, 0.25, 0.25]
    probs[90:180] = [0.05, 0.9, 0.05]
    probs[180:195] = [0.9, 0.05, 0.05]      # the wrong labels
    probs[195:] = [0.1, 0.1, 0.8]           # the 5 clean ones of class 2
    confident = confident_noise(probs, labels, "confident")["suspect"]
    both = confident_noise(probs, labels, "confident_argmax")["suspect"]
    assert confident[80:90].all()                                      # taken for class 2's by its low threshold
    assert np.flatnonzero(both).tolist() == list(range(180, 195))      # only the wrong labels
    assert (both <= confident).all() and (both <= (probs.argmax(1) != labels)).all()


def _policy_kwargs(policy, n, rng):
    """Evidence and required options for any registered policy, random but valid."""
    from dataprune.select import POLICIES

    probs = rng.dirichlet(np.ones(4), size=n)
    evidence = {"probs": probs, "gradnorm": rng.random(n), "disagreement": rng.random(n),
                "label_prob": rng.random(n), "features": rng.normal(size=(n, 5)).astype(np.float16)}
    kw = {e: evidence[e] for e in POLICIES[policy].evidence + POLICIES[policy].optional}
    if policy == "noise_cutoff":
        kw["cutoff"] = 0.2
    return kw


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.8, 0.85, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_minus_infinity_is_pruned_first_by_every_policy(ratio, seed):
    """Every registered policy keeps no -inf sample while enough finite ones remain (random sampling
    within a class, strata and Beta weights once kept them), and keeps -inf ones only to fill up."""
    from dataprune.select import POLICIES

    rng = np.random.default_rng(seed)
    n = 200
    labels = rng.integers(0, 4, n)
    scores = rng.normal(size=n)
    bad = rng.choice(n, 20, replace=False)
    scores[bad] = -np.inf
    for policy in POLICIES:
        kw = _policy_kwargs(policy, n, rng)
        keep = select(scores, ratio, labels=labels, policy=policy, seed=seed, **kw)
        assert len(keep) == num_kept(n, ratio), policy
        assert not np.isin(bad, keep).any(), (policy, ratio, np.isin(bad, keep).sum())
    # Too few finite samples: all of them are kept, the rest filled from the -inf ones.
    scores[:] = -np.inf
    scores[:10] = 1.0
    for policy in POLICIES:
        keep = select(scores, 0.5, labels=labels, policy=policy, seed=seed, **_policy_kwargs(policy, n, rng))
        assert len(keep) == 100 and np.isin(np.arange(10), keep).all(), policy


def _blobs_with_flips(seed=0, n_per=60, flips=6, evident=True):
    """Three well separated classes in 4-D; ``flips`` samples of class 0 carry label 1, and their class
    probabilities agree with the wrong label (the probabilities missed them); with ``evident``, the
    probabilities flag 20 others (11% of the set: label noise is evident)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 4) * 10
    true = np.repeat(np.arange(3), n_per)
    feats = centres[true] + rng.normal(size=(len(true), 4))
    labels = true.copy()
    flipped = np.flatnonzero(true == 0)[:flips]
    labels[flipped] = 1
    probs = np.full((len(labels), 3), 0.05)
    probs[np.arange(len(labels)), labels] = 0.9
    if evident:     # noise the probabilities do see: 20 samples of class 2 that they put in class 0
        seen = np.flatnonzero(true == 2)[:20]
        probs[seen] = [0.9, 0.05, 0.05]
    return feats, labels, probs, flipped


def test_off_centre_finds_samples_nearer_another_class_mean_in_any_chunking():
    from dataprune.select import off_centre

    feats, labels, _, flipped = _blobs_with_flips(evident=False)
    trusted = np.ones(len(labels), bool)
    far = off_centre(feats, labels, trusted)
    assert set(np.flatnonzero(far)) == set(flipped)
    assert np.array_equal(off_centre(feats, labels, trusted, chunk=7), far)
    assert np.array_equal(off_centre(feats.astype(np.float16), labels, trusted), far)
    with pytest.raises(ValueError, match="features must have shape"):
        off_centre(feats[:5], labels, trusted)


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.9])
def test_auto_keeps_off_centre_samples_only_when_the_quota_needs_them(ratio):
    from dataprune.select import selection

    feats, labels, probs, flipped = _blobs_with_flips()
    rng = np.random.default_rng(1)
    scores = rng.normal(size=len(labels))
    scores[flipped] = 10.0                      # the top scores of their class: kept without the rule
    plain = selection(scores, ratio, labels=labels, policy="auto", probs=probs, seed=0)
    with_f = selection(scores, ratio, labels=labels, policy="auto", probs=probs, features=feats, seed=0)
    off = selection(scores, ratio, labels=labels, policy="auto", probs=probs, features=feats, seed=0,
                    centre_rule=False)
    assert np.array_equal(off.keep, plain.keep)           # the rule off: as without features
    assert len(with_f.keep) == len(plain.keep)
    assert with_f.decisions["off_centre"] == len(flipped)
    quota1 = with_f.decisions["quotas"][1]
    n1 = int((labels == 1).sum())
    # class 1 keeps a flipped sample only when its quota exceeds its on-centre samples
    assert np.isin(flipped, with_f.keep).sum() == max(0, quota1 - (n1 - len(flipped)))
    assert with_f.decisions["off_centre_kept"] == np.isin(flipped, with_f.keep).sum()
    if ratio < 0.8:
        assert np.isin(flipped, plain.keep).all()
    # everything else as the policy without features: the same quotas
    assert with_f.decisions["quotas"] == plain.decisions["quotas"]


def test_off_centre_rule_acts_only_where_label_noise_is_evident():
    """Clean-looking labels (confident learning flags under ADAPTIVE_FROM of the set): the features
    change nothing -- off-centre samples are then hard ones, not wrong labels."""
    from dataprune.select import selection

    feats, labels, probs, flipped = _blobs_with_flips(evident=False)
    scores = np.random.default_rng(1).normal(size=len(labels))
    scores[flipped] = 10.0
    for ratio in (0.3, 0.5, 0.9):
        plain = selection(scores, ratio, labels=labels, policy="auto", probs=probs, seed=0)
        with_f = selection(scores, ratio, labels=labels, policy="auto", probs=probs, features=feats, seed=0)
        assert np.array_equal(plain.keep, with_f.keep) and with_f.decisions["off_centre"] == 0


def test_noise_evident_on_held_out_samples_switches_the_adaptive_rule():
    """A surrogate that has begun to memorise pair-flipped labels flags few of the samples it trained on
    (under ADAPTIVE_FROM) but more of the held-out ones: the held-out share makes the noise evident."""
    from dataprune.select import ADAPTIVE_FROM, confident_noise, selection

    feats, labels, probs, flipped = _blobs_with_flips(evident=False)
    rng = np.random.default_rng(3)
    probs = np.clip(probs + rng.random(probs.shape) * 0.3, 0, None)
    probs /= probs.sum(1, keepdims=True)
    conf = confident_noise(probs, labels, "confident")["suspect"].mean()
    assert conf < ADAPTIVE_FROM
    plain = confident_noise(probs, labels, "adaptive")["suspect"]
    held = confident_noise(probs, labels, "adaptive", held_out_flagged=0.15)["suspect"]
    assert np.array_equal(plain, confident_noise(probs, labels, "confident")["suspect"])
    assert np.array_equal(held, confident_noise(probs, labels, "calibrated")["suspect"])
    scores = rng.normal(size=len(labels))
    scores[flipped] = 10.0
    a = selection(scores, 0.5, labels=labels, policy="auto", probs=probs, features=feats, seed=0)
    b = selection(scores, 0.5, labels=labels, policy="auto", probs=probs, features=feats, seed=0,
                  held_out_flagged=0.15)
    assert not a.decisions["noise_evident"] and b.decisions["noise_evident"]
    assert a.decisions["off_centre"] == 0 and b.decisions["off_centre"] >= 1
    assert np.isin(flipped, a.keep).sum() > np.isin(flipped, b.keep).sum()


def test_refill_order_and_centre_distance():
    from dataprune.select import centre_distance, refill_order

    feats = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [11.0, 0.0], [1.0, 0.0], [9.0, 0.0]])
    labels = np.array([0, 0, 1, 1, 0, 1])
    trusted = np.array([True, True, True, True, False, False])
    # class means over the trusted samples: (1, 0) and (10.5, 0)
    assert np.allclose(centre_distance(feats, labels, trusted, [4, 5, 2]), [0.0, 1.5, 0.5])
    # chunked the same as whole
    assert np.allclose(centre_distance(feats, labels, trusted, np.arange(6), chunk=2),
                       centre_distance(feats, labels, trusted, np.arange(6)))
    margin = np.array([0.9, 0.1, 0.5])
    distance = np.array([3.0, 1.0, 2.0])
    assert np.argsort(refill_order(margin, distance, "margin")).tolist() == [0, 2, 1]
    assert np.argsort(refill_order(margin, distance, "centre")).tolist() == [1, 2, 0]
    assert np.allclose(refill_order(margin, distance, "both"), [1.0, 1.0, 1.0])          # ranks cancel here
    assert np.allclose(refill_order(margin, None, "both"), -margin)                       # no features: the margin
    with pytest.raises(ValueError, match="unknown refill order"):
        refill_order(margin, distance, "nearest")


def test_auto_refills_the_set_aside_samples_by_margin_and_feature_rank():
    from dataprune.select import auto_indices

    # 2 classes of 10; class 0's samples 4-9 look wrong to the surrogate, so keeping 16 of 20 brings 2 of them back
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 10)
    p0 = np.array([0.9] * 4 + [0.45, 0.44, 0.3, 0.2, 0.43, 0.42] + [0.1] * 10)
    probs = np.stack([p0, 1 - p0], 1)
    feats = np.zeros((20, 2))
    feats[10:] = 10.0
    feats[[4, 5]] = 5.0                                       # halfway to class 1
    feats[[6, 7]] = 10.0                                      # in class 1's cluster
    # label margin, best first: 4, 5, 8, 9, 6, 7; distance to class 0's trusted mean, nearest first: 8, 9, 4, 5, 6, 7

    def back(**kw):
        keep, dec = auto_indices(np.zeros(20), labels, 16, probs=probs, ratio=0.2, rng=rng, noise="argmax", **kw)
        assert len(keep) == 16 and dec["set_aside"] == 4
        return sorted(set(keep.tolist()) - set(range(4)) - set(range(10, 20)))

    assert back() == [4, 5]                                   # no features: the highest margins
    assert back(features=feats) == [4, 8]                     # the best sums of the two ranks


def test_neighbour_labels_against_a_brute_force_count():
    from dataprune.select import neighbour_labels

    rng = np.random.default_rng(0)
    f = rng.normal(size=(300, 8)).astype(np.float32)
    y = rng.integers(0, 4, 300)
    got = neighbour_labels(f, y, k=7, chunk=64)
    u = f / np.linalg.norm(f, axis=1, keepdims=True)
    sim = u @ u.T
    np.fill_diagonal(sim, -np.inf)
    for i in range(0, 300, 37):
        nb = np.argsort(-sim[i])[:7]
        assert np.allclose(got[i], np.bincount(y[nb], minlength=4) / 7)
    assert np.allclose(got.sum(1), 1.0)
    # on a larger set the neighbours come from a class-stratified share of it (no sample its own neighbour)
    sub = neighbour_labels(f, y, k=7, max_refs=120)
    assert sub.shape == (300, 4) and np.allclose(sub.sum(1), 1.0)
    # some rows only: the same shares as those rows of the whole (neighbours still drawn from all)
    rows = np.array([3, 250, 17, 0])
    assert np.array_equal(neighbour_labels(f, y, k=7, rows=rows, chunk=3), got[rows])
    assert np.array_equal(neighbour_labels(f, y, k=7, max_refs=120, rows=rows), sub[rows])


def test_auto_with_neighbour_labels_sets_aside_a_label_its_neighbours_do_not_share():
    """Two tight clusters; one sample of cluster 0 carries label 1, the surrogate's probabilities are unsure about it
    and it has its class's highest score. Its neighbours' labels set it aside; without them it is kept."""
    from dataprune.select import selection

    rng = np.random.default_rng(1)
    f = np.concatenate([rng.normal(0, 0.05, (60, 4)) + [3, 0, 0, 0], rng.normal(0, 0.05, (60, 4)) + [0, 3, 0, 0]])
    y = np.r_[np.zeros(60, int), np.ones(60, int)]
    y[5] = 1
    probs = np.eye(2)[y] * 0.8 + 0.1
    probs[5] = [0.45, 0.55]                             # the surrogate does not contradict it
    y[60:75] = 0                                        # noise is evident: 15 wrong labels it does contradict
    scores = np.linspace(0, 1, 120)
    scores[5] = 2.0
    base = selection(scores, 0.5, labels=y, policy="auto", probs=probs, features=f, noise="argmax", centre_rule=False)
    mixed = selection(scores, 0.5, labels=y, policy="auto", probs=probs, features=f, noise="argmax",
                      centre_rule=False, neighbours=0.5)
    assert base.decisions["set_aside"] == 15 and 5 in base.keep
    assert mixed.decisions["set_aside"] == 16 and 5 not in mixed.keep and mixed.decisions["neighbours"] == 0.5
    assert len(mixed.keep) == len(base.keep) == 60
    # on clean labels (nothing evident) the neighbours are not read
    y[60:75] = 1
    clean = selection(scores, 0.5, labels=y, policy="auto", probs=np.eye(2)[y] * 0.8 + 0.1, features=f,
                      noise="argmax", neighbours=0.5)
    assert clean.decisions["neighbours"] == 0.0 and clean.decisions["set_aside"] == 0


def test_auto_with_the_neighbour_labels_alone_ignores_the_probabilities():
    """neighbours=1: the probabilities of a surrogate that was not credible are not read; the neighbour labels judge
    the labels and say whether noise is evident (on clean labels nothing is set aside, whatever the probabilities)."""
    from dataprune.select import NEIGHBOURS_NOISE_RULE, describe_neighbours, selection

    rng = np.random.default_rng(2)
    centres = np.eye(3, 6) * 3
    f = np.concatenate([rng.normal(0, 0.05, (50, 6)) + centres[c] for c in range(3)])
    truth = np.repeat(np.arange(3), 50)
    y = truth.copy()
    wrong = rng.choice(150, 24, replace=False)
    y[wrong] = (truth[wrong] + 1) % 3
    noise_probs = rng.dirichlet(np.ones(3), 150)         # a surrogate that learnt nothing
    scores = rng.random(150)
    alone = selection(scores, 0.5, labels=y, policy="auto", probs=noise_probs, features=f, neighbours=1.0,
                      centre_rule=False, within="random", seed=0)
    d = alone.decisions
    assert d["neighbours"] == 1.0 and d["noise_evident"] and d["set_aside"] == 24
    assert d["noise_rule"] == NEIGHBOURS_NOISE_RULE
    assert not np.isin(wrong, alone.keep).any() and len(alone.keep) == 75
    assert "probabilities were not credible" in describe_neighbours(d)
    # the same probabilities over other labels give the same selection: they are not read
    again = selection(scores, 0.5, labels=y, policy="auto", probs=np.roll(noise_probs, 1, axis=1), features=f,
                      neighbours=1.0, centre_rule=False, within="random", seed=0)
    assert np.array_equal(again.keep, alone.keep)
    # noise must be evident on the whole set and on the held-out samples both: a held-out share under the switch
    # (ADAPTIVE_FROM) acts on nothing, one over it changes nothing
    doubt = selection(scores, 0.5, labels=y, policy="auto", probs=noise_probs, features=f, neighbours=1.0,
                      centre_rule=False, within="random", seed=0, held_out_flagged=0.05)
    assert doubt.decisions["set_aside"] == 0 and doubt.decisions["noise_rule"] == "none"
    sure = selection(scores, 0.5, labels=y, policy="auto", probs=noise_probs, features=f, neighbours=1.0,
                     centre_rule=False, within="random", seed=0, held_out_flagged=0.2)
    assert np.array_equal(sure.keep, alone.keep)
    # clean labels: the neighbours agree with every label, noise is not evident, nothing is set aside (the
    # probabilities alone would flag a third of them)
    clean = selection(scores, 0.5, labels=truth, policy="auto", probs=noise_probs, features=f, neighbours=1.0,
                      centre_rule=False, within="random", seed=0)
    assert clean.decisions["set_aside"] == 0 and clean.decisions["noise_rule"] == "none"
    assert clean.decisions["neighbours"] == 0.0
    # told to judge no label, it reads no neighbour either, and its decisions say so
    told = selection(scores, 0.5, labels=y, policy="auto", probs=noise_probs, features=f, neighbours=1.0,
                     noise="none", centre_rule=False, within="random", seed=0)
    assert told.decisions["neighbours"] == 0.0 and told.decisions["set_aside"] == 0


def test_neighbour_labels_from_trusted_references_only():
    from dataprune.select import neighbour_labels

    rng = np.random.default_rng(3)
    f = rng.normal(size=(200, 6)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    refs = rng.random(200) < 0.6
    got = neighbour_labels(f, y, k=5, refs=refs, chunk=17)
    u = f / np.linalg.norm(f, axis=1, keepdims=True)
    sim = u @ u.T
    np.fill_diagonal(sim, -np.inf)
    sim[:, ~refs] = -np.inf                             # only the trusted samples are neighbours
    for i in range(0, 200, 13):
        nb = np.argsort(-sim[i])[:5]
        assert np.allclose(got[i], np.bincount(y[nb], minlength=3) / 5)
    assert np.array_equal(neighbour_labels(f, y, k=5, refs=np.ones(200, bool)), neighbour_labels(f, y, k=5))


def test_trusted_neighbours_stop_wrong_labels_voting_for_their_class():
    """Pair-flip noise: 40 of cluster A's 100 samples carry B's label. The surrogate contradicts half of them; of the
    other half it has begun to learn the flip. Their neighbours then vote 60/40 for A, not enough against the
    probabilities; once the 20 caught ones no longer vote, 75/25 is."""
    from dataprune.select import selection

    rng = np.random.default_rng(0)
    f = np.concatenate([rng.normal(0, 0.05, (100, 4)) + [3, 0, 0, 0], rng.normal(0, 0.05, (100, 4)) + [0, 3, 0, 0]])
    y = np.r_[np.zeros(100, int), np.ones(100, int)]
    y[:40] = 1
    probs = np.where(y[:, None] == np.arange(2), 0.8, 0.2)
    probs[:20] = [0.55, 0.45]                           # caught by the probabilities
    probs[20:40] = [0.35, 0.65]                         # half-learnt flips
    scores = np.linspace(0, 1, 200)
    scores[:40] += 2                                    # the wrong labels score highest: kept unless set aside
    kw = dict(labels=y, policy="auto", probs=probs, features=f, noise="argmax", centre_rule=False,
              held_out_flagged=0.2, neighbours=0.5)
    once = selection(scores, 0.5, trusted_neighbours=0, **kw)
    assert once.decisions["trusted_neighbours"] == 0 and 20 <= once.decisions["set_aside"] < 30
    assert np.isin(np.arange(20, 40), once.keep).sum() >= 10    # most half-learnt flips kept
    shipped = selection(scores, 0.5, **kw)
    assert shipped.decisions["trusted_neighbours"] == 1 and shipped.decisions["set_aside"] == 40
    assert not np.isin(np.arange(40), shipped.keep).any()       # the 40 set aside are the 40 wrong labels
    assert "formed again with only the trusted samples" in dp_describe(shipped.decisions)
    # without the mix the option reads nothing
    plain = selection(scores, 0.5, **{**kw, "neighbours": 0.0})
    assert plain.decisions["trusted_neighbours"] == 0


def dp_describe(decisions):
    from dataprune.select import describe_neighbours

    return describe_neighbours(decisions)
