"""What scoring methods share: a private model copy, checkpoint loading, resumable per-checkpoint
results, orientation ("higher = keep") and the one rule for samples whose loss is not finite."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch

from ..grads.terms import CheckpointTerms, TermOptions, example_batch
from ..trajectory import as_checkpoints, load_state

__all__ = ["prepare_model", "load_checkpoint", "setup_run", "resumable_terms", "orient", "finalize", "KEEP",
           "example_batch", "TermOptions", "NonFiniteScoreWarning"]

KEEP = ("hard", "easy")


class NonFiniteScoreWarning(UserWarning):
    """Some samples got no finite score; they are pruned first (score -inf)."""


def prepare_model(model: torch.nn.Module, device) -> torch.nn.Module:
    """A private eval-mode copy: scoring never changes the caller's model. A bfloat16 or float16 model
    is scored in float32 (per-sample terms of a half-precision model do not add up to its batch
    gradient to any useful tolerance); checkpoints load into it with their values converted."""
    work = copy.deepcopy(model)
    if any(p.dtype in (torch.bfloat16, torch.float16) for p in work.parameters()):
        work = work.float()
    return work.to(device).eval()


def load_checkpoint(work: torch.nn.Module, ck, k: int) -> None:
    """Checkpoint ``k``'s weights into the private model, in eval mode."""
    load_state(work, ck.state, what=f"checkpoint {k} (epoch {ck.epoch})")
    work.eval()


def setup_run(model, checkpoints, dataset, work_dir, key: dict, options: TermOptions):
    """What every MoSo-family scorer starts with: the checkpoints, a private copy of the model,
    and (with ``work_dir``) the :class:`~dataprune.io.PartStore` whose run key is ``key`` plus
    everything in ``options`` that changes the terms."""
    cks = as_checkpoints(checkpoints)
    if len(dataset) < 2:
        raise ValueError(f"MoSo needs at least 2 samples, got {len(dataset)}")
    work = prepare_model(model, options.torch_device)
    if not isinstance(options.params, str):
        from ..grads.capture import select_params

        select_params(work, options.params)          # names and modules checked before any pass over the data
    store = None
    if work_dir is not None:
        from ..io import PartStore, dataset_fingerprint

        store = PartStore(work_dir, {**key, "params": repr(options.params),
                                     "loss": getattr(options.loss, "__name__", repr(options.loss)),
                                     "backend": options.backend, "accumulate": options.accumulate,
                                     "fingerprint": dataset_fingerprint(dataset)})
    return cks, work, store


def resumable_terms(store, k: int, ck, compute) -> CheckpointTerms:
    """A checkpoint's terms from the store when a valid copy is there, else computed and stored."""
    if store is None:
        return compute()
    from ..io import tensor_digest

    unit = {"index": k, "epoch": ck.epoch, "lr": ck.lr, "weights": tensor_digest(ck.state)}
    arrays = store.get_or_compute(f"ckpt-{k:04d}", unit, lambda: compute().to_arrays())
    return CheckpointTerms.from_arrays(arrays)


def orient(score: np.ndarray, keep: str) -> np.ndarray:
    """Difficulty scores: ``keep="hard"`` keeps high difficulty first, ``"easy"`` reverses the order."""
    if keep not in KEEP:
        raise ValueError(f"keep must be 'hard' or 'easy', got {keep!r}")
    return np.asarray(score, dtype=np.float64) * (1.0 if keep == "hard" else -1.0)


def finalize(score: np.ndarray, bad, *, method: str) -> np.ndarray:
    """The one rule for samples without a finite score, in every method: they score ``-inf``
    (pruned first, whichever way the method orients its scores), with a warning naming them.

    ``bad`` are positions known to have a non-finite loss; any other non-finite value in
    ``score`` (an overflow, a NaN from the model) is treated the same way.
    """
    out = np.asarray(score, dtype=np.float64).copy()
    bad = set(int(b) for b in bad) | set(np.flatnonzero(~np.isfinite(out)).tolist())
    if bad:
        idx = sorted(bad)
        out[idx] = -np.inf
        warnings.warn(f"{method}: {len(idx)} sample(s) have no finite score (positions {idx[:20]}"
                      f"{' ...' if len(idx) > 20 else ''}); they score -inf and are pruned first",
                      NonFiniteScoreWarning, stacklevel=3)
    return out
