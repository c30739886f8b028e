"""One checkpoint's per-sample terms over a whole dataset: the engine under every MoSo-family score.

:func:`checkpoint_terms` computes, at the model's current weights, the mean gradient (per
group, e.g. per class) and every sample's ``g_i . gbar`` and ``||g_i||^2``, in two streaming
passes; the last-layer closed form needs one. Under torch.distributed each rank takes a
contiguous block and the results are gathered in dataset order on every rank.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from .. import distributed as dist
from ..data import iter_batches
from ..utils import model_dtype, resolve_device
from .capture import ParamSelection, select_params
from .engine import BACKENDS, NonFiniteLossWarning, cross_entropy, gradient_sum, per_sample_terms
from .lastlayer import CACHE_MB, last_layer_terms

ACCUMULATE = {"float64": torch.float64, "float32": torch.float32}
# Scoring over all parameters with groups (class-wise MoSo) keeps one mean gradient per group: the sums in the
# accumulation dtype, divided in place into the means, and their copy in the model's dtype for the per-sample dot
# products. At most this share of the free memory may go to them (the passes need the rest).
MEMORY_SHARE = 0.8


class ScoringMemoryError(MemoryError):
    """Class-wise scoring over all parameters would not fit: one mean gradient per class."""


def available_memory(device) -> int | None:
    """Bytes free for new tensors on ``device``: CUDA's free memory, else the host's ``MemAvailable`` (Linux);
    None where it cannot be read."""
    device = resolve_device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def group_means_bytes(num_groups: int, num_params: int, *, accumulate=torch.float64,
                      model_dtype=torch.float32) -> int:
    """Bytes of the per-group mean gradients over ``num_params`` parameters (see :data:`MEMORY_SHARE`)."""
    acc = torch.finfo(accumulate).bits // 8
    own = torch.finfo(model_dtype).bits // 8
    return num_groups * num_params * (acc + (own if model_dtype != accumulate else 0))


def group_means_excess(num_groups: int, num_params: int, device, *, accumulate=torch.float64,
                       model_dtype=torch.float32) -> tuple[int, int] | None:
    """``(bytes needed, bytes free)`` where the per-group mean gradients would take more than :data:`MEMORY_SHARE`
    of the free memory on ``device``; None where they fit (or the free memory cannot be read)."""
    need = group_means_bytes(num_groups, num_params, accumulate=accumulate, model_dtype=model_dtype)
    free = available_memory(device)
    return (need, free) if free is not None and need > MEMORY_SHARE * free else None


def check_group_memory(num_groups: int, num_params: int, device, *, accumulate=torch.float64,
                       model_dtype=torch.float32) -> None:
    """A :class:`ScoringMemoryError` saying what to do where the per-group mean gradients would take more than
    :data:`MEMORY_SHARE` of the free memory (ImageNet-1k: 1,000 classes x 25.6M ResNet-50 parameters x 12 bytes
    = 307 GB), instead of an out-of-memory error part way through."""
    excess = group_means_excess(num_groups, num_params, device, accumulate=accumulate, model_dtype=model_dtype)
    if excess is not None:
        need, free = excess
        raise ScoringMemoryError(
            f"class-wise scoring over all parameters keeps one mean gradient per class: {num_groups:,} classes x "
            f"{num_params:,} parameters = {need / 2 ** 30:.1f} GiB, more than {MEMORY_SHARE:.0%} of the "
            f"{free / 2 ** 30:.1f} GiB free on {resolve_device(device)}. Score the classifier head instead "
            "(params='last_layer'; dp.prune, `dataprune prune` and `dataprune score` switch to the head plan "
            "themselves when no budget or params is given), or accumulate in float32 (accumulate='float32')")


@dataclass(frozen=True)
class TermOptions:
    """How the per-sample terms are computed; shared by every gradient-based score.

    batch_size : samples per batch of the scoring passes.
    device : where to compute (default: CUDA when available).
    params : "all" | "last_layer" | list of parameter names or modules.
    loss_fn : ``(logits, targets) -> (B,)`` per-sample losses (default cross-entropy).
    backend : "hooks" (per-layer kernels) | "functorch" (vmap, any model) | "jvp" (dots only).
    accumulate : "float64" | "float32", precision of the mean-gradient accumulation.
    num_workers : DataLoader workers for datasets without ``get_batch``.
    progress : show progress bars.
    cache_mb : last-layer mode keeps N x (D + C + 1) numbers to need one forward pass per
        checkpoint when they fit in this budget (MB), else runs the forward twice.
    kernels : per-call overrides of the kernel registry, ``{module type: kernel}``.
    """

    batch_size: int = 256
    device: Any = None
    params: Any = "all"
    loss_fn: Callable | None = None
    backend: str = "hooks"
    accumulate: str = "float64"
    num_workers: int = 0
    progress: bool = False
    cache_mb: float = CACHE_MB
    kernels: dict | None = None

    def __post_init__(self):
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) \
                or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.accumulate not in ACCUMULATE:
            raise ValueError(f"accumulate must be one of {list(ACCUMULATE)}, got {self.accumulate!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not self.cache_mb >= 0:
            raise ValueError(f"cache_mb must be >= 0, got {self.cache_mb}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, (int, np.integer)) \
                or self.num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")
        if isinstance(self.params, str) and self.params not in ("all", "last_layer"):
            raise ValueError(f"params must be 'all', 'last_layer' or a list of names/modules, got {self.params!r}")
        if self.loss_fn is not None and not callable(self.loss_fn):
            raise TypeError(f"loss_fn must be a callable (logits, targets) -> per-sample losses, got "
                            f"{self.loss_fn!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_kwargs(cls, options: dict, *, what: str = "scoring") -> TermOptions:
        """Build from keyword options; an unknown name is a ``TypeError`` that lists the valid ones."""
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise TypeError(f"{what} got unknown option(s) {unknown}; valid: {', '.join(cls.names())}")
        return cls(**options)

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    @property
    def loss(self) -> Callable:
        return self.loss_fn or cross_entropy

    @property
    def acc_dtype(self) -> torch.dtype:
        return ACCUMULATE[self.accumulate]


@dataclass
class CheckpointTerms:
    """Per-sample terms at one checkpoint, aligned with the dataset.

    ``dot`` (N,) ``g_i . gbar_{group(i)}``; ``sq`` (N,) ``||g_i||^2`` or None; ``gbar_sq`` (G,)
    squared norms of the group mean gradients; ``counts`` (G,) samples with a finite loss per
    group; ``bad`` dataset positions whose loss was not finite (NaN in ``dot``/``sq``); ``probs``
    (N, C) float32 softmax outputs at these weights when asked for; ``features`` (N, D') float32 penultimate
    features (projected to at most ``need_features`` columns) where the pass computes them anyway (the
    closed-form head pass) and they were asked for, else None.
    """

    dot: np.ndarray
    sq: np.ndarray | None
    gbar_sq: np.ndarray
    counts: np.ndarray
    bad: list = field(default_factory=list)
    probs: np.ndarray | None = None
    features: np.ndarray | None = None

    def to_arrays(self) -> dict:
        """Plain arrays (for a resumable partial-results file)."""
        out = {"dot": self.dot, "sq": self.sq if self.sq is not None else np.zeros(0),
               "gbar_sq": self.gbar_sq, "counts": self.counts, "bad": np.asarray(self.bad, dtype=np.int64)}
        if self.probs is not None:
            out["probs"] = self.probs
        if self.features is not None:
            out["features"] = self.features
        return out

    @classmethod
    def from_arrays(cls, arrays: dict) -> CheckpointTerms:
        sq = np.asarray(arrays["sq"])
        return cls(np.asarray(arrays["dot"]), sq if sq.size or not len(arrays["dot"]) else None,
                   np.asarray(arrays["gbar_sq"]), np.asarray(arrays["counts"]),
                   np.asarray(arrays["bad"]).astype(np.int64).tolist(),
                   np.asarray(arrays["probs"]) if "probs" in arrays else None,
                   np.asarray(arrays["features"]) if "features" in arrays else None)


def example_batch(dataset, device, dtype) -> torch.Tensor:
    """The inputs of the first two samples (to trace a model once, e.g. to find its head)."""
    for _, x, _ in iter_batches(dataset, [0, min(1, len(dataset) - 1)], 2, device=device, dtype=dtype):
        return x
    raise ValueError("the dataset is empty")


def checkpoint_terms(work: torch.nn.Module, dataset, options: TermOptions, *, need_sq: bool = True,
                     need_probs: bool = False, groups: np.ndarray | None = None, num_groups: int = 1,
                     order: np.ndarray | None = None, desc: str = "",
                     need_features: int | None = None) -> CheckpointTerms:
    """Mean gradient(s) and per-sample ``g_i . gbar`` and ``||g_i||^2`` at the model's current weights.

    ``work`` must be in eval mode. With ``groups`` (one group id per dataset position) the mean
    is taken per group and each sample is dotted with its own group's mean. ``order`` is the
    order in which samples are batched (e.g. sorted by group, so every batch holds one group).
    """
    n = len(dataset)
    device = options.torch_device
    start, stop = dist.shard_range(n)
    local = np.arange(start, stop) if order is None else order[(order >= start) & (order < stop)]
    dtype = model_dtype(work)
    if options.params == "last_layer" and options.backend == "hooks":
        sel = select_params(work, "last_layer", example=example_batch(dataset, device, dtype))
        (head, names), = sel.modules.items()
        if isinstance(head, torch.nn.Linear):
            return _last_layer(work, head, names, dataset, local, options, need_sq, need_probs, groups,
                               num_groups, n, desc, need_features)
    sel = options.params if isinstance(options.params, ParamSelection) else \
        select_params(work, options.params, example=example_batch(dataset, device, dtype))
    common = dict(loss_fn=options.loss, batch_size=options.batch_size, device=device,
                  num_workers=options.num_workers, progress=options.progress)
    if num_groups > 1:
        check_group_memory(num_groups, sum(p.numel() for p in sel.params), device, accumulate=options.acc_dtype,
                           model_dtype=dtype)
    # Pass 1: the (group) gradient sums, by ordinary batched backward passes.
    sums, counts, bad = gradient_sum(work, dataset, local, sel, groups=groups, num_groups=num_groups,
                                     dtype=options.acc_dtype, desc=f"{desc} mean gradient", **common)
    counts_t = torch.as_tensor(counts, dtype=options.acc_dtype, device=device)
    dist.all_reduce_sum_(list(sums.values()) + [counts_t])
    counts = counts_t.cpu().numpy().round().astype(np.int64)
    # (in place: the sums are not read again, and at one mean gradient per class a second copy is what runs out)
    means = {k: v.div_(counts_t.clamp_min(1).view((-1,) + (1,) * (v.dim() - 1))) for k, v in sums.items()}
    vectors = {k: v.to(dtype) for k, v in means.items()}
    # Pass 2: per-sample squared norms and dot products with the (group) mean gradient.
    terms = per_sample_terms(work, dataset, local, sel, vectors=vectors, groups=groups, need_sq=need_sq,
                             need_dot=True, backend=options.backend, desc=f"{desc} per-sample",
                             kernels=options.kernels, need_probs=need_probs, **common)
    gbar_sq = sum((m.reshape(num_groups, -1) ** 2).sum(1) for m in means.values()).cpu().numpy()
    if options.backend == "hooks":
        _check_additivity(sel, means, counts_t, terms.layer_dot_sums, dtype)
    return _assemble(terms.dot, terms.sq, terms.probs, local, n, gbar_sq, counts, bad + terms.bad)


def _assemble(dot, sq, probs, local, n, gbar_sq, counts, bad, features=None) -> CheckpointTerms:
    # Reorder the local block to dataset order, then gather all blocks.
    pos = np.argsort(local, kind="stable")
    dot = dist.gather_blocks(dot[pos], n)
    sq = dist.gather_blocks(sq[pos], n) if sq is not None else None
    probs = dist.gather_blocks(probs[pos], n) if probs is not None else None
    features = dist.gather_blocks(features[pos], n) if features is not None else None
    bad = sorted(set().union(*dist.gather_objects({int(b) for b in bad})))
    return CheckpointTerms(dot, sq, np.asarray(gbar_sq, dtype=np.float64), np.asarray(counts), bad, probs, features)


def _last_layer(work, head, names, dataset, local, options, need_sq, need_probs, groups, num_groups, n, desc,
                need_features=None):
    res = last_layer_terms(work, head, dataset, local, names=names, loss_fn=options.loss, groups=groups,
                           num_groups=num_groups, need_sq=need_sq, need_dot=True, need_probs=need_probs,
                           batch_size=options.batch_size, device=options.torch_device, dtype=options.acc_dtype,
                           cache_mb=options.cache_mb, num_workers=options.num_workers, progress=options.progress,
                           reduce_fn=dist.all_reduce_sum_, desc=f"{desc} last layer", feature_dims=need_features)
    gbar_sq = res.gbar_sq
    if res.bad:
        warnings.warn(f"{len(res.bad)} sample(s) have a non-finite loss (dataset positions "
                      f"{res.bad[:20]}); they are left out of the sums", NonFiniteLossWarning, stacklevel=3)
    # The last-layer pass reads the samples in ``local`` order; undo it like the general path.
    return _assemble(res.dot, res.sq, res.probs, local, n, gbar_sq, res.counts, res.bad, res.features)


def _check_additivity(sel, means, counts_t, layer_sums, dtype):
    """Per-sample gradients must add up to the batch gradient, layer by layer.

    sum_i g_i . gbar_{group(i)} equals sum_g n_g ||gbar_g||^2 exactly; a layer whose
    parameters are used outside its own forward (e.g. ``F.linear(x, self.fc.weight)`` in a
    parent) would break it silently, so it is checked on every checkpoint.
    """
    tol = 1e-3 if dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-8
    modules = list(sel.modules.items())
    got = torch.tensor([layer_sums.get(m, (0.0, 0.0))[0] for m, _ in modules], dtype=torch.float64)
    scale = torch.tensor([layer_sums.get(m, (0.0, 0.0))[1] for m, _ in modules], dtype=torch.float64)
    dist.all_reduce_sum_([got, scale])
    bad = []
    for (module, names), g, s in zip(modules, got.tolist(), scale.tolist(), strict=True):
        expected = 0.0
        for local_name in names:
            m = means[sel.qualified[(id(module), local_name)]]
            expected += float((counts_t.view((-1,) + (1,) * (m.dim() - 1)) * m.double() ** 2).sum())
        if abs(g - expected) > tol * (s + abs(expected)) + 1e-30:
            bad.append(f"{type(module).__name__} ({', '.join(names)}): per-sample sum {g:.6g} vs {expected:.6g}")
    if bad:
        raise RuntimeError("per-sample gradients do not add up to the batch gradient for "
                           + "; ".join(bad) + ". These parameters are probably used outside their module's "
                           "forward (or the model is not per-sample separable); use backend='functorch'.")
