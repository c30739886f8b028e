"""One training loop, shared by surrogate training and retraining on a pruned subset.

SGD with (Nesterov) momentum, weight decay, a cosine learning-rate schedule stepped per
epoch, seeded shuffling and augmentation. It returns the checkpoints chosen for scoring
and a per-epoch history. Under ``torch.distributed`` it trains with
DistributedDataParallel, each rank taking its share of every global batch.

Callbacks are plain objects with any of these methods::

    on_train_begin(*, model)                                 # before the first step
    on_batch_end(*, epoch, step, indices, logits, targets)   # indices: dataset positions
    on_epoch_end(*, epoch, model, lr)                        # weights after `epoch` epochs

The time spent in callbacks is measured apart (``TrainResult.callback_seconds``), so the
cost of training and of what is recorded along the way can be told apart. Every duration is
measured twice: wall time and CPU time of the process (``*_cpu_seconds``), which other load on
a shared machine does not inflate.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import distributed as dist_utils
from .data import as_pairs, get_augmentation, get_targets, iter_batches
from .data.core import BatchReader
from .data.views import check_map_style
from .trajectory import Checkpoint, checkpoint_records, from_records, snapshot
from .utils import check_logits, model_dtype, progress_bar, resolve_device, stage, takes_logits

PRECISIONS = ("fp32", "bf16", "fp16")


def autocast_context(precision: str, device: torch.device):
    """The autocast context of a precision (a null context for fp32)."""
    import contextlib

    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision 'fp16' needs a CUDA device (it trains with a gradient scaler); use 'bf16' on "
                         f"{device.type}")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def per_sample_loss(loss_fn, logits, y):
    """``loss_fn(logits, y)`` as a (B,) float32 tensor, checked (the default loss is cross_entropy's own mean,
    computed by the training step)."""
    losses = loss_fn(logits, y)
    if not isinstance(losses, torch.Tensor) or losses.shape != y.shape:
        raise ValueError(f"loss_fn must return one loss per sample, shape {tuple(y.shape)}; got "
                         f"{getattr(losses, 'shape', type(losses).__name__)} (use reduction='none')")
    return losses.float()


@dataclass
class TrainConfig:
    """The recipe. Retraining on a pruned subset uses the same one."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    min_lr: float = 0.0
    augment: str | None = None
    # How long a subset trains: "epochs", `epochs` passes over itself (fewer steps); "steps", as many
    # optimizer steps as the full data would. ("budget" means the pruning budget only.)
    length: str = "epochs"
    # "fp32"; "bf16": forward and loss under torch.autocast in bfloat16 (CPU and GPU); "fp16": float16
    # autocast with a gradient scaler (CUDA only). Weights stay float32.
    precision: str = "fp32"

    def __post_init__(self):
        import numbers

        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        for name in ("lr", "momentum", "weight_decay", "min_lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a number, got {value!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr}")
        if self.length not in ("epochs", "steps"):
            raise ValueError(f"length must be 'epochs' or 'steps', got {self.length!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def replace(self, **overrides) -> TrainConfig:
        """A copy with some fields changed; unknown field names are an error."""
        unknown = set(overrides) - set(TrainConfig.__dataclass_fields__)
        if "budget" in unknown:
            raise TypeError("the training option 'budget' is now 'length' (\"epochs\" or \"steps\"): 'budget' "
                            "means the pruning budget only (dp.prune(..., budget=F))")
        if unknown:
            raise TypeError(f"unknown training option(s): {', '.join(sorted(unknown))}; valid: "
                            f"{', '.join(TrainConfig.__dataclass_fields__)}")
        return TrainConfig(**{**self.__dict__, **overrides})


@dataclass
class TrainResult:
    model: nn.Module
    checkpoints: list[Checkpoint]
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0              # wall time of the whole loop, callbacks included
    callback_seconds: float = 0.0     # of which in callbacks
    samples_seen: int = 0             # sample presentations (steps x batch), the unit of training cost
    cpu_seconds: float = 0.0          # CPU time of the process over the loop
    callback_cpu_seconds: float = 0.0

    @property
    def train_seconds(self) -> float:
        """Wall time of training alone (the loop minus the callbacks)."""
        return self.seconds - self.callback_seconds

    @property
    def train_cpu_seconds(self) -> float:
        return self.cpu_seconds - self.callback_cpu_seconds


def cosine_lr(base_lr: float, epoch_index: int, total_epochs: int, min_lr: float = 0.0) -> float:
    """Learning rate of 0-based epoch ``epoch_index`` of a ``total_epochs`` cosine schedule."""
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * epoch_index / total_epochs)) / 2


