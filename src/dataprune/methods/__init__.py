"""Scoring methods by name. Every method is a function

    score(model, checkpoints, dataset, **options) -> ndarray (N,) float64, higher = keep

so one selector serves all. Methods that read the surrogate's training record (forgetting
events, margins, label probabilities at every presentation) take ``history=``, which the
pipeline records while it trains the surrogate. :func:`score` reaches every registered method
by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..grads.terms import TermOptions
from ..utils import logits_view, plain_module
from . import baseline, dual, dynamics, fused, geometry, gradnorm, moso, moso_variants, uncertainty
from .common import finalize

__all__ = ["MethodSpec", "METHODS", "get_method", "register", "method_names", "call_method", "score",
           "RECOMMENDED"]

# The name that always means the current recommended default (score + selection policy).
RECOMMENDED = "recommended"
_DATA_ARGS = ("model", "checkpoints", "dataset", "return_aux")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: Callable
    summary: str
    needs_checkpoints: bool = True
    defaults: dict = field(default_factory=dict)
    aux: bool = False                      # fn(..., return_aux=True) -> (scores, {name: (N, ...) array})
    policy: str | None = None              # the selection policy this method is meant to be used with
    history: str | None = None             # "required": reads the surrogate's training record (history=)
    fused: Callable | None = None          # (dataset, epochs) -> training callback with .result() -> (scores, aux)
    plan: dict | None = None               # the method's own surrogate plan (pipeline.Plan fields), e.g. DUAL's

    @property
    def options(self) -> tuple[str, ...]:
        """Every keyword option the method accepts (its own, plus the gradient options where it takes them)."""
        params = inspect.signature(self.fn).parameters
        own = [p for p, v in params.items() if p not in _DATA_ARGS and v.kind is not v.VAR_KEYWORD]
        extra = TermOptions.names() if any(v.kind is v.VAR_KEYWORD for v in params.values()) else ()
        return tuple(dict.fromkeys(own + list(extra)))

    def check_options(self, options: dict) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise TypeError(f"method {self.name!r} has no option(s) {unknown}; valid: {', '.join(self.options)}")


METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in METHODS:
        raise ValueError(f"method {spec.name!r} is already registered")
    METHODS[spec.name] = spec
    return spec


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def call_method(spec: MethodSpec, model, checkpoints, dataset, *, options: dict | None = None,
                return_aux: bool = False, **common):
    """Call a method with its defaults, the user's ``options`` (checked) and those of the ``common``
    keywords (batch_size, device, seed, ...) it accepts. Returns scores, or ``(scores, aux)``."""
    options = dict(options or {})
    spec.check_options(options)
    kwargs = {k: v for k, v in common.items() if k in spec.options}
    kwargs.update(spec.defaults)
    kwargs.update(options)
    model = plain_module(model)
    with logits_view(model):
        if spec.aux:
            scores, extra = spec.fn(model, checkpoints, dataset, return_aux=True, **kwargs)
        else:
            scores, extra = spec.fn(model, checkpoints, dataset, **kwargs), {}
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(dataset),):
        raise RuntimeError(f"method {spec.name!r} returned shape {scores.shape}, expected ({len(dataset)},)")
    scores = finalize(scores, [], method=spec.name)
    return (scores, extra) if return_aux else scores


def score(model, checkpoints, dataset, *, method: str = RECOMMENDED, return_aux: bool = False, **options):
    """Scores of any registered method by name, shape ``(N,)`` float64, higher = keep. The default
    method is the one ``dp.prune`` and ``dataprune score`` use (``"recommended"``).

    ``options`` are the method's own (``dataprune list`` or ``METHODS[name].options``). Methods
    recorded during training (forgetting, AUM, ...) fall back to the given checkpoints.
    ``return_aux=True`` also returns the per-sample evidence dict (empty for most methods).
    """
    return call_method(get_method(method), model, checkpoints, dataset, options=options, return_aux=return_aux)


register(MethodSpec("moso", moso.score, "MoSo, the authors' exact form over all parameters (Tan et al. 2023)"))
register(MethodSpec("moso_align", moso.score, "MoSo's first-order alignment sum_t lr_t gbar.g_i",
                    defaults={"form": "alignment"}))
register(MethodSpec("moso_last", moso.score, "MoSo over the classifier head only (closed form, fast)",
                    defaults={"params": "last_layer"}))
def _fused(dataset, epochs):
    return fused.FusedClasswise(dataset, epochs)


register(MethodSpec("moso_class", moso_variants.classwise_score,
                    "class-wise MoSo: alignment with the own class's mean gradient, self-term removed", aux=True,
                    fused=_fused))
register(MethodSpec("moso_norm", moso_variants.normalized_score,
                    "class-wise MoSo per unit gradient norm (direction, not size)", aux=True))
register(MethodSpec(RECOMMENDED, moso_variants.classwise_score,
                    "the recommended default: class-wise MoSo scores + the `auto` policy", aux=True, policy="auto",
                    fused=_fused))
register(MethodSpec("random", baseline.random_scores, "uniform random scores: a random subset",
                    needs_checkpoints=False))
register(MethodSpec("el2n", uncertainty.el2n_score, "EL2N, error L2-norm early in training (Paul et al. 2021)"))
register(MethodSpec("grand", gradnorm.grand_score,
                    "GraNd, per-sample gradient norm early in training (Paul et al. 2021)"))
register(MethodSpec("forgetting", dynamics.forgetting_score, "forgetting events during training (Toneva et al. 2019)",
                    history="required"))
register(MethodSpec("aum", dynamics.aum_score, "area under the margin, as -AUM (Pleiss et al. 2020)",
                    history="required"))
register(MethodSpec("dynunc", dynamics.dynunc_score, "dynamic uncertainty over training windows (He et al. 2023)",
                    history="required"))
register(MethodSpec("tdds", dynamics.tdds_score, "temporal dual-depth scoring (Zhang et al. 2024)", history="required"))
register(MethodSpec("dual", dual.dual_score, "DUAL: difficulty x uncertainty from early training only, with its "
                    "Beta sampling (Cho et al. 2025)", aux=True, history="required", policy="dual",
                    plan={"name": "dual", "segment": dual.SEGMENT, "min_epochs": dual.MIN_EPOCHS}))
register(MethodSpec("entropy", uncertainty.entropy_score, "predictive entropy at the last checkpoint"))
register(MethodSpec("least_confidence", uncertainty.least_confidence_score,
                    "1 - max probability at the last checkpoint"))
register(MethodSpec("margin", uncertainty.margin_score, "minus the top-2 probability margin at the last checkpoint"))
register(MethodSpec("herding", geometry.herding_score, "herding order per class on embeddings (Welling 2009)"))
register(MethodSpec("kcenter", geometry.kcenter_score, "k-center greedy order per class (Sener & Savarese 2018)"))
register(MethodSpec("moderate", geometry.moderate_score,
                    "Moderate-DS: distance to class mean near its median (Xia et al. 2023)"))
register(MethodSpec("ssp", geometry.ssp_score, "distance to class k-means prototypes (Sorscher et al. 2022)"))
