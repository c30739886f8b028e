"""Surrogate training and scoring, from a dataset and a model constructor to scores.

This is the glue the CLI and the benchmark use; every step is also a public function of
its own (``train``, ``moso.score``, ``select``, ``evaluate.retrain``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .data import SubsetView, get_targets
from .methods import call_method, get_method
from .train import TrainConfig, TrainResult, train
from .utils import seed_everything

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
    seconds: dict[str, float]
    surrogate_seconds: float
    aux: dict = field(default_factory=dict)              # method -> {name: (N,) array}
    checkpoints: list = field(default_factory=list)      # per partition: list of Checkpoint
    parts: list = field(default_factory=list)
    surrogates: list[TrainResult] = field(default_factory=list)


def surrogate_scores(methods: list[str], dataset, make_model: Callable[[], torch.nn.Module], *,
                     config: TrainConfig, checkpoint_epochs, partitions: int = 1, seed: int = 0,
                     device=None, batch_size: int = 256, num_workers: int = 0, progress: bool = False,
                     options: dict[str, dict] | None = None, checkpoints=None,
                     work_dir: str | None = None) -> ScoreRun:
    """Train the surrogate(s) once and score ``dataset`` with every method in ``methods``.

    With ``partitions=K`` the data is split into K class-stratified parts; a surrogate is
    trained on each part and scores that part (the method authors' partitioned mode).
    ``checkpoints`` (a list of Checkpoint, K=1 only) skips surrogate training.
    ``work_dir`` makes the run resumable: trained surrogates are kept there, and methods
    that take a ``work_dir`` keep their per-checkpoint partial results there.
    """
    specs = [get_method(m) for m in methods]
    options = options or {}
    labels = get_targets(dataset)
    parts = partition(labels, partitions, seed)
    if checkpoints is not None and partitions != 1:
        raise ValueError("precomputed checkpoints can only be used with partitions=1")
    scores = {s.name: np.zeros(len(dataset)) for s in specs}
    seconds = {s.name: 0.0 for s in specs}
    run = ScoreRun(scores, seconds, 0.0, parts=parts)
    for k, part in enumerate(parts):
        view = dataset if partitions == 1 else SubsetView(dataset, part)
        callbacks = {s.name: s.callback(view, checkpoint_epochs, **options.get(s.name, {}))
                     for s in specs if s.callback is not None}
        seed_everything(seed * 1000 + k)
        template = make_model()
        needs_training = any(s.needs_checkpoints for s in specs) or callbacks
        cks = checkpoints
        saved = _saved_surrogate(work_dir, k, config, checkpoint_epochs, seed, part, dataset) \
            if work_dir is not None and not callbacks else None
        if saved is not None:
            cks = saved
        elif needs_training and cks is None:
            seed_everything(seed * 1000 + k)
            model = make_model()
            t0 = time.perf_counter()
            result = train(model, view, config=config, seed=seed * 1000 + k, device=device,
                           checkpoint_epochs=checkpoint_epochs, callbacks=list(callbacks.values()),
                           num_workers=num_workers, progress=progress,
                           desc=f"surrogate{'' if partitions == 1 else f' {k + 1}/{partitions}'}")
            run.surrogate_seconds += time.perf_counter() - t0
            run.surrogates.append(result)
            cks = result.checkpoints
            if work_dir is not None and not callbacks:
                _save_surrogate(work_dir, k, config, checkpoint_epochs, seed, part, dataset, cks)
        run.checkpoints.append(cks or [])
        for s in specs:
            t0 = time.perf_counter()
            if s.name in callbacks:
                part_scores = np.asarray(callbacks[s.name].scores(), dtype=np.float64)
            else:
                common = dict(batch_size=batch_size, device=device, progress=progress, num_workers=num_workers,
                              seed=seed * 1000 + k)
                if work_dir is not None:
                    common["work_dir"] = os.path.join(work_dir, f"{s.name}-part{k}")
                part_scores, part_aux = call_method(s, template, cks or [], view, options=options.get(s.name),
                                                    return_aux=True, **common)
                for key, arr in part_aux.items():
                    arr = np.asarray(arr)
                    run.aux.setdefault(s.name, {}).setdefault(
                        key, np.zeros((len(dataset),) + arr.shape[1:], dtype=arr.dtype))[part] = arr
            if part_scores.shape != (len(view),):
                raise RuntimeError(f"method {s.name!r} returned shape {part_scores.shape}, expected ({len(view)},)")
            scores[s.name][part] = part_scores
            seconds[s.name] += time.perf_counter() - t0
    return run


def _surrogate_key(config, checkpoint_epochs, seed, part, dataset):
    from .io import dataset_fingerprint
    import hashlib

    return {"recipe": dict(config.__dict__), "checkpoint_epochs": [int(e) for e in checkpoint_epochs],
            "seed": seed, "part": hashlib.sha256(np.asarray(part, dtype=np.int64).tobytes()).hexdigest()[:16],
            "fingerprint": dataset_fingerprint(dataset)}


def _saved_surrogate(work_dir, k, config, checkpoint_epochs, seed, part, dataset):
    """Checkpoints of a surrogate trained by an earlier, interrupted run with the same settings."""
    import json

    from . import distributed as dist
    from .trajectory import load_checkpoints

    path = os.path.join(work_dir, f"surrogate-part{k}.pt")
    found = None
    if dist.rank() == 0 and os.path.isfile(path):
        try:
            cks, meta = load_checkpoints(path)
            want = json.loads(json.dumps(_surrogate_key(config, checkpoint_epochs, seed, part, dataset)))
            found = cks if meta.get("key") == want else None
        except ValueError:
            found = None
    return dist.broadcast_object(found)


def _save_surrogate(work_dir, k, config, checkpoint_epochs, seed, part, dataset, cks):
    from . import distributed as dist
    from .trajectory import save_checkpoints

    if dist.rank() == 0:
        import json

        key = json.loads(json.dumps(_surrogate_key(config, checkpoint_epochs, seed, part, dataset)))
        save_checkpoints(cks, os.path.join(work_dir, f"surrogate-part{k}.pt"), overwrite=True, meta={"key": key})
