"""Scoring methods by name. Every method is a function

    score(model, checkpoints, dataset, **options) -> ndarray (N,) float64, higher = keep

so one selector serves all. Methods that need more than checkpoints (forgetting events
counted during training, say) also provide a training callback; the pipeline attaches it
when it trains the surrogate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import baseline, moso

__all__ = ["MethodSpec", "METHODS", "get_method", "register", "method_names"]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: Callable
    summary: str
    callback: Callable | None = None       # (dataset, checkpoint_epochs, **options) -> callback
    needs_checkpoints: bool = True
    defaults: dict = field(default_factory=dict)


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
register(MethodSpec("random", baseline.random_scores, "uniform random scores: a random subset",
                    needs_checkpoints=False))
