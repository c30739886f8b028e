"""MoSo: moving-one-sample-out (Tan et al., "Data Pruning via Moving-one-Sample-out",
NeurIPS 2023).

A sample's score approximates how much the optimal empirical risk of the rest of the
training set changes when it is left out, to first order along a training trajectory.
With ``g_i`` the per-sample gradient at checkpoint ``t`` (learning rate ``eta_t``) and
``gbar`` the mean gradient over the N scored samples::

    M(z_i) = sum_t eta_t [(2N-3)||gbar||^2 - ||g_i||^2 + (2N-4)(gbar.g_i - ||g_i||^2/N)] / (N-1)^2

(``form="exact"``, the form the method's authors ran), or the plain first-order
alignment ``sum_t eta_t gbar.g_i`` (``form="alignment"``). Higher = keep: samples whose
gradient agrees with the set's are kept, outliers and mislabelled samples go first.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch

from .. import distributed as dist
from ..grads import (NonFiniteLossWarning, cross_entropy, gradient_sum, last_layer_terms, per_sample_terms,
                     select_params)
from ..grads.capture import ParamSelection
from ..trajectory import as_checkpoints, load_state
from ..utils import model_dtype, resolve_device
from ..data import iter_batches

FORMS = ("exact", "alignment")
ACCUMULATE = {"float64": torch.float64, "float32": torch.float32}


def exact_terms(dot: np.ndarray, sq: np.ndarray, gbar_sq: float, n: int) -> np.ndarray:
    """The authors' per-checkpoint expression (before the learning-rate weight)."""
    return ((2 * n - 3) * gbar_sq - sq + (2 * n - 4) * (dot - sq / n)) / (n - 1) ** 2


def _example(dataset, device, dtype):
    for _, x, _ in iter_batches(dataset, [0, min(1, len(dataset) - 1)], 2, device=device, dtype=dtype):
        return x


class _Config:
    def __init__(self, *, batch_size, device, params, loss_fn, backend, accumulate, num_workers, progress,
                 cache_mb):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if accumulate not in ACCUMULATE:
            raise ValueError(f"accumulate must be one of {list(ACCUMULATE)}, got {accumulate!r}")
        if backend not in ("hooks", "functorch", "jvp"):
            raise ValueError(f"backend must be 'hooks', 'functorch' or 'jvp', got {backend!r}")
        self.batch_size, self.params, self.backend = batch_size, params, backend
        self.device = resolve_device(device)
        self.loss_fn = loss_fn or cross_entropy
        self.acc_dtype = ACCUMULATE[accumulate]
        self.num_workers, self.progress, self.cache_mb = num_workers, progress, cache_mb


def prepare_model(model: torch.nn.Module, device) -> torch.nn.Module:
    """A private eval-mode copy: scoring never changes the caller's model."""
    return copy.deepcopy(model).to(device).eval()


