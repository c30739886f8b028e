"""Checkpoints of a training run: weights, the learning rate in force, the epoch.

A checkpoint taken at epoch ``e`` holds the weights after ``e`` epochs of training and
the learning rate used during epoch ``e`` (the step size that produced them), as the
MoSo authors record it. Epoch 0 is the initialisation, with the first epoch's rate.
"""

from __future__ import annotations

import io as _io
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from .io import write_bytes


@dataclass
class Checkpoint:
    state: dict          # model.state_dict(), tensors on the CPU
    lr: float
    epoch: int
    meta: dict = field(default_factory=dict)

    def __iter__(self):
        # Lets a Checkpoint stand where a (state_dict, learning_rate) pair is expected.
        return iter((self.state, self.lr))


def snapshot(model: torch.nn.Module, lr: float, epoch: int, **meta) -> Checkpoint:
    """A detached CPU copy of ``model``'s state."""
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return Checkpoint(state, float(lr), int(epoch), dict(meta))


def as_checkpoints(checkpoints: Iterable) -> list[Checkpoint]:
    """Normalise ``Checkpoint`` objects and ``(state_dict, lr)`` pairs to a list of ``Checkpoint``."""
    out = []
    for i, c in enumerate(checkpoints):
        if isinstance(c, Checkpoint):
            out.append(c)
            continue
        try:
            state, lr = c
        except (TypeError, ValueError):
            raise TypeError(f"checkpoint {i} is a {type(c).__name__}; expected a Checkpoint or a "
                            "(state_dict, learning_rate) pair") from None
        if not isinstance(state, dict):
            raise TypeError(f"checkpoint {i}: the state is a {type(state).__name__}, expected a state_dict")
        lr = float(lr)
        if not np.isfinite(lr) or lr < 0:
            raise ValueError(f"checkpoint {i}: learning rate {lr} must be finite and >= 0")
        out.append(Checkpoint(state, lr, i))
    if not out:
        raise ValueError("no checkpoints given: at least one (state_dict, learning_rate) is needed")
    return out


# Default checkpoints, as shares of the recipe's schedule: for 10 epochs 1,3,5,7,9 (the setting the
# default was validated with on mnist5k), for 30 epochs 3,9,15,21,27, for 200 epochs 20,60,...,180. Placed
# on the schedule, not at fixed epochs: fixed epochs 1..9 of a 200-epoch recipe score a surrogate that has
# barely started and train 191 epochs for nothing.
CHECKPOINT_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)


def default_checkpoint_epochs(total_epochs: int) -> list[int]:
    """The default checkpoint epochs of a ``total_epochs`` recipe: :data:`CHECKPOINT_FRACTIONS` of it,
    rounded, at least epoch 1, without repeats (every epoch for recipes of at most 5 epochs)."""
    if total_epochs < 1:
        raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
    return sorted({min(total_epochs, max(1, int(math.floor(f * total_epochs + 0.5)))) for f in CHECKPOINT_FRACTIONS})


def choose_epochs(total_epochs: int, *, every: int | None = None, epochs: Iterable[int] | None = None,
                  count: int | None = None, random: bool = False, seed: int = 0) -> list[int]:
    """Which epochs (1-based, sorted) of a ``total_epochs`` run to keep as checkpoints.

    Exactly one of: ``every=k`` (k, 2k, ...), ``epochs=[...]`` (0 = initialisation),
    ``count=T`` (T evenly spaced epochs ending at the last, or T drawn without
    replacement when ``random=True``, seeded).
    """
    given = [x is not None for x in (every, epochs, count)]
    if sum(given) != 1:
        raise ValueError("choose exactly one of every=, epochs=, count=")
    if every is not None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        return list(range(every, total_epochs + 1, every))
    if epochs is not None:
        out = sorted({int(e) for e in epochs})
        bad = [e for e in out if not 0 <= e <= total_epochs]
        if bad:
            raise ValueError(f"checkpoint epochs {bad} are outside [0, {total_epochs}]")
        return out
    if not 1 <= count <= total_epochs:
        raise ValueError(f"count must be in [1, {total_epochs}], got {count}")
    if random:
        rng = np.random.default_rng(seed)
        return sorted(int(e) for e in rng.choice(np.arange(1, total_epochs + 1), size=count, replace=False))
    # Evenly spaced, the last epoch included: e.g. T=5 of 10 -> 2, 4, 6, 8, 10.
    return sorted({int(round(total_epochs * (k + 1) / count)) for k in range(count)})


def checkpoint_records(checkpoints: list[Checkpoint]) -> list[dict]:
    """Checkpoints as plain dicts of tensors and numbers (what ``torch.load(weights_only=True)`` reads back)."""
    return [{"state": c.state, "lr": c.lr, "epoch": c.epoch, "meta": c.meta} for c in checkpoints]


def from_records(records: list[dict]) -> list[Checkpoint]:
    """The inverse of :func:`checkpoint_records`."""
    return [Checkpoint(c["state"], float(c["lr"]), int(c["epoch"]), dict(c.get("meta", {}))) for c in records]


def save_checkpoints(checkpoints: list[Checkpoint], path: str, *, overwrite: bool = False,
                     meta: dict | None = None) -> None:
    """Save checkpoints to one ``.pt`` file, atomically."""
    payload = {"format": "dataprune-checkpoints", "version": 1, "meta": dict(meta or {}),
               "checkpoints": checkpoint_records(checkpoints)}
    buf = _io.BytesIO()
    torch.save(payload, buf)
    write_bytes(path, buf.getvalue(), overwrite=overwrite)


def load_checkpoints(path: str) -> tuple[list[Checkpoint], dict]:
    """Load what :func:`save_checkpoints` wrote (``weights_only``: no code is run)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable dataprune checkpoint file ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != "dataprune-checkpoints":
        raise ValueError(f"{path} is not a dataprune checkpoint file (written by `dataprune train` "
                         "or dataprune.trajectory.save_checkpoints)")
    return from_records(payload["checkpoints"]), payload.get("meta", {})


def load_state(model: torch.nn.Module, state: dict, *, what: str = "checkpoint") -> None:
    """``model.load_state_dict(state)`` with an error that lists the mismatching keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own
              if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        if shapes:
            parts.append(f"shape mismatches {shapes[:5]}")
        raise ValueError(f"{what} does not match the model ({type(model).__name__}): " + "; ".join(parts) +
                         ". Was it saved from another architecture or number of classes?")
    model.load_state_dict(state)