def tail_folded(n: int, batch_size: int) -> bool:
    """Whether a final batch of ``n`` samples is folded into the previous one: below an eighth of the batch
    (at least 2). BatchNorm in train mode normalises over the batch: one sample fails, and 2-3 at batch 32
    gave steps that wrecked a trained model (digits, long tail 50:1, random subsets of 98-99 samples, 3 seeds,
    validation balanced accuracy 53.5 with the tail as its own batch, 64.5-66.6 folded; tails of 4-8
    samples: folded -0.5..+1.4, noise level). Pruned epochs and subsets end in such tails often."""
    return 0 < n < max(2, batch_size // 8)


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if len(chunks) > 1 and tail_folded(len(chunks[-1]), batch_size):
        last = chunks.pop()
        chunks[-1] = np.concatenate([chunks[-1], last])
    return chunks


@takes_logits
def train(model: nn.Module, dataset, *, config: TrainConfig | None = None, indices=None,
          reference_size: int | None = None, seed: int = 0, device=None,
          checkpoint_epochs=(), callbacks=(), num_workers: int = 0, progress: bool = False,
          desc: str = "train", stop_after: int | None = None, loss_fn=None, pruner=None,
          input_key=None, label_key=None, resume_file: str | None = None, resume_key=None,
          **overrides) -> TrainResult:
    """Train ``model`` on ``dataset`` (or on ``dataset[indices]``) with the recipe ``config``.

    Parameters
    ----------
    config : TrainConfig, optional
        The recipe; keyword ``overrides`` (e.g. ``epochs=3, lr=0.1``) replace its fields.
    indices : array of int, optional
        Train on these dataset positions only (a pruned subset).
    reference_size : int, optional
        With ``config.length == "steps"``, the number of samples whose epoch count
        defines the step budget (the full training set). Defaults to ``len(dataset)``.
    checkpoint_epochs : iterable of int
        Epochs (1-based; 0 = initialisation) after which a :class:`Checkpoint` is kept.
    callbacks : iterable
        Objects with ``on_train_begin`` / ``on_batch_end`` / ``on_epoch_end`` (see module docstring).
    loss_fn : callable, optional
        ``(logits, targets) -> (B,)`` per-sample losses (e.g. label smoothing:
        ``lambda z, y: F.cross_entropy(z, y, reduction="none", label_smoothing=0.1)``); the step
        minimises their mean. Default cross-entropy.
    pruner : :class:`dataprune.dynamic.DynamicPruner`, optional
        Prune while training: each epoch reads the pruner's kept samples, and the step minimises
        their weighted loss (``pruner.update``). Its ``epochs`` must equal the schedule's; ``indices``
        and ``length="steps"`` do not combine with it.
    stop_after : int, optional
        Train only the first ``stop_after`` epochs of the schedule (the learning rates are those
        of the full ``epochs``-long schedule): an early segment of the same trajectory, as a cheap
        surrogate. Its checkpoints equal the full run's at the same epochs.
    input_key, label_key : str or int, optional
        For a dataset of dict items (Hugging Face): the input and label fields; detected when not given
        (``image``, ``pixel_values``, ``input_ids``...; ``label``, ``labels``, ``y``...), as in
        :func:`dataprune.prune`.
    resume_file : str, optional
        Keep the run's state there (model, optimizer, random generators, checkpoints and history so far, the
        callbacks' records), written atomically after an epoch at most every :data:`RESUME_EVERY_S` seconds; a
        run started again with the same file and ``resume_key`` continues after the saved epoch and ends as the
        uninterrupted run would (a ``pruner``'s state included). A file of other settings (another key) is
        ignored and overwritten. Callbacks without ``state_dict()`` / ``load_state_dict()``: nothing is saved.
    """
    cfg = (config or TrainConfig()).replace(**overrides)
    dataset = _pairs(dataset, input_key, label_key)
    device = resolve_device(device)
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        raise ValueError("cannot train on an empty set of samples")
    if indices.min() < 0 or indices.max() >= len(dataset):
        raise ValueError(f"indices must be positions in [0, {len(dataset)}), got values from {indices.min()} to "
                         f"{indices.max()}")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable (logits, targets) -> per-sample losses, got {loss_fn!r}")
    augment = get_augmentation(cfg.augment)
    checkpoint_epochs = sorted({int(e) for e in checkpoint_epochs})
    world, rank = dist_utils.world_size(), dist_utils.rank()

    batches_per_epoch = len(_batches(indices, cfg.batch_size))
    total_steps = None
    epochs = cfg.epochs
    if cfg.length == "steps":
        ref = reference_size or len(dataset)
        total_steps = cfg.epochs * len(_batches(np.arange(ref), cfg.batch_size))
        epochs = math.ceil(total_steps / batches_per_epoch)
    last = epochs
    if stop_after is not None:
        if isinstance(stop_after, bool) or not isinstance(stop_after, (int, np.integer)) \
                or not 1 <= stop_after <= epochs:
            raise ValueError(f"stop_after must be an integer in [1, {epochs}] (the schedule's epochs), "
                             f"got {stop_after!r}")
        last = int(stop_after)
    bad = [e for e in checkpoint_epochs if not 0 <= e <= last]
    if bad:
        raise ValueError(f"checkpoint epochs {bad} are outside [0, {last}]")

    if pruner is not None:
        if pruner.epochs != epochs:
            raise ValueError(f"the pruner was made for {pruner.epochs} epochs, the schedule has {epochs}")
        if len(pruner.labels) != len(dataset) or len(indices) != len(dataset):
            raise ValueError("a pruner prunes the whole dataset it was made for: pass that dataset, without "
                             "indices")
        if cfg.length == "steps":
            raise ValueError("length='steps' fixes the number of steps; a pruner shortens epochs instead")

    model = model.to(device)
    resumable = resume_file is not None and \
        all(hasattr(cb, "state_dict") and hasattr(cb, "load_state_dict") for cb in callbacks)
    saved = _load_progress(resume_file, resume_key) if resumable else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        if pruner is not None:
            pruner.load_state_dict(saved["pruner"])
    net = dist_utils.wrap_ddp(model, device) if world > 1 else model
    # Weight decay on every parameter, as the reference recipes do (BN and biases included).
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                          nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    checkpoints, history = [], []
    if 0 in checkpoint_epochs:
        checkpoints.append(snapshot(model, cosine_lr(cfg.lr, 0, epochs, cfg.min_lr), 0))
    step, seen_total, t0, c0 = 0, 0, time.perf_counter(), time.process_time()
    cb_time = [0.0, 0.0]
    first, before = 1, {"seconds": 0.0, "cpu_seconds": 0.0, "callback_seconds": 0.0, "callback_cpu_seconds": 0.0}
    if saved is not None:
        opt.load_state_dict(saved["optimizer"])
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        if saved.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        checkpoints = from_records(saved["checkpoints"])
        history, step, seen_total = list(saved["history"]), saved["step"], saved["seen_total"]
        for cb, state in zip(callbacks, saved["callbacks"], strict=True):
            cb.load_state_dict(state)
        first, before = saved["epoch"] + 1, saved["times"]
        stage(f"resuming after epoch {saved['epoch']} of {last}, saved in {resume_file}", rank == 0)
    last_save = time.perf_counter()

    def call(name, **kw):
        for cb in callbacks:
            fn = getattr(cb, name, None)
            if fn is not None:
                t, c = time.perf_counter(), time.process_time()
                fn(**kw)
                cb_time[0] += time.perf_counter() - t
                cb_time[1] += time.process_time() - c

    amp = autocast_context(cfg.precision, device)
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
    if saved is not None and scaler is not None and saved.get("scaler") is not None:
        scaler.load_state_dict(saved["scaler"])
    call("on_train_begin", model=model)
    # Floating inputs are cast to the model's dtype (a bfloat16 or float64 model).
    reader = BatchReader(dataset, num_workers=num_workers, device=device, dtype=model_dtype(model))
    bar = progress_bar(range(first, last + 1), desc=desc, enabled=progress and rank == 0, unit="epoch", total=last,
                       initial=first - 1)
    for epoch in bar:
        lr = cosine_lr(cfg.lr, epoch - 1, epochs, cfg.min_lr)
        for group in opt.param_groups:
            group["lr"] = lr
        net.train()
        rng = np.random.default_rng([seed, epoch])
        if pruner is not None:
            pruner.set_epoch(epoch - 1)
            order = pruner.order                     # the epoch's kept set, in the pruner's own order
        else:
            order = indices[rng.permutation(len(indices))]
        loss_sum, correct, seen = 0.0, 0, 0
        batches = _batches(order, cfg.batch_size)
        if total_steps is not None:
            batches = batches[:max(total_steps - step, 0)]
        # Each rank reads its share of every global batch; the reader's workers persist across epochs.
        for batch, (idx, x, y) in zip(batches, reader([dist_utils.shard_batch(b, world, rank) for b in batches]),
                                      strict=True):
            if augment is not None:
                x = augment(x, gen)
            with amp:
                logits = net(x)
                if step == 0:
                    check_logits(logits, y)
                # The default is cross_entropy's own mean, bit for bit the loop every earlier result used.
                if pruner is not None:
                    losses = F.cross_entropy(logits, y, reduction="none") if loss_fn is None else \
                        per_sample_loss(loss_fn, logits, y)
                    loss = pruner.update(idx, losses, logits=logits, targets=y)
                else:
                    loss = F.cross_entropy(logits, y) if loss_fn is None else \
                        per_sample_loss(loss_fn, logits, y).mean()
                if world > 1 and len(y) != len(batch) / world:
                    # DDP averages the ranks' gradients: weight each rank's mean by its share of the global
                    # batch, so that unequal shards (a last batch of 5 on 2 ranks) give the global mean's step.
                    loss = loss * (len(y) * world / len(batch))
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            step += 1
            with torch.no_grad():
                loss_sum += float(loss) * len(y)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
            seen_total += len(batch)
            call("on_batch_end", epoch=epoch, step=step, indices=idx, logits=logits.detach(), targets=y)
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"training diverged at epoch {epoch} (loss {loss_sum / max(seen, 1)}); "
                                     f"lower the learning rate (now {cfg.lr})")
        history.append({"epoch": epoch, "lr": lr, "loss": loss_sum / max(seen, 1),
                        "train_acc": correct / max(seen, 1), "seconds": time.perf_counter() - t0})
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", acc=f"{history[-1]['train_acc']:.3f}")
        if epoch in checkpoint_epochs:
            checkpoints.append(snapshot(model, lr, epoch))
        call("on_epoch_end", epoch=epoch, model=model, lr=lr)
        if pruner is not None:
            pruner.end_epoch()            # as the next set_epoch would, on every rank: no collective later
        if resumable and epoch < last and time.perf_counter() - last_save >= RESUME_EVERY_S:
            times = {"seconds": before["seconds"] + time.perf_counter() - t0,
                     "cpu_seconds": before["cpu_seconds"] + time.process_time() - c0,
                     "callback_seconds": before["callback_seconds"] + cb_time[0],
                     "callback_cpu_seconds": before["callback_cpu_seconds"] + cb_time[1]}
            if rank == 0:
                _save_progress(resume_file, resume_key, epoch=epoch, model=model, opt=opt, gen=gen, scaler=scaler,
                               checkpoints=checkpoints, history=history, step=step, seen_total=seen_total,
                               callbacks=callbacks, times=times, pruner=pruner)
            last_save = time.perf_counter()
    reader.close()
    if pruner is not None:
        pruner.end_epoch()                           # folds the last epoch's records into the scores
    return TrainResult(model, checkpoints, history, step, before["seconds"] + time.perf_counter() - t0,
                       before["callback_seconds"] + cb_time[0], seen_total,
                       before["cpu_seconds"] + time.process_time() - c0, before["callback_cpu_seconds"] + cb_time[1])