def checkpoint_terms(work: torch.nn.Module, dataset, cfg: _Config, *, need_sq: bool = True,
                     groups: np.ndarray | None = None, num_groups: int = 1, order: np.ndarray | None = None,
                     desc: str = "") -> dict:
    """Mean gradient(s) and per-sample ``g_i . gbar`` and ``||g_i||^2`` at the model's current weights.

    Returns ``dot``/``sq`` (float64, aligned with the dataset), ``gbar_sq`` (G,), ``counts``
    (G,) and ``bad`` (positions with a non-finite loss). With ``groups`` the mean is taken
    per group and each sample is dotted with its own group's mean. Under torch.distributed
    each rank scores a contiguous block; results are gathered on every rank.
    """
    n = len(dataset)
    start, stop = dist.shard_range(n)
    local = np.arange(start, stop) if order is None else order[(order >= start) & (order < stop)]
    dtype = model_dtype(work)
    if cfg.params == "last_layer" and cfg.backend == "hooks":
        sel = select_params(work, "last_layer", example=_example(dataset, cfg.device, dtype))
        (head, names), = sel.modules.items()
        if isinstance(head, torch.nn.Linear):
            return _last_layer(work, head, names, dataset, local, cfg, need_sq, groups, num_groups, n, desc)
    sel = cfg.params if isinstance(cfg.params, ParamSelection) else \
        select_params(work, cfg.params, example=_example(dataset, cfg.device, dtype))
    common = dict(loss_fn=cfg.loss_fn, batch_size=cfg.batch_size, device=cfg.device,
                  num_workers=cfg.num_workers, progress=cfg.progress)
    # Pass 1: the (group) gradient sums, by ordinary batched backward passes.
    sums, counts, bad = gradient_sum(work, dataset, local, sel, groups=groups, num_groups=num_groups,
                                     dtype=cfg.acc_dtype, desc=f"{desc} mean gradient", **common)
    counts_t = torch.as_tensor(counts, dtype=cfg.acc_dtype, device=cfg.device)
    dist.all_reduce_sum_(list(sums.values()) + [counts_t])
    counts = counts_t.cpu().numpy().round().astype(np.int64)
    means = {k: v / counts_t.clamp_min(1).view((-1,) + (1,) * (v.dim() - 1)) for k, v in sums.items()}
    vectors = {k: v.to(dtype) for k, v in means.items()}
    # Pass 2: per-sample squared norms and dot products with the (group) mean gradient.
    terms = per_sample_terms(work, dataset, local, sel, vectors=vectors, groups=groups, need_sq=need_sq,
                             need_dot=True, backend=cfg.backend, desc=f"{desc} per-sample", **common)
    gbar_sq = sum((m.reshape(num_groups, -1) ** 2).sum(1) for m in means.values()).cpu().numpy()
    if cfg.backend == "hooks":
        _check_additivity(sel, means, counts_t, terms["layer_dot_sums"], dtype)
    return _assemble(terms["dot"], terms["sq"], local, n, gbar_sq, counts, bad + terms["bad"], order)


def _assemble(dot, sq, local, n, gbar_sq, counts, bad, order):
    # Reorder the local block to dataset order, then gather all blocks.
    pos = np.argsort(local, kind="stable")
    dot = dist.gather_blocks(dot[pos], n)
    sq = dist.gather_blocks(sq[pos], n) if sq is not None else None
    bad = sorted(set().union(*dist.gather_objects({int(b) for b in bad})))
    return {"dot": dot, "sq": sq, "gbar_sq": np.asarray(gbar_sq, dtype=np.float64),
            "counts": np.asarray(counts), "bad": bad}


def _last_layer(work, head, names, dataset, local, cfg, need_sq, groups, num_groups, n, desc):
    res = last_layer_terms(work, head, dataset, local, names=names, loss_fn=cfg.loss_fn, groups=groups,
                           num_groups=num_groups, need_sq=need_sq, need_dot=True, batch_size=cfg.batch_size,
                           device=cfg.device, dtype=cfg.acc_dtype, cache_mb=cfg.cache_mb,
                           num_workers=cfg.num_workers, progress=cfg.progress,
                           reduce_fn=dist.all_reduce_sum_, desc=f"{desc} last layer")
    counts = res["counts"]
    gbar_sq = np.zeros(num_groups)
    for total in res["sums"].values():
        m = total.double().cpu().numpy() / np.maximum(counts, 1).reshape((-1,) + (1,) * (total.dim() - 1))
        gbar_sq += (m.reshape(num_groups, -1) ** 2).sum(1)
    if res["bad"]:
        warnings.warn(f"{len(res['bad'])} sample(s) have a non-finite loss (dataset positions "
                      f"{res['bad'][:20]}); they are left out of the sums", NonFiniteLossWarning, stacklevel=3)
    return _assemble(res["dot"], res["sq"], local, n, gbar_sq, counts, res["bad"], None)


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
    for (module, names), g, s in zip(modules, got.tolist(), scale.tolist()):
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


