"""torch.distributed helpers: a no-op in a single process.

Scoring shards the dataset into contiguous blocks, one per rank (no padding, no
duplicates), sums gradients with ``all_reduce`` and gathers per-sample results back in
dataset order. Training splits every global batch across ranks under DDP.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def shard_range(n: int, world: int | None = None, rank_: int | None = None) -> tuple[int, int]:
    """The contiguous block ``[start, stop)`` of ``range(n)`` owned by a rank."""
    world = world_size() if world is None else world
    rank_ = rank() if rank_ is None else rank_
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return start, start + base + (1 if rank_ < extra else 0)


def shard_batch(batch: np.ndarray, world: int, rank_: int) -> np.ndarray:
    if world == 1:
        return batch
    start, stop = shard_range(len(batch), world, rank_)
    return batch[start:stop]


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


_HOST_GROUP: tuple | None = None        # (the default group it was made for, the gloo group)


def _backend() -> str:
    return str(dist.get_backend()).lower()


def host_group():
    """The process group for collectives of host data (CPU tensors, pickled objects): the default group where
    its backend handles CPU tensors (gloo, or ``"cpu:gloo,cuda:nccl"``); under NCCL alone, which reduces device
    tensors only ("No backend type associated with device type cpu"), a gloo group over the same ranks, made
    once. Every rank reaches it at the same collective, so every rank makes it at the same point."""
    global _HOST_GROUP
    if "gloo" in _backend():
        return None
    world = dist.group.WORLD
    if _HOST_GROUP is None or _HOST_GROUP[0] is not world:
        _HOST_GROUP = (world, dist.new_group(backend="gloo"))
    return _HOST_GROUP[1]


def all_reduce_sum_(tensors) -> None:
    """Sum tensors across ranks in place (a no-op in one process): CPU tensors over :func:`host_group`, device
    tensors over NCCL, or through the host where the backend is gloo alone."""
    if not is_distributed():
        return
    nccl = "nccl" in _backend()
    for t in tensors:
        if t.device.type == "cpu":
            dist.all_reduce(t, group=host_group())
        elif nccl:
            dist.all_reduce(t)
        else:  # gloo with CUDA tensors: reduce on the CPU
            host = t.cpu()
            dist.all_reduce(host)
            t.copy_(host)


def gather_blocks(local: np.ndarray, n: int) -> np.ndarray:
    """Concatenate every rank's block (see :func:`shard_range`) into one ``(n, ...)`` array on all ranks."""
    if not is_distributed():
        return local
    blocks = [None] * world_size()
    dist.all_gather_object(blocks, np.asarray(local), group=host_group())
    out = np.concatenate(blocks)
    if len(out) != n:
        raise RuntimeError(f"gathered {len(out)} per-sample results for {n} samples")
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shutdown(ok: bool = True) -> None:
    """Leave the process group, if one was joined. After a run that went well every rank first waits for
    the others (a barrier): a rank that tears down gloo's connections while a peer still reads from them can
    end the peer with SIGABRT. After an error no barrier (the other ranks may be gone)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    global _HOST_GROUP
    if ok:
        dist.barrier()
    dist.destroy_process_group()
    _HOST_GROUP = None


def gather_objects(obj) -> list:
    """Every rank's ``obj`` as a list (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj, group=host_group())
    return out


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (the object itself in one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=host_group())
    return box[0]


def sum_arrays(arrays):
    """Element-wise sums over the ranks of numpy arrays, as float64 (one all-reduce for all of them)."""
    flat = torch.from_numpy(np.concatenate([np.asarray(x, np.float64).ravel() for x in arrays]))
    all_reduce_sum_([flat])
    out, at = [], 0
    for x in arrays:
        size = int(np.prod(np.shape(x)))
        out.append(flat[at:at + size].numpy().reshape(np.shape(x)))
        at += size
    return out


def init_from_env(device=None):
    """Under torchrun (``WORLD_SIZE`` > 1): join the process group (NCCL with CUDA, else gloo) and return
    the device this rank uses (``cuda:LOCAL_RANK`` with CUDA, else ``device``). One process: nothing to
    do, ``device`` returned as it is."""
    import os

    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return device