# train(resume_file=): the run's state is written after an epoch when this many seconds passed since the last write:
# a killed run loses at most about this much training, and the writes (weights, optimizer state and the checkpoints so
# far: ~0.7 GB for a ResNet-50 with five checkpoints) stay well under 1% of the run. A short run writes none.
RESUME_EVERY_S = 300.0


def _save_progress(path, key, *, epoch, model, opt, gen, scaler, checkpoints, history, step, seen_total, callbacks,
                   times, pruner=None):
    import io as _io

    from .io import write_bytes

    state = {"key": key, "epoch": int(epoch), "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": opt.state_dict(), "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
             "checkpoints": checkpoint_records(checkpoints),
             "history": history, "step": int(step), "seen_total": int(seen_total),
             "callbacks": [cb.state_dict() for cb in callbacks], "times": times,
             "scaler": None if scaler is None else scaler.state_dict(),
             "pruner": None if pruner is None else pruner.state_dict()}
    buf = _io.BytesIO()
    torch.save(state, buf)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)     # (made when first written, not before)
    write_bytes(path, buf.getvalue(), overwrite=True)


def _load_progress(path, key):
    """The state :func:`_save_progress` wrote for ``key``, or None (no file, another run's, unreadable)."""
    if not os.path.isfile(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:                         # a damaged file is no reason to fail: train from the start
        warnings.warn(f"cannot resume from {path} ({exc}); training from the start", RuntimeWarning, stacklevel=3)
        return None
    return state if isinstance(state, dict) and state.get("key") == key else None


def _pairs(dataset, input_key, label_key):
    """``dataset`` read as (input, label) pairs: dict items through :func:`dataprune.data.as_pairs`."""
    check_map_style(dataset)
    if len(dataset) == 0 and input_key is None and label_key is None:
        return dataset                               # the callers' own checks name the empty set
    return as_pairs(dataset, input_key=input_key, label_key=label_key)


@torch.no_grad()
@takes_logits
def predict(model: nn.Module, dataset, *, indices=None, batch_size: int = 512, device=None,
            num_workers: int = 0, input_key=None, label_key=None) -> torch.Tensor:
    """Logits ``(N, C)`` (float32, CPU) of ``model`` in eval mode (dict items: fields as in :func:`train`)."""
    dataset = _pairs(dataset, input_key, label_key)
    device = resolve_device(device)
    model = model.to(device)
    was_training = model.training
    model.eval()
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    out = [model(x).float().cpu() for _, x, _ in iter_batches(dataset, indices, batch_size, num_workers=num_workers,
                                                               device=device, dtype=model_dtype(model))]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def accuracy(model: nn.Module, dataset, *, batch_size: int = 512, device=None, num_workers: int = 0,
             input_key=None, label_key=None) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``dataset`` (dict items: fields as in :func:`train`)."""
    dataset = _pairs(dataset, input_key, label_key)
    logits = predict(model, dataset, batch_size=batch_size, device=device, num_workers=num_workers)
    targets = torch.from_numpy(get_targets(dataset))
    return float((logits.argmax(1) == targets).float().mean()) if len(targets) else float("nan")
