"""GraNd (Paul et al., NeurIPS 2021): the per-sample gradient norm."""

from __future__ import annotations

import numpy as np

from ..grads import cross_entropy, per_sample_terms, select_params
from ..trajectory import load_state
from ..utils import model_dtype, resolve_device
from .dynamics import _orient
from .moso import _example, prepare_model
from .uncertainty import pick_checkpoints


def grand_score(model, checkpoints, dataset, *, use: str = "early", params="all", keep: str = "hard",
                loss_fn=None, batch_size: int = 256, device=None, num_workers: int = 0,
                progress: bool = False) -> np.ndarray:
    """GraNd: ``||g_i||_2`` of the per-sample loss gradient, averaged over checkpoints; higher = keep.

    The paper takes the expectation over several initialisations at (or near) epoch 0;
    ``use="early"`` (default) averages over the first half of the given checkpoints (pass an
    epoch-0 checkpoint to score at initialisation), ``"all"`` over all. Norms come from the
    batched per-layer kernels (``params`` as in :func:`dataprune.moso.score`).
    ``keep="easy"`` keeps small-gradient samples first.
    """
    cks = pick_checkpoints(checkpoints, use)
    device = resolve_device(device)
    work = prepare_model(model, device)
    sel = select_params(work, params, example=_example(dataset, device, model_dtype(work)))
    total = np.zeros(len(dataset))
    for ck in cks:
        load_state(work, ck.state, what=f"checkpoint at epoch {ck.epoch}")
        terms = per_sample_terms(work, dataset, np.arange(len(dataset)), sel, need_sq=True, need_dot=False,
                                 loss_fn=loss_fn or cross_entropy, batch_size=batch_size, device=device,
                                 num_workers=num_workers, progress=progress, desc=f"GraNd epoch {ck.epoch}")
        total += np.sqrt(np.nan_to_num(terms["sq"], nan=np.inf))
    return _orient(total / len(cks), keep)
