"""GraNd (Paul et al., NeurIPS 2021): the per-sample gradient norm."""

from __future__ import annotations

import numpy as np

from .. import distributed as dist
from ..grads import per_sample_terms, select_params
from ..grads.terms import TermOptions
from ..io import PartStore, dataset_fingerprint, tensor_digest
from ..trajectory import load_state
from ..utils import model_dtype
from .common import example_batch, finalize, orient, prepare_model
from .uncertainty import pick_checkpoints


def grand_score(model, checkpoints, dataset, *, use: str = "early", keep: str = "hard", work_dir: str | None = None,
                **options) -> np.ndarray:
    """GraNd: ``||g_i||_2`` of the per-sample loss gradient, averaged over checkpoints; higher = keep.

    The paper takes the expectation over several initialisations at (or near) epoch 0;
    ``use="early"`` (default) averages over the first half of the given checkpoints (pass an
    epoch-0 checkpoint to score at initialisation), ``"all"`` over all. Norms come from the
    batched per-layer kernels (options as :func:`dataprune.moso.score`: ``params``, ``batch_size``,
    ``device``, ...). ``keep="easy"`` keeps small-gradient samples first. A sample whose loss is
    not finite at some checkpoint scores ``-inf`` (pruned first) either way. Under
    torch.distributed each rank scores a contiguous block; ``work_dir`` makes the run resumable.
    """
    opts = TermOptions.from_kwargs(options, what="grand")
    orient(np.zeros(0), keep)                       # validate before any work
    cks = pick_checkpoints(checkpoints, use)
    device = opts.torch_device
    work = prepare_model(model, device)
    sel = select_params(work, opts.params, example=example_batch(dataset, device, model_dtype(work)))
    n = len(dataset)
    start, stop = dist.shard_range(n)
    store = None
    if work_dir is not None:
        store = PartStore(work_dir, {"method": "grand", "params": repr(opts.params),
                                     "fingerprint": dataset_fingerprint(dataset),
                                     "loss": getattr(opts.loss, "__name__", repr(opts.loss))})
    total = np.zeros(n)
    bad: set[int] = set()
    for k, ck in enumerate(cks):
        def compute(ck=ck):
            load_state(work, ck.state, what=f"checkpoint at epoch {ck.epoch}")
            terms = per_sample_terms(work, dataset, np.arange(start, stop), sel, need_sq=True, need_dot=False,
                                     loss_fn=opts.loss, batch_size=opts.batch_size, device=device,
                                     num_workers=opts.num_workers, progress=opts.progress, kernels=opts.kernels,
                                     desc=f"GraNd epoch {ck.epoch}")
            return {"sq": dist.gather_blocks(terms.sq, n)}

        if store is None:
            sq = compute()["sq"]
        else:
            sq = store.get_or_compute(f"ckpt-{k:04d}", {"index": k, "epoch": ck.epoch,
                                                        "weights": tensor_digest(ck.state)}, compute)["sq"]
        bad |= set(np.flatnonzero(~np.isfinite(sq)).tolist())
        total += np.sqrt(np.where(np.isfinite(sq), np.maximum(sq, 0.0), 0.0))
    return finalize(orient(total / len(cks), keep), bad, method="grand")
