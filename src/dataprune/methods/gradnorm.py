"""GraNd (Paul et al., NeurIPS 2021): the per-sample gradient norm."""

from __future__ import annotations

import numpy as np

from .. import distributed as dist
from ..grads import cross_entropy, per_sample_terms, select_params
from ..io import PartStore, dataset_fingerprint, tensor_digest
from ..trajectory import load_state
from ..utils import model_dtype, resolve_device
from .dynamics import _orient
from .moso import _example, prepare_model
from .uncertainty import pick_checkpoints


def grand_score(model, checkpoints, dataset, *, use: str = "early", params="all", keep: str = "hard",
                loss_fn=None, batch_size: int = 256, device=None, num_workers: int = 0,
                progress: bool = False, work_dir: str | None = None) -> np.ndarray:
    """GraNd: ``||g_i||_2`` of the per-sample loss gradient, averaged over checkpoints; higher = keep.

    The paper takes the expectation over several initialisations at (or near) epoch 0;
    ``use="early"`` (default) averages over the first half of the given checkpoints (pass an
    epoch-0 checkpoint to score at initialisation), ``"all"`` over all. Norms come from the
    batched per-layer kernels (``params`` as in :func:`dataprune.moso.score`).
    ``keep="easy"`` keeps small-gradient samples first. Under torch.distributed each rank
    scores a contiguous block; ``work_dir`` makes the run resumable (see
    :func:`dataprune.moso.score`).
    """
    cks = pick_checkpoints(checkpoints, use)
    device = resolve_device(device)
    work = prepare_model(model, device)
    sel = select_params(work, params, example=_example(dataset, device, model_dtype(work)))
    n = len(dataset)
    start, stop = dist.shard_range(n)
    store = None
    if work_dir is not None:
        store = PartStore(work_dir, {"method": "grand", "params": repr(params), "fingerprint": dataset_fingerprint(dataset),
                                     "loss": getattr(loss_fn, "__name__", repr(loss_fn))})
    total = np.zeros(n)
    for k, ck in enumerate(cks):
        def compute(ck=ck):
            load_state(work, ck.state, what=f"checkpoint at epoch {ck.epoch}")
            terms = per_sample_terms(work, dataset, np.arange(start, stop), sel, need_sq=True, need_dot=False,
                                     loss_fn=loss_fn or cross_entropy, batch_size=batch_size, device=device,
                                     num_workers=num_workers, progress=progress, desc=f"GraNd epoch {ck.epoch}")
            return {"sq": dist.gather_blocks(terms["sq"], n)}

        if store is None:
            sq = compute()["sq"]
        else:
            sq = store.get_or_compute(f"ckpt-{k:04d}", {"index": k, "epoch": ck.epoch,
                                                        "weights": tensor_digest(ck.state)}, compute)["sq"]
        total += np.sqrt(np.nan_to_num(sq, nan=np.inf))
    return _orient(total / len(cks), keep)
