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
