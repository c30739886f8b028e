"""Scoring methods by name. Every method is a function

    score(model, checkpoints, dataset, **options) -> ndarray (N,) float64, higher = keep

so one selector serves all. Methods that need more than checkpoints (forgetting events
counted during training, say) also provide a training callback; the pipeline attaches it
when it trains the surrogate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import baseline, dynamics, geometry, gradnorm, moso, moso_variants, uncertainty

__all__ = ["MethodSpec", "METHODS", "get_method", "register", "method_names"]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: Callable
    summary: str
    callback: Callable | None = None       # (dataset, checkpoint_epochs, **options) -> callback
    needs_checkpoints: bool = True
    defaults: dict = field(default_factory=dict)
    aux: bool = False                      # fn(..., return_aux=True) -> (scores, {name: (N,) array})


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


register(MethodSpec("moso", moso.score, "MoSo, the authors' exact form over all parameters (Tan et al. 2023)"))
register(MethodSpec("moso_align", moso.score, "MoSo's first-order alignment sum_t lr_t gbar.g_i",
                    defaults={"form": "alignment"}))
register(MethodSpec("moso_last", moso.score, "MoSo over the classifier head only (closed form, fast)",
                    defaults={"params": "last_layer"}))
register(MethodSpec("moso_class", moso_variants.classwise_score,
                    "class-wise MoSo: alignment with the own class's mean gradient, self-term removed", aux=True))
register(MethodSpec("moso_norm", moso_variants.normalized_score,
                    "class-wise MoSo per unit gradient norm (direction, not size)", aux=True))
register(MethodSpec("random", baseline.random_scores, "uniform random scores: a random subset",
                    needs_checkpoints=False))
register(MethodSpec("el2n", uncertainty.el2n_score, "EL2N, error L2-norm early in training (Paul et al. 2021)"))
register(MethodSpec("grand", gradnorm.grand_score, "GraNd, per-sample gradient norm early in training (Paul et al. 2021)"))


def _recorded(fn):
    return lambda dataset, checkpoint_epochs, **options: dynamics.HistoryCallback(fn, dataset, **options)


register(MethodSpec("forgetting", dynamics.forgetting_score, "forgetting events during training (Toneva et al. 2019)",
                    callback=_recorded(dynamics.forgetting_score)))
register(MethodSpec("aum", dynamics.aum_score, "area under the margin, as -AUM (Pleiss et al. 2020)",
                    callback=_recorded(dynamics.aum_score)))
register(MethodSpec("dynunc", dynamics.dynunc_score, "dynamic uncertainty over training windows (He et al. 2023)",
                    callback=_recorded(dynamics.dynunc_score)))
register(MethodSpec("tdds", dynamics.tdds_score, "temporal dual-depth scoring (Zhang et al. 2024)",
                    callback=_recorded(dynamics.tdds_score)))
register(MethodSpec("entropy", uncertainty.entropy_score, "predictive entropy at the last checkpoint"))
register(MethodSpec("least_confidence", uncertainty.least_confidence_score, "1 - max probability at the last checkpoint"))
register(MethodSpec("margin", uncertainty.margin_score, "minus the top-2 probability margin at the last checkpoint"))
register(MethodSpec("herding", geometry.herding_score, "herding order per class on embeddings (Welling 2009)"))
register(MethodSpec("kcenter", geometry.kcenter_score, "k-center greedy order per class (Sener & Savarese 2018)"))
register(MethodSpec("moderate", geometry.moderate_score, "Moderate-DS: distance to class mean near its median (Xia et al. 2023)"))
register(MethodSpec("ssp", geometry.ssp_score, "distance to class k-means prototypes (Sorscher et al. 2022)"))
