"""From a dataset and a model constructor to scores, and what getting them cost.

:func:`surrogate_scores` trains the surrogate (or a cheaper part of it, by a :class:`Plan`)
and scores the data with any set of methods; every step is also a public function of its
own (``train``, ``methods.score``, ``select``, ``evaluate.retrain``).

**Cost accounting.** Every run records the pruning cost -- surrogate training plus scoring, in
seconds -- and ``cost_fraction``: that total divided by the time of one full-data training run
with the same recipe, estimated from the surrogate's own training speed (seconds per sample
presentation x epochs x N). ``dataprune bench`` replaces the estimate by the full-data run it
measures itself. On the CPU the fraction is one of CPU times of the process (``clock="cpu"``),
which other programs on a shared machine do not inflate; on a GPU, of wall times.

**Plans and budgets.** A :class:`Plan` says how the scores are bought: the surrogate trains
only an early segment of its schedule, on all of the data or a random part of it, and the
scores come from all parameters, the classifier head, or from the training step itself
(fused). :func:`choose_plan` picks the best plan whose *expected* cost (:data:`COST`) fits a
budget.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .data import SubsetView, get_targets
from .distributed import rank
from .evidence import features as evidence_features
from .evidence import holdout_indices, judge, judge_neighbour_mix, judge_neighbours, label_evidence, probe_epochs
from .methods import call_method, get_method
from .methods.dynamics import DynamicsRecorder
from .quotas import stratified_fraction
from .train import TrainConfig, TrainResult, train
from .trajectory import as_checkpoints, choose_epochs
from .utils import seed_everything

# Expected cost of each step, in training epochs over all N samples (one epoch = 1.0): an
# eval-mode forward pass over the data (predictions), class-wise scoring of the classifier head and
# over all parameters per checkpoint, and per epoch trained the bookkeeping of fused scoring and of
# the training record. The largest values measured by ``python benchmarks/cost.py`` (small CNN and
# MLP on mnist5k, 1 thread) rounded up: an expected cost must not underestimate. The achieved cost
# of every run is measured, not taken from here.
COST = {"forward": 0.5, "head": 0.45, "all_params": 2.6, "fused": 0.12, "record": 0.08}
# Weight of the neighbour labels in the label evidence of a plan that stops early (:attr:`Plan.neighbours`). On mnist5k
# validation splits at --budget 0.25: 0.5 +1.05 and 0.7 +1.03 (seeds 10-13); 0.3 +0.86 against 0.5 +0.97 (seeds
# 10-11, before the mixing was restricted to evident noise).
NEIGHBOURS_MIX = 0.5


@dataclass(frozen=True)
class Plan:
    """How scores are bought.

    segment : share of the recipe's epochs the surrogate trains (the first ones, with the full
        schedule's learning rates: an early segment of the same trajectory, unless ``anneal``); at least
        ``min_epochs``.
    data_fraction : the surrogate trains on this random, class-stratified share of the data and
        scores all of it.
    params : scoring parameters for the methods that take them ("all", "last_layer"); None keeps
        each method's own.
    fused : class-wise terms from the training step itself (classifier head; no scoring pass).
    checkpoints : that many evenly spaced checkpoints in the segment; None keeps the requested
        checkpoint epochs that fall inside it (or the segment's last epoch).
    anneal : the surrogate runs the recipe's whole learning-rate schedule compressed into its segment (a
        short run that ends annealed) instead of the segment's first, largest learning rates. Fitted for
        ``early2-head`` on validation splits of mnist5k (clean, 20% symmetric, 20% pair noise; ratios
        0.5/0.7/0.9; 3 seeds): validation accuracy +0.26 on average (6 of 9 cells ahead), and under
        symmetric noise the label evidence was credible on every seed (kept wrong labels 6.9% -> 0.4%;
        one seed's early, unannealed surrogate was judged not credible). A one-epoch segment is the same
        either way (the schedule is per epoch).
    """

    name: str = "full"
    segment: float = 1.0
    min_epochs: int = 1
    data_fraction: float = 1.0
    params: str | None = None
    fused: bool = False
    checkpoints: int | None = None
    anneal: bool = False

    def __post_init__(self):
        if not 0 < self.segment <= 1:
            raise ValueError(f"segment must be in (0, 1], got {self.segment}")
        if not 0 < self.data_fraction <= 1:
            raise ValueError(f"data_fraction must be in (0, 1], got {self.data_fraction}")

    @property
    def features(self) -> bool:
        """Whether the label evidence includes the penultimate features in a forward pass of their own: on the
        full plan only, where the off-centre rule was first validated (features at the end of the recipe); a
        budgeted plan's budget is tight. See :meth:`reads_features` for the plans that get them free."""
        return self.name == "full"

    def reads_features(self, method_keeps_features: bool) -> bool:
        """Whether the label evidence includes the penultimate features: the full plan, and every plan that
        scores the classifier head in a pass of its own (``params="last_layer"``, not fused) with a method that
        keeps the features of that pass (``method_keeps_features``: it takes ``evidence_features``, the
        class-wise methods, e.g. ``recommended``), which computes them anyway. On ``early2-head``'s evidence
        (``--budget 0.25``) the off-centre rule was validated too (benchmarks/fit_budget.py: validation splits of
        mnist5k, 9 settings x 2 seeds x ratios 0.5/0.7/0.9, +1.5 points of balanced accuracy on the mean, behind
        by more than 0.5 in 3 of 27 cells)."""
        return self.features or (method_keeps_features and self.params == "last_layer" and not self.fused)

    @property
    def probes(self) -> bool:
        """Whether the judge also reads probes before the first scoring checkpoint
        (:func:`dataprune.evidence.probe_epochs`): on the full plan only, where they were validated (100-epoch
        recipes); a budgeted plan's surrogate is short already, and two more evidence passes would push
        ``early2-head`` out of ``--budget 0.25`` on a 10-epoch recipe."""
        return self.name == "full"

    @property
    def judges_trend(self) -> bool:
        """Whether the judge's still-learning test applies (:func:`dataprune.evidence.judge`, ``trend``): on plans
        that train the recipe's whole schedule (``full``, ``head``), where it was validated. A plan that stops early
        is still learning by design; with the test, ``early3-head`` (``--budget 0.41``) discarded credible evidence
        in 5 of 18 validation runs (benchmarks/fit_budget.py, mnist5k, tuning seeds 10 and 11) and kept 10-21% wrong
        labels there; without it, +3.1 points of validation accuracy on those settings' cells (ahead in 8 of 15,
        behind in 3, worst -1.8 on the 10:1 long tail); ``half-head`` (``--budget 0.66``) 2 of 18 runs, +2.7 (ahead
        in 6 of 6). Plans of one checkpoint were always judged so."""
        return self.segment >= 1 and self.data_fraction >= 1

    @property
    def neighbours(self) -> float:
        """Weight of the neighbour labels in the label evidence (``policy="auto"``'s ``neighbours``,
        :func:`dataprune.select.neighbour_labels`): :data:`NEIGHBOURS_MIX` on plans that train at most 30% of the
        recipe, whose short surrogate flags hard clean samples it has not learnt; 0 on longer ones (the full plan's
        probabilities alone were validated; ``half-head`` was not measured). Read only where the plan keeps the
        penultimate features (:meth:`reads_features`). Fitted on validation splits of mnist5k
        (benchmarks/fit_budget.py, 9 settings x ratios 0.5/0.7/0.9, docs/results/neighbours-2026-12-06):
        ``early2-head`` (``--budget 0.25``, tuning seeds 10-13) +1.05 points of balanced accuracy, ahead by more
        than 0.5 in 11 of 27 cells, behind in 2 (worst -2.1); ``early3-head`` (0.41, seeds 10-11) +0.35, 8 ahead,
        1 behind."""
        return NEIGHBOURS_MIX if self.segment <= 0.3 and not self.judges_trend else 0.0

    def epochs(self, recipe_epochs: int) -> int:
        """Epochs the surrogate trains."""
        return int(min(recipe_epochs, max(self.min_epochs, 1, math.floor(self.segment * recipe_epochs + 1e-9))))

    def checkpoint_epochs(self, recipe_epochs: int, requested) -> list[int]:
        e = self.epochs(recipe_epochs)
        if self.checkpoints:
            return choose_epochs(e, count=min(self.checkpoints, e))
        inside = sorted({int(c) for c in requested if 0 <= int(c) <= e})
        return inside or [e]

    def trained_epochs(self, recipe_epochs: int, requested=(), *, history: bool = False) -> int:
        """Epochs the surrogate actually trains: it stops after its last checkpoint unless the scores come
        from the training pass or its record (``history``), which read every epoch."""
        e = self.epochs(recipe_epochs)
        if self.fused or history:
            return e
        return min(e, max(max(self.checkpoint_epochs(recipe_epochs, requested)), 1))

    def expected_cost(self, recipe_epochs: int, requested=(), *, evidence: bool = False,
                      history: bool = False, full_epochs: int | None = None, records_evidence: bool = False) -> float:
        """Expected pruning cost as a fraction of one full training run (see :data:`COST`): the
        surrogate's epochs (of its ``recipe_epochs``-long schedule), the scoring passes, and with
        ``evidence`` the eval-mode passes of the label evidence (:mod:`dataprune.evidence`: every
        checkpoint over the held-out share and as many trained-on samples, two checkpoints over the
        data unless the method reads them in its own scoring pass, ``records_evidence``, and on the
        full plan one over the data for the features; fused plans have no scoring pass). With the evidence, the
        surrogate trains on the data less its held-out share (``1 - HOLDOUT``), and is charged so. The full run is
        the recipe the user trains with: ``full_epochs`` epochs (default ``recipe_epochs``)."""
        from .evidence import EVIDENCE_CHECKPOINTS, HOLDOUT

        e = self.trained_epochs(recipe_epochs, requested, history=history)
        epochs = self.checkpoint_epochs(recipe_epochs, requested)
        k = len(epochs)
        # Judged on probes before the first checkpoint too (a long recipe): their evidence is read in passes of
        # its own, not in the scoring pass.
        probes = len(probe_epochs(min(epochs))) if evidence and self.probes and not history else 0
        if self.fused:
            scoring = COST["fused"] * e
        else:
            scoring = k * (COST["head"] if self.params == "last_layer" else COST["all_params"])
        if evidence:
            full_pass = min(EVIDENCE_CHECKPOINTS, k + probes) if (self.fused or not records_evidence or probes) else 0
            judged = 0 if self.fused else 2 * HOLDOUT * (k + probes)
            scoring += (full_pass + judged + int(self.features)) * COST["forward"]
        # Charged for the share the surrogate trains on: its part of the data, or all of it less the held-out share
        # that judges the evidence (held out only where every method scores from checkpoints).
        trained = self.presentations(recipe_epochs, requested, evidence=evidence, history=history)
        return (trained * (1 + COST["record"]) + scoring) / (full_epochs or recipe_epochs)

    def presentations(self, recipe_epochs: int, requested=(), *, evidence: bool = False,
                      history: bool = False) -> float:
        """Sample presentations of the surrogate's training, in epochs over the whole data set: its trained
        epochs times the share it trains on (its part of the data, or all of it less the held-out share when the
        label evidence is judged). Times ``N / batch size``: its optimizer steps."""
        return self.trained_share(evidence=evidence, history=history) * \
            self.trained_epochs(recipe_epochs, requested, history=history)

    def trained_share(self, *, evidence: bool = False, history: bool = False) -> float:
        """The share of the data the surrogate trains on each epoch: its part of the data, or all of it less the
        held-out share when the label evidence is judged (held out only where scores come from checkpoints)."""
        from .evidence import HOLDOUT

        if self.data_fraction < 1:
            return self.data_fraction
        return 1 - HOLDOUT if evidence and not self.fused and not history else 1.0

    def steps(self, recipe_epochs: int, n: int, batch_size: int, requested=(), *, evidence: bool = False,
              history: bool = False) -> int:
        """Optimizer steps of the surrogate on a data set of ``n`` samples at ``batch_size`` (about: each epoch
        ends with a short batch)."""
        per_epoch = math.ceil(self.trained_share(evidence=evidence, history=history) * n / max(int(batch_size), 1))
        return per_epoch * self.trained_epochs(recipe_epochs, requested, history=history)

    def describe(self, recipe_epochs: int, requested=(), *, history: bool = False) -> str:
        e = self.trained_epochs(recipe_epochs, requested, history=history)
        first = f"surrogate {e} of {recipe_epochs} epochs"
        parts = [first + (" (its schedule compressed into them)" if self.anneal else "")]
        if self.data_fraction < 1:
            parts[0] += f" on {self.data_fraction:.0%} of the data"
        parts.append("fused head scoring" if self.fused else
                     f"{'head' if self.params == 'last_layer' else 'all-parameter'} scoring at epochs "
                     f"{self.checkpoint_epochs(recipe_epochs, requested)}")
        return ", ".join(parts)


FULL = Plan()
# Cheaper plans, best first: what a budget buys. The order is a measurement (validation splits of
# mnist5k: docs/cost.md); :func:`choose_plan` takes the first one that fits.
PLANS = [
    FULL,
    Plan("head", params="last_layer"),
    Plan("half-head", segment=0.5, params="last_layer"),
    Plan("early3-head", segment=0.3, params="last_layer", checkpoints=2),
    Plan("early2-head", segment=0.2, params="last_layer", checkpoints=1, anneal=True),
    Plan("early2-fused", segment=0.2, fused=True, checkpoints=2),
    Plan("early1-head", segment=0.1, params="last_layer", checkpoints=1),
    Plan("half-data-early2-head", segment=0.2, data_fraction=0.5, params="last_layer", checkpoints=1),
    Plan("quarter-data-early2-head", segment=0.2, data_fraction=0.25, params="last_layer", checkpoints=1),
    Plan("quarter-data-early1-head", segment=0.1, data_fraction=0.25, params="last_layer", checkpoints=1),
]
PLAN_NAMES = {p.name: p for p in PLANS}


def choose_plan(budget: float | None, recipe_epochs: int, requested=(), *, fused_ok: bool = True,
                evidence: bool = False, history: bool = False, full_epochs: int | None = None,
                records_evidence: bool = False) -> Plan:
    """The first plan of :data:`PLANS` whose expected cost (:meth:`Plan.expected_cost`, with the label
    evidence's passes when ``evidence``) is at most ``budget`` (a fraction of one full training run of
    ``recipe_epochs``); ``None`` = no budget, the full plan."""
    if budget is None:
        return FULL
    try:
        budget = float(budget)
    except (TypeError, ValueError):
        raise TypeError(f"budget must be a fraction of one training run, e.g. 0.25; got {budget!r}") from None
    if not budget > 0:
        raise ValueError(f"budget must be > 0 (a fraction of one training run), got {budget}")

    def cost(p):
        return p.expected_cost(recipe_epochs, requested, evidence=evidence, history=history, full_epochs=full_epochs,
                               records_evidence=records_evidence)

    for plan in PLANS:
        if (fused_ok or not plan.fused) and cost(plan) <= budget + 1e-12:
            return plan
    cheapest = min(PLANS, key=cost)
    raise ValueError(f"no plan fits a budget of {budget:g} of a training run with {recipe_epochs} epochs: the "
                     f"cheapest, {cheapest.name!r} ({cheapest.describe(recipe_epochs, requested)}), is expected "
                     f"to cost {cost(cheapest):.3f}")


def more_training(plan: Plan, recipe_epochs: int, requested=(), *, fused_ok: bool = True, evidence: bool = False,
                  history: bool = False, full_epochs: int | None = None,
                  records_evidence: bool = False, factor: float = 2.0) -> tuple[Plan, float] | None:
    """``(plan, budget)``: a budget (rounded up to 0.01) and the plan it buys, the cheapest of :data:`PLANS` whose
    surrogate trains at least ``factor`` times the sample presentations of ``plan``'s (:meth:`Plan.presentations`;
    the full plan when none does; None when ``plan`` is the full one). What a budget must buy when ``plan``'s
    surrogate was too short to judge the labels: label evidence needs a surrogate that has learnt the task, and
    that takes optimizer steps, whatever the plan's share of the data. Doubling is the smallest step that changes
    much (mnist5k, 20% symmetric noise, 10-epoch recipe: held-out accuracy 29% after 32 steps, 55% after 64, 63%
    after 113, credible evidence after 226; a step from 113 to 126 would buy nothing)."""
    def cost(p):
        return p.expected_cost(recipe_epochs, requested, evidence=evidence, history=history, full_epochs=full_epochs,
                               records_evidence=records_evidence)

    def trains(p):
        return p.presentations(recipe_epochs, requested, evidence=evidence, history=history)

    base = trains(plan)
    if plan.name == FULL.name:
        return None
    up = [p for p in PLANS if (fused_ok or not p.fused) and trains(p) >= factor * base - 1e-9] or [FULL]
    best = min(up, key=lambda p: (cost(p), -trains(p)))
    # A budget a user can type (rounded up to 0.01) and the plan it buys (the first that fits, which may train more).
    budget = math.ceil(cost(best) * 100 - 1e-6) / 100
    bought = choose_plan(budget, recipe_epochs, requested, fused_ok=fused_ok, evidence=evidence, history=history,
                         full_epochs=full_epochs, records_evidence=records_evidence)
    return (bought, budget) if trains(bought) >= factor * base - 1e-9 else (best, budget)


def fused_allowed(spec, options: dict | None, partitions: int = 1) -> bool:
    """Whether a budget may buy a fused plan for method ``spec``: it has fused scoring, one partition, no options
    (fused scoring takes none)."""
    return spec.fused is not None and partitions == 1 and not options


def budget_advice(plan: Plan, method: str, reports, *, recipe: TrainConfig, checkpoint_epochs, n: int,
                  options: dict | None = None, partitions: int = 1) -> dict | None:
    """What a budgeted run can do when its label evidence was not credible or came with a caution (any of
    ``reports``, the judge's, says ``credible: False`` or gives a ``caution``: flags that may be hard samples): the
    plan it bought and its optimizer steps, and the cheapest plan that trains at least twice as much
    (:func:`more_training`), the budget that buys it and its steps. None when the evidence was credible without a
    caution (or not judged). The same advice from :func:`dataprune.prune` and ``dataprune score``/``select``."""
    if not any((r or {}).get("credible") is False or (r or {}).get("caution") for r in (reports or [])):
        return None
    spec = get_method(method)
    kw = dict(evidence=True, history=spec.history is not None)
    advice = {"plan": plan.name,
              "steps": plan.steps(recipe.epochs, n, recipe.batch_size, checkpoint_epochs, **kw)}
    up = more_training(plan, recipe.epochs, checkpoint_epochs, fused_ok=fused_allowed(spec, options, partitions),
                       records_evidence="evidence_epochs" in spec.options, **kw)
    if up is not None:
        better, budget = up
        advice.update(next_plan=better.name, next_budget=budget,
                      next_steps=better.steps(recipe.epochs, n, recipe.batch_size, checkpoint_epochs, **kw))
    return advice


def advice_text(advice: dict) -> str:
    """``decisions["evidence_advice"]`` (:func:`dataprune.prune`: a budget plan whose label evidence was not
    credible, and :func:`more_training`'s plan) in one sentence, for the summary and the HTML report."""
    if not advice.get("next_plan"):
        buys = ""
    elif advice["next_plan"] == FULL.name:        # no budget buys it for less than it costs: say so
        buys = (f"; without a budget the full plan (about {advice['next_budget']:g} of a training run) trains about "
                f"{advice['next_steps']} steps, which may learn enough to tell wrong labels from hard samples")
    else:
        buys = (f"; a budget of {advice['next_budget']:g} buys {advice['next_plan']} (about {advice['next_steps']} "
                "steps), which may learn enough to tell wrong labels from hard samples")
    return f"the budget bought plan {advice['plan']}, a surrogate of about {advice['steps']} optimizer steps" + buys


def resolve_plan(method: str, *, budget: float | None, recipe_epochs: int, checkpoint_epochs=(),
                 policy: str | None = None, options: dict | None = None, partitions: int = 1,
                 checkpoints_given: bool = False, full_epochs: int | None = None) -> tuple[Plan, bool]:
    """``(plan, evidence)``: the plan that buys ``method``'s scores and whether the selection policy
    needs the label evidence -- the one place where the CLI, the bench and :func:`dataprune.prune`
    decide it, before anything trains. A plan that cannot hold is refused here with the reason:
    a budget for a method with its own surrogate plan (DUAL's early window), method options that a
    plan would ignore or overrun (fused scoring takes none; a head plan with ``params="all"``).
    """
    from .select import POLICIES

    spec = get_method(method)
    options = dict(options or {})
    spec.check_options(options)
    policy = policy or spec.policy
    evidence = bool(policy) and "probs" in POLICIES[policy].evidence
    history = spec.history is not None
    if checkpoints_given:
        if budget is not None:
            raise ValueError("budget= buys a cheaper surrogate; with checkpoints= there is none to train")
        return Plan(name="given checkpoints"), evidence
    if budget is None:
        return (Plan(**spec.plan) if spec.plan else FULL), evidence
    if spec.plan:
        raise ValueError(f"method {method!r} trains its own surrogate ({Plan(**spec.plan).describe(recipe_epochs)}); "
                         "a budget cannot buy it cheaper: drop the budget for this method")
    fused_ok = fused_allowed(spec, options, partitions)
    plan = choose_plan(budget, recipe_epochs, checkpoint_epochs, fused_ok=fused_ok, evidence=evidence,
                       history=history, full_epochs=full_epochs, records_evidence="evidence_epochs" in spec.options)
    if plan.params is not None and "params" in options and options["params"] != plan.params:
        raise ValueError(f"a budget of {budget:g} buys plan {plan.name!r}, which scores params={plan.params!r}; "
                         f"the option params={options['params']!r} would cost several times the budget. Drop "
                         "the option or raise the budget")
    return plan, evidence


class PlanMemoryWarning(UserWarning):
    """The full plan would not fit in memory: a cheaper plan scores instead (:func:`plan_for_memory`)."""


def plan_for_memory(plan: Plan, method: str, *, options: dict | None, budget: float | None, model: torch.nn.Module,
                    num_classes: int, device=None) -> tuple[Plan, str | None]:
    """``(plan, why)``: the head plan where the full plan's class-wise scoring over all parameters would not fit in
    memory (one mean gradient per class, :func:`dataprune.grads.terms.check_group_memory`: ImageNet-1k with a
    ResNet-50 needs about 307 GB) and no budget or ``params`` option was given; else ``plan`` and None. The head
    plan keeps one mean gradient of the classifier head per class instead (1,000 x 1,000 x 2,049 float64:
    16 GB at ImageNet-1k)."""
    from .grads.terms import MEMORY_SHARE, group_means_excess
    from .methods import get_method
    from .methods.moso_variants import classwise_score, normalized_score

    spec = get_method(method)
    if plan is not FULL or budget is not None or "params" in (options or {}) or num_classes < 2 \
            or spec.fn not in (classwise_score, normalized_score):
        return plan, None
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    excess = group_means_excess(num_classes, params, device, model_dtype=dtype)
    if excess is None:
        return plan, None
    need, free = excess
    head = PLAN_NAMES["head"]
    return head, (f"the full plan's class-wise scoring over all parameters keeps one mean gradient per class: "
                  f"{num_classes:,} classes x {params:,} parameters = {need / 2 ** 30:.1f} GiB, more than "
                  f"{MEMORY_SHARE:.0%} of the {free / 2 ** 30:.1f} GiB free; plan {head.name} scores the classifier "
                  "head instead (budget= or params= choose otherwise)")


def partition(labels: np.ndarray, parts: int, seed: int = 0) -> list[np.ndarray]:
    """Split positions into ``parts`` disjoint, class-stratified, seeded parts (sorted indices)."""
    if parts < 1:
        raise ValueError(f"partitions must be >= 1, got {parts}")
    n = len(labels)
    if parts > n:
        raise ValueError(f"cannot split {n} samples into {parts} partitions")
    if parts == 1:
        return [np.arange(n)]
    rng = np.random.default_rng([seed, 104729])
    order = rng.permutation(n)
    order = order[np.argsort(labels[order], kind="stable")]  # class-sorted, random within class
    return [np.sort(order[k::parts]) for k in range(parts)]


@dataclass
class ScoreRun:
    scores: dict[str, np.ndarray]
    seconds: dict[str, float]                            # scoring time per method (surrogate excluded)
    surrogate_seconds: float                             # training alone (callbacks excluded)
    aux: dict = field(default_factory=dict)              # method -> {name: (N, ...) array}
    checkpoints: list = field(default_factory=list)      # per partition: list of Checkpoint
    parts: list = field(default_factory=list)
    surrogates: list[TrainResult] = field(default_factory=list)
    histories: list = field(default_factory=list)        # per partition: History or None
    plan: Plan = FULL
    recorded_seconds: float = 0.0                        # callbacks during training (history, fused)
    full_seconds_estimate: float = float("nan")          # one full-data training run, from the surrogate's speed
    uses_surrogate: dict = field(default_factory=dict)   # method -> whether its scores needed the surrogate
    clock: str = "wall"                                  # "cpu" on the CPU: the cpu_* figures are the cost
    cpu: dict = field(default_factory=lambda: {"surrogate": 0.0, "recorded": 0.0, "scoring": {},
                                               "full_estimate": float("nan")})
    evidence: list = field(default_factory=list)          # per partition: what label_evidence measured

    def surrogate_cost(self, method: str, clock: str | None = None) -> float:
        """Surrogate seconds charged to ``method``: none for methods that need no surrogate (random)."""
        if not self.uses_surrogate.get(method, True):
            return 0.0
        if (clock or self.clock) == "cpu":
            return self.cpu["surrogate"] + self.cpu["recorded"]
        return self.surrogate_seconds + self.recorded_seconds

    def scoring_cost(self, method: str, clock: str | None = None) -> float:
        return self.cpu["scoring"].get(method, 0.0) if (clock or self.clock) == "cpu" else self.seconds[method]

    def cost(self, method: str, full_seconds: float | None = None) -> dict:
        """What ``method``'s scores cost: seconds (of the run's clock) and the fraction of one full training
        run (``full_seconds`` measured by the caller on the same clock, else estimated)."""
        total = self.surrogate_cost(method) + self.scoring_cost(method)
        estimate = self.cpu["full_estimate"] if self.clock == "cpu" else self.full_seconds_estimate
        full = estimate if full_seconds is None else full_seconds
        return {"plan": self.plan.name, "clock": self.clock, "surrogate_seconds": self.surrogate_cost(method),
                "scoring_seconds": self.scoring_cost(method), "prune_seconds": total,
                "wall_seconds": self.surrogate_cost(method, "wall") + self.seconds[method],
                "full_train_seconds": full if full and full == full else None,
                "full_train_measured": full_seconds is not None,
                "cost_fraction": total / full if full and full == full else None,
                **({} if full and full == full else
                   {"cost_unknown": "no training step was timed (nothing trained), so one full run's time is "
                                    "unknown"})}


def surrogate_scores(methods: list[str], dataset, make_model: Callable[[], torch.nn.Module], *,
                     config: TrainConfig, checkpoint_epochs, plan: Plan | None = None, partitions: int = 1,
                     seed: int = 0, device=None, batch_size: int = 256, num_workers: int = 0,
                     progress: bool = False, options: dict[str, dict] | None = None, checkpoints=None,
                     work_dir: str | None = None, record_history: bool | None = None,
                     evidence_for=(), score_view=None, holdout: float = 0.0, loss_fn=None) -> ScoreRun:
    """Train the surrogate(s) once (as ``plan`` says) and score ``dataset`` with every method in ``methods``.

    With ``partitions=K`` the data is split into K class-stratified parts; a surrogate is
    trained on each part and scores that part (the method authors' partitioned mode).
    ``checkpoints`` (a list of Checkpoint, K=1 only) skips surrogate training. ``work_dir``
    makes the run resumable: trained surrogates are kept there, and methods that take a
    ``work_dir`` keep their per-checkpoint partial results there. ``record_history`` keeps the
    training record (:class:`~dataprune.methods.dynamics.History`) even when no method needs it.
    ``evidence_for`` names methods whose scores must carry the surrogate's class probabilities
    (``aux["probs"]``, what ``policy="auto"`` reads) even if the method does not record them:
    one eval-mode pass per checkpoint, counted in that method's scoring time.

    ``score_view`` is the deterministic view of ``dataset`` (same samples, same order, no random
    transform: :func:`dataprune.data.views.deterministic_view`): the surrogate trains on ``dataset``,
    and scoring and evidence read ``score_view``. ``holdout`` keeps that class-stratified share of the
    data out of the surrogate's training (still scored) to judge, on data it did not train on, whether
    its label evidence is credible and where on the schedule to read it
    (:func:`dataprune.evidence.label_evidence`).
    """
    plan = plan or FULL
    specs = [get_method(m) for m in methods]
    options = {k: dict(v) for k, v in (options or {}).items()}
    labels = get_targets(dataset)
    parts = partition(labels, partitions, seed)
    if checkpoints is not None and partitions != 1:
        raise ValueError("precomputed checkpoints can only be used with partitions=1")
    if checkpoints is not None and plan != FULL:
        raise ValueError(f"plan {plan.name!r} trains its own surrogate; it cannot use precomputed checkpoints")
    history_methods = [s for s in specs if s.history == "required"]
    if plan.fused:
        bad = [s.name for s in specs if s.fused is None]
        if bad:
            raise ValueError(f"plan {plan.name!r} scores inside training, which methods {bad} cannot do")
    if plan.fused and plan.data_fraction < 1:
        raise ValueError(f"plan {plan.name!r} scores inside training, which sees only {plan.data_fraction:.0%} of "
                         "the data: the other samples would get no score")
    if plan.data_fraction < 1 and history_methods:
        raise ValueError(f"methods {[s.name for s in history_methods]} read the training record of every sample; "
                         f"a surrogate trained on {plan.data_fraction:.0%} of the data has none for the rest")
    if checkpoints is not None and history_methods:
        raise ValueError(f"methods {[s.name for s in history_methods]} are recorded while the surrogate trains; "
                         "they cannot use precomputed checkpoints")
    if plan.params is not None:
        for s in specs:
            if "params" in s.options:
                options.setdefault(s.name, {}).setdefault("params", plan.params)
    # The surrogate stops after its last checkpoint unless a method reads its whole training record.
    epochs_trained = plan.trained_epochs(config.epochs, checkpoint_epochs, history=any(s.history for s in specs))
    ck_epochs = plan.checkpoint_epochs(config.epochs, checkpoint_epochs) if checkpoints is None else []
    scores = {s.name: np.zeros(len(dataset)) for s in specs}
    seconds = {s.name: 0.0 for s in specs}
    from .utils import resolve_device

    run = ScoreRun(scores, seconds, 0.0, parts=parts, plan=plan,
                   clock="cpu" if resolve_device(device).type == "cpu" else "wall",
                   uses_surrogate={s.name: checkpoints is None and (s.needs_checkpoints or s.history or plan.fused
                                                                    or s.name in evidence_for) for s in specs})
    presentations = 0
    score_view = dataset if score_view is None else score_view
    # Samples held out of the surrogate's training to judge its label evidence: not for methods whose
    # scores come from the training pass or its record (they would have none for those samples).
    use_holdout = bool(holdout) and checkpoints is None and bool(evidence_for) and not plan.fused \
        and not any(s.history for s in specs)
    if len(score_view) != len(dataset):
        raise ValueError(f"score_view has {len(score_view)} samples; the dataset has {len(dataset)}")
    for k, part in enumerate(parts):
        view = dataset if partitions == 1 else SubsetView(dataset, part)
        sview = score_view if partitions == 1 else SubsetView(score_view, part)
        fit, held = np.arange(len(view)), np.zeros(0, dtype=np.int64)
        if plan.data_fraction < 1:
            # The samples outside the surrogate's share are held out already.
            fit = stratified_fraction(get_targets(view), plan.data_fraction, seed * 1000 + k)
            if use_holdout:
                rest = np.setdiff1d(np.arange(len(view)), fit)
                held = rest[holdout_indices(get_targets(view)[rest], min(1.0, holdout * len(view) / max(len(rest), 1)),
                                            seed * 1000 + k)]
        elif use_holdout:
            held = holdout_indices(get_targets(view), holdout, seed * 1000 + k)
            fit = np.setdiff1d(fit, held)
        # Snapshots for the judge only, before the first scoring checkpoint (a long recipe's first one may come
        # after the surrogate has begun to memorise): with held-out samples to judge them on.
        probes = probe_epochs(min(ck_epochs)) if len(held) and ck_epochs and plan.probes else []
        kept_epochs = sorted(set(ck_epochs) | set(probes))
        fit_view = view if len(fit) == len(view) else SubsetView(view, fit)
        wants_history = history_methods or record_history or any(s.history for s in specs)
        recorder = DynamicsRecorder(len(fit_view)) \
            if wants_history and checkpoints is None else None
        fused = {s.name: s.fused(view, ck_epochs) for s in specs if plan.fused}
        seed_everything(seed * 1000 + k)
        template = make_model()
        needs_training = checkpoints is None and (any(s.needs_checkpoints for s in specs) or history_methods
                                                  or fused or evidence_for)
        cks, history = checkpoints, None
        saved = _saved_surrogate(work_dir, k, config, kept_epochs, seed, part, sview, plan, held) \
            if work_dir is not None and needs_training and not fused else None
        if saved is not None:
            from .io import REUSED

            REUSED["surrogates"] += 1
            cks, history, times, seen = saved
            run.surrogate_seconds += times["train_seconds"]
            run.recorded_seconds += times["callback_seconds"]
            run.cpu["surrogate"] += times.get("train_cpu_seconds", times["train_seconds"])
            run.cpu["recorded"] += times.get("callback_cpu_seconds", times["callback_seconds"])
            presentations += seen
        elif needs_training:
            seed_everything(seed * 1000 + k)
            model = make_model()
            callbacks = ([recorder] if recorder else []) + list(fused.values())
            # An annealed plan runs the whole schedule over its own epochs; otherwise the recipe's, stopped early.
            run_config = config.replace(epochs=epochs_trained) if plan.anneal else config
            # A long surrogate killed part way resumes from its last saved epoch (train(resume_file=)).
            progress_file = None if work_dir is None or fused else \
                os.path.join(work_dir, f"surrogate-part{k}.pt.progress")
            progress_key = None if progress_file is None else \
                _surrogate_key(config, kept_epochs, seed, part, sview, plan, held)
            result = train(model, fit_view, config=run_config, seed=seed * 1000 + k, device=device,
                           checkpoint_epochs=kept_epochs, callbacks=callbacks,
                           stop_after=None if plan.anneal else epochs_trained,
                           loss_fn=loss_fn,
                           num_workers=num_workers, progress=progress,
                           desc=f"surrogate{'' if partitions == 1 else f' {k + 1}/{partitions}'}",
                           resume_file=progress_file, resume_key=progress_key)
            run.surrogate_seconds += result.train_seconds
            run.recorded_seconds += result.callback_seconds
            run.cpu["surrogate"] += result.train_cpu_seconds
            run.cpu["recorded"] += result.callback_cpu_seconds
            presentations += result.samples_seen
            run.surrogates.append(result)
            cks = result.checkpoints
            history = recorder.history() if recorder else None
            if work_dir is not None and not fused:
                _save_surrogate(work_dir, k, config, kept_epochs, seed, part, sview, plan, cks, history, result, held)
                if rank() == 0 and os.path.exists(progress_file):
                    os.remove(progress_file)             # the finished surrogate replaces its progress
        judged_cks = cks or []
        if probes:                            # the probes are judged, not scored
            scored = set(ck_epochs)
            cks = [c for c in cks if c.epoch in scored]
        run.checkpoints.append(cks or [])
        run.histories.append(history)
        # Where to read the label evidence and whether it is credible: judged once per part, and charged to
        # every method that reads it (each would pay it alone).
        report, judged = None, (0.0, 0.0)
        if any(s.name in evidence_for for s in specs):
            t0, c0 = time.perf_counter(), time.process_time()
            report = judge(template, judged_cks, sview, held=held, batch_size=batch_size, device=device,
                           num_workers=num_workers, trend=plan.judges_trend, given=checkpoints is not None)
            judged = (time.perf_counter() - t0, time.process_time() - c0)
            if plan.neighbours and any(plan.reads_features("evidence_features" in s.options) for s in specs
                                       if s.name in evidence_for):
                report["neighbours"] = plan.neighbours     # the policy mixes them into the label evidence
            run.evidence.append(report)
        for s in specs:
            t0, c0 = time.perf_counter(), time.process_time()
            ev_report = report if s.name in evidence_for else None
            if s.name in fused:
                part_scores, part_aux = fused[s.name].result()
                if ev_report is not None:      # the training pass's outputs are not the validated evidence
                    part_aux = {**part_aux, **label_evidence(template, cks or [], sview, report=ev_report,
                                                             batch_size=batch_size, device=device,
                                                             num_workers=num_workers)[0]}
            else:
                common = dict(batch_size=batch_size, device=device, progress=progress, num_workers=num_workers,
                              seed=seed * 1000 + k)
                if s.history:
                    common["history"] = history
                if work_dir is not None:
                    common["work_dir"] = os.path.join(work_dir, f"{s.name}-part{k}")
                part_scores, part_aux = scores_with_evidence(s, template, cks or [], sview, report=ev_report,
                                                             options=options.get(s.name),
                                                             with_features=plan.reads_features(
                                                                 "evidence_features" in s.options),
                                                             evidence_checkpoints=judged_cks, **common)
            for key, arr in part_aux.items():
                arr = np.asarray(arr)
                run.aux.setdefault(s.name, {}).setdefault(
                    key, np.zeros((len(dataset),) + arr.shape[1:], dtype=arr.dtype))[part] = arr
            if part_scores.shape != (len(view),):
                raise RuntimeError(f"method {s.name!r} returned shape {part_scores.shape}, expected ({len(view)},)")
            scores[s.name][part] = part_scores
            extra = judged if ev_report is not None else (0.0, 0.0)
            seconds[s.name] += time.perf_counter() - t0 + extra[0]
            run.cpu["scoring"][s.name] = run.cpu["scoring"].get(s.name, 0.0) + time.process_time() - c0 + extra[1]
        # The feature space judges too, where a judgment asks for it: a surrogate of the whole schedule mixes in its
        # neighbour labels where the label noise it finds is a systematic flip or its features have not memorised
        # the labels (judge_neighbour_mix); one whose probabilities were not credible may let them judge instead
        # (judge_neighbours). The neighbour labels are formed from the features: only where they were recorded.
        readers = [s.name for s in specs
                   if s.name in evidence_for and {"features", "probs"} <= set(run.aux.get(s.name, {}))]
        mixes = report is not None and report.get("credible") and plan.judges_trend and not report.get("neighbours")
        alone = report is not None and report.get("credible") is False and report.get("neighbours")
        if (mixes or alone) and len(held) and readers:
            t0, c0 = time.perf_counter(), time.process_time()
            aux, labels = run.aux[readers[0]], get_targets(sview)
            if mixes:
                judge_neighbour_mix(aux["probs"][part], aux["features"][part], labels, held, report,
                                    mix=NEIGHBOURS_MIX, seed=seed * 1000 + k)
            else:
                judge_neighbours(aux["features"][part], labels, held, report)
            for name in readers:                   # charged like the judge: each reader would pay it alone
                seconds[name] += time.perf_counter() - t0
                run.cpu["scoring"][name] += time.process_time() - c0
    if presentations:
        run.full_seconds_estimate = run.surrogate_seconds / presentations * config.epochs * len(dataset)
        run.cpu["full_estimate"] = run.cpu["surrogate"] / presentations * config.epochs * len(dataset)
    return run


def scores_with_evidence(spec, model, checkpoints, dataset, *, report=None, options=None, with_features=True,
                         evidence_checkpoints=None, **common):
    """``(scores, aux)`` of one method, with the label evidence where ``report`` (from
    :func:`dataprune.evidence.judge`) asks for it: a class-wise method reads the probabilities at the judged
    checkpoints in its own scoring pass (``evidence_epochs=``); any other pays one eval pass per checkpoint
    read (:func:`dataprune.evidence.label_evidence`). The pipeline and ``dp.prune`` with given checkpoints
    both score through this. ``evidence_checkpoints``: the checkpoints the judge read (default
    ``checkpoints``), which may include probes before the scored ones."""
    options = dict(options or {})
    evidence_checkpoints = checkpoints if evidence_checkpoints is None else evidence_checkpoints
    scored_epochs = {c.epoch for c in as_checkpoints(checkpoints)} if checkpoints else set()
    # A method reads the evidence in its own scoring pass only where the judged epochs are scored ones.
    reads_itself = "evidence_epochs" in spec.options and \
        (report is None or set(report["evidence_epochs"]) <= scored_epochs)
    if report is not None and reads_itself:
        options["evidence_epochs"] = report["evidence_epochs"]
    # The features come from the scoring pass where it computes them anyway (the closed-form head pass).
    if report is not None and with_features and "evidence_features" in spec.options:
        options["evidence_features"] = True
    scores, aux = call_method(spec, model, checkpoints, dataset, options=options, return_aux=True, **common)
    passes = dict(batch_size=common.get("batch_size", 512), device=common.get("device"),
                  num_workers=common.get("num_workers", 0))
    if report is not None and not reads_itself:
        aux = {**aux, **label_evidence(model, evidence_checkpoints, dataset, report=report, **passes)[0]}
    if report is not None and with_features and "features" not in aux:
        aux = {**aux, "features": evidence_features(model, checkpoints, dataset, **passes)}
    return scores, aux


def _surrogate_key(config, checkpoint_epochs, seed, part, dataset, plan, held=()):
    from .io import dataset_fingerprint

    def digest(a):
        return hashlib.sha256(np.asarray(a, dtype=np.int64).tobytes()).hexdigest()[:16]

    # (as JSON reads it back: the form saved with a surrogate or its progress, compared with ==)
    return json.loads(json.dumps({
        "recipe": {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
                   for k, v in config.__dict__.items()},
        "checkpoint_epochs": [int(e) for e in checkpoint_epochs],
        "seed": seed, "part": digest(part), "held_out": digest(held),
        # (a plan without annealing keys as before the field existed: earlier saved surrogates still match)
        "plan": {f: v for f, v in asdict(plan).items() if f != "anneal" or v},
        "fingerprint": dataset_fingerprint(dataset)}))


def _saved_surrogate(work_dir, k, config, checkpoint_epochs, seed, part, dataset, plan, held=()):
    """Checkpoints (and training record) of a surrogate an earlier run trained with the same settings."""
    from . import distributed as dist
    from .trajectory import load_checkpoints

    path = os.path.join(work_dir, f"surrogate-part{k}.pt")
    found = None
    if dist.rank() == 0 and os.path.isfile(path):
        try:
            cks, meta = load_checkpoints(path)
            want = _surrogate_key(config, checkpoint_epochs, seed, part, dataset, plan, held)
            if meta.get("key") == want:
                history = _load_history(path + ".history.npz") if meta.get("history") else None
                if meta.get("history") and history is None:
                    raise ValueError("its training record is missing or damaged")
                if "train_seconds" not in meta or "samples_seen" not in meta:
                    raise ValueError("its training time is not recorded, so its cost would be unknown")
                # A time that was not recorded is not zero: CPU times fall back to the wall times.
                times = {k: meta[k] for k in ("train_seconds", "callback_seconds", "train_cpu_seconds",
                                              "callback_cpu_seconds") if k in meta}
                times.setdefault("callback_seconds", 0.0)
                found = (cks, history, times, meta["samples_seen"])
        except ValueError as exc:
            warnings.warn(f"the saved surrogate {path} cannot be used ({exc}); training it again",
                          RuntimeWarning, stacklevel=3)
            found = None
    return dist.broadcast_object(found)


def _save_surrogate(work_dir, k, config, checkpoint_epochs, seed, part, dataset, plan, cks, history, result, held=()):
    from . import distributed as dist
    from .io import write_bytes
    from .trajectory import save_checkpoints

    if dist.rank() != 0:
        return
    path = os.path.join(work_dir, f"surrogate-part{k}.pt")
    key = _surrogate_key(config, checkpoint_epochs, seed, part, dataset, plan, held)
    if history is not None:
        import io as _io

        buf = _io.BytesIO()
        np.savez_compressed(buf, **history.arrays())
        write_bytes(path + ".history.npz", buf.getvalue(), overwrite=True)
    save_checkpoints(cks, path, overwrite=True,
                     meta={"key": key, "history": history is not None, "train_seconds": result.train_seconds,
                           "callback_seconds": result.callback_seconds, "train_cpu_seconds": result.train_cpu_seconds,
                           "callback_cpu_seconds": result.callback_cpu_seconds, "samples_seen": result.samples_seen})


def _load_history(path):
    from .methods.dynamics import History

    try:
        with np.load(path, allow_pickle=False) as z:
            return History(**{f: z[f] for f in History.__dataclass_fields__ if f in z.files})
    except (OSError, ValueError, KeyError):
        return None