def combine(terms: dict, lr: float, form: str) -> np.ndarray:
    """One checkpoint's contribution ``eta_t * (...)`` to the MoSo score."""
    n = int(terms["counts"].sum())
    if form == "alignment":
        return lr * terms["dot"]
    if n < 2:
        raise ValueError(f"MoSo's exact form needs at least 2 samples with a finite loss, got {n}")
    return lr * exact_terms(terms["dot"], terms["sq"], float(terms["gbar_sq"][0]), n)


def score(model: torch.nn.Module, checkpoints, dataset, *, batch_size: int = 256, device=None,
          params="all", form: str = "exact", loss_fn=None, backend: str = "hooks",
          accumulate: str = "float64", num_workers: int = 0, progress: bool = False,
          cache_mb: float = 256, work_dir: str | None = None) -> np.ndarray:
    """MoSo scores, shape ``(N,)`` float64, **higher = keep**.

    Parameters
    ----------
    model : torch.nn.Module
        The architecture; each checkpoint's weights are loaded into a private copy (the
        caller's model is not modified). Scored in eval mode.
    checkpoints : iterable of ``(state_dict, learning_rate)`` pairs or :class:`Checkpoint`
    dataset : map-style Dataset yielding ``(input, integer_label)``
        Scored without augmentation, in index order.
    params : "all" | "last_layer" | list of parameter names or modules
        Parameters the gradients are taken over (default: all trainable ones).
        ``"last_layer"`` uses the closed form for the classifier head: one forward pass
        per checkpoint.
    form : "exact" | "alignment"
        The authors' leave-one-out expression, or ``sum_t eta_t gbar . g_i``.
    loss_fn : callable ``(logits, targets) -> (B,)``, default per-sample cross-entropy
    backend : "hooks" | "functorch" | "jvp"
        Per-layer kernels (default), vmap over the whole model (any model, more memory),
        or forward-mode dot products (``form="alignment"`` only).
    accumulate : "float64" | "float32"
        Precision of the mean-gradient accumulation.
    cache_mb : float
        Last-layer mode keeps N x (D + C + 1) numbers to need one forward pass per
        checkpoint when they fit in this budget, else runs the forward twice.
    work_dir : str, optional
        Folder for per-checkpoint partial results. A run that is killed and started again
        with the same arguments reuses every finished checkpoint (checked by checksum and
        by a key of the checkpoint's weights, the dataset fingerprint and the options).

    Returns
    -------
    scores : ndarray, shape (N,), float64
        Units: learning rate x squared gradient norm, summed over checkpoints. Samples
        whose loss is NaN/inf at some checkpoint get ``-inf`` (pruned first) and a
        :class:`NonFiniteLossWarning` names them.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if backend == "jvp" and form != "alignment":
        raise ValueError("backend='jvp' gives dot products only; use form='alignment' or backend='hooks'")
    key = {"method": "moso", "need_sq": form == "exact"}
    cks, cfg, work, store = setup_run(model, checkpoints, dataset, work_dir, key,
                                      batch_size=batch_size, device=device, params=params, loss_fn=loss_fn,
                                      backend=backend, accumulate=accumulate, num_workers=num_workers,
                                      progress=progress, cache_mb=cache_mb)
    total = np.zeros(len(dataset))
    bad: set[int] = set()
    for k, ck in enumerate(cks):
        terms = _resumable_terms(store, k, ck, lambda: _fresh_terms(work, ck, k, len(cks), dataset, cfg, form))
        bad |= set(int(b) for b in terms["bad"])
        total += np.nan_to_num(combine(terms, ck.lr, form), nan=0.0)
    if bad:
        total[sorted(bad)] = -np.inf
    return total


def setup_run(model, checkpoints, dataset, work_dir, key: dict, **config):
    """What every MoSo-family scorer starts with: checkpoints, a :class:`_Config`, a private
    copy of the model, and (with ``work_dir``) the :class:`~dataprune.io.PartStore` whose run
    key is ``key`` plus everything in the configuration that changes the terms."""
    cks = as_checkpoints(checkpoints)
    if len(dataset) < 2:
        raise ValueError(f"MoSo needs at least 2 samples, got {len(dataset)}")
    cfg = _Config(**config)
    work = prepare_model(model, cfg.device)
    store = None
    if work_dir is not None:
        from ..io import PartStore, dataset_fingerprint

        store = PartStore(work_dir, {**key, "params": repr(config["params"]),
                                     "loss": getattr(cfg.loss_fn, "__name__", repr(cfg.loss_fn)),
                                     "backend": config["backend"], "accumulate": config["accumulate"],
                                     "fingerprint": dataset_fingerprint(dataset)})
    return cks, cfg, work, store


def load_checkpoint(work, ck, k: int) -> None:
    """Checkpoint ``k``'s weights into the private model, in eval mode."""
    load_state(work, ck.state, what=f"checkpoint {k} (epoch {ck.epoch})")
    work.eval()


