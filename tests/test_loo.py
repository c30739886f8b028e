"""MoSo against exact leave-one-out on a convex problem.

L2-regularised softmax regression on 300 real ``digits`` samples. For every sample i the
optimum of the remaining set's risk is found to machine precision (Newton-type iterations
from the full optimum), giving the exact change of the optimal risk
``Delta_i = min R(S \\ i) - min R(S)``. MoSo, computed from a plain-SGD trajectory of the
same objective, must rank samples like Delta (Spearman >= 0.6).
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.stats import spearmanr

from dataprune import moso
from dataprune.data import ArrayDataset, load_dataset
from dataprune.train import train

N, LAM = 300, 1e-2


def _risk_and_grad(w, xa, y, lam):
    """Mean cross-entropy + lam/2 ||w||^2 and its gradient; w: (C, D+1), xa: (n, D+1)."""
    z = xa @ w.t()
    p = torch.softmax(z, 1)
    p[torch.arange(len(y)), y] -= 1
    return F.cross_entropy(z, y) + lam / 2 * (w * w).sum(), p.t() @ xa / len(y) + lam * w


def _hessian(w, xa, lam):
    p = torch.softmax(xa @ w.t(), 1)
    a = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]                      # (n, C, C)
    h = torch.einsum("icd,ij,ik->cjdk", a, xa, xa).reshape(w.numel(), w.numel()) / len(xa)
    return h + lam * torch.eye(w.numel(), dtype=w.dtype)


def _minimise(xa, y, w, precond, iters=50, tol=1e-13):
    for _ in range(iters):
        r, g = _risk_and_grad(w, xa, y, LAM)
        if g.abs().max() < tol:
            break
        w = w - torch.cholesky_solve(g.reshape(-1, 1), precond).reshape(w.shape)
    r, g = _risk_and_grad(w, xa, y, LAM)
    assert g.abs().max() < 1e-10, "leave-one-out optimisation did not converge"
    return float(r), w


def exact_leave_one_out(x, y):
    xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    c = int(y.max()) + 1
    w = torch.zeros(c, xa.shape[1], dtype=x.dtype)
    for _ in range(30):  # Newton on the full set
        r, g = _risk_and_grad(w, xa, y, LAM)
        w = w - torch.linalg.solve(_hessian(w, xa, LAM), g.reshape(-1)).reshape(w.shape)
    full_risk, w_full = _minimise(xa, y, w, torch.linalg.cholesky(_hessian(w, xa, LAM)))
    # Each leave-one-out optimum is within O(1/N) of the full one: the full Hessian is an
    # excellent preconditioner and the iterations converge to machine precision in a few steps.
    chol = torch.linalg.cholesky(_hessian(w_full, xa, LAM))
    delta = np.zeros(len(x))
    for i in range(len(x)):
        keep = torch.ones(len(x), dtype=torch.bool)
        keep[i] = False
        r, _ = _minimise(xa[keep], y[keep], w_full, chol)
        delta[i] = r - full_risk
    return delta


def test_moso_tracks_exact_leave_one_out():
    split = load_dataset("digits")
    x, y = split.train.get_batch(np.arange(N))
    x = x.reshape(N, -1)
    ds = ArrayDataset(x, y.numpy())
    delta = exact_leave_one_out(x.double(), y)

    # Plain SGD (no momentum) on the same objective: weight decay LAM is the L2 term.
    model = nn.Linear(64, 10)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    epochs = 30
    res = train(model, ds, epochs=epochs, batch_size=32, lr=0.05, min_lr=0.05, momentum=0.0,
                nesterov=False, weight_decay=LAM, checkpoint_epochs=range(0, epochs, 3))
    init = nn.Linear(64, 10).double()
    scores = moso.score(init, [({k: v.double() for k, v in c.state.items()}, c.lr) for c in res.checkpoints], ds)
    rho = spearmanr(scores, delta).correlation
    rho_align = spearmanr(moso.score(init, [({k: v.double() for k, v in c.state.items()}, c.lr)
                                            for c in res.checkpoints], ds, form="alignment"), delta).correlation
    # Trivial scores on the same data, reported beside MoSo (docs/when-does-moso-help.md): the
    # lr-weighted squared gradient norm alone, and the final loss.
    from dataprune.grads import per_sample_sq_norms

    sq = np.zeros(len(x))
    for c in res.checkpoints:
        init.load_state_dict({k: v.double() for k, v in c.state.items()})
        sq += c.lr * per_sample_sq_norms(init, x.double(), y).numpy()
    rho_sq = spearmanr(-sq, delta).correlation
    with torch.no_grad():
        loss = F.cross_entropy(res.model.double()(x.double()), y, reduction="none").numpy()
    rho_loss = spearmanr(-loss, delta).correlation
    print(f"Spearman with the exact LOO change of optimal risk: MoSo exact {rho:.3f}, alignment form "
          f"{rho_align:.3f}, -sum lr ||g_i||^2 {rho_sq:.3f}, -final loss {rho_loss:.3f}")
    # What it prints, asserted (measured 0.752, 0.638, 0.830, 0.981): the exact form tracks leave-one-out
    # better than its first-order alignment, and on this convex problem the trivial scores track it
    # better still (the documented finding: MoSo is not the best LOO estimate here).
    assert rho >= 0.65 and rho_align >= 0.5 and rho >= rho_align + 0.05
    assert rho_sq >= 0.7 and rho_loss >= 0.9 and rho_loss > rho