def _fresh_terms(work, ck, k, total, dataset, cfg, form):
    load_checkpoint(work, ck, k)
    return checkpoint_terms(work, dataset, cfg, need_sq=form == "exact", desc=f"ckpt {k + 1}/{total}")


def _resumable_terms(store, k, ck, compute):
    """A checkpoint's terms from the store when a valid copy is there, else computed and stored."""
    if store is None:
        return compute()
    from ..io import tensor_digest

    def fresh():
        t = dict(compute())
        t["sq"] = t["sq"] if t["sq"] is not None else np.zeros(0)
        t["bad"] = np.asarray(t["bad"], dtype=np.int64)
        return {key: np.asarray(v) for key, v in t.items()}

    unit = {"index": k, "epoch": ck.epoch, "lr": ck.lr, "weights": tensor_digest(ck.state)}
    terms = store.get_or_compute(f"ckpt-{k:04d}", unit, fresh)
    terms["bad"] = np.asarray(terms["bad"]).tolist()
    return terms


class MoSoCallback:
    """Online MoSo: score at chosen epochs of a training run, no checkpoints on disk.

    Pass to :func:`dataprune.train.train` as a callback; after training,
    :meth:`scores` returns what :func:`score` would return for the same checkpoints.

    >>> cb = MoSoCallback(dataset, epochs=[1, 3, 5])                  # doctest: +SKIP
    >>> train(model, dataset, epochs=5, callbacks=[cb]); cb.scores()  # doctest: +SKIP
    """

    def __init__(self, dataset, epochs, *, form: str = "exact", **score_kwargs):
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        self.dataset, self.epochs, self.form = dataset, {int(e) for e in epochs}, form
        self.cfg = _Config(**{**dict(batch_size=256, device=None, params="all", loss_fn=None, backend="hooks",
                                     accumulate="float64", num_workers=0, progress=False, cache_mb=1024),
                              **score_kwargs})
        self.total = np.zeros(len(dataset))
        self.bad: set[int] = set()
        self.scored_epochs: list[tuple[int, float]] = []

    def on_epoch_end(self, *, epoch: int, model: torch.nn.Module, lr: float) -> None:
        if epoch not in self.epochs:
            return
        was_training = model.training
        model.eval()
        try:
            cfg = self.cfg
            cfg.device = next(model.parameters()).device
            terms = checkpoint_terms(model, self.dataset, cfg, need_sq=self.form == "exact",
                                     desc=f"epoch {epoch}")
        finally:
            model.train(was_training)
        self.bad |= set(terms["bad"])
        self.total += np.nan_to_num(combine(terms, lr, self.form), nan=0.0)
        self.scored_epochs.append((epoch, lr))

    def scores(self) -> np.ndarray:
        missing = self.epochs - {e for e, _ in self.scored_epochs}
        if missing:
            raise RuntimeError(f"epochs {sorted(missing)} were never reached by training")
        out = self.total.copy()
        if self.bad:
            out[sorted(self.bad)] = -np.inf
        return out
