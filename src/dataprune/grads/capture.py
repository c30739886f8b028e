"""Hooks that capture, for one batch, each selected layer's inputs and the gradient of the
summed per-sample losses with respect to its output; and the selection of parameters.

The backward pass asks autograd for gradients with respect to the captured layer outputs
only, so no weight gradient is computed: per-sample quantities come from the kernels.
Because per-sample losses are independent in eval mode, the gradient of their sum with
respect to a layer output, restricted to sample i, is exactly sample i's backprop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn as nn

from ..utils import logits_of
from .registry import kernel_for


@dataclass
class ParamSelection:
    """Which parameters per-sample gradients are taken over, grouped by owning module."""

    names: list[str]                                  # qualified names, model order
    params: list[nn.Parameter]
    modules: dict[nn.Module, tuple[str, ...]]         # owning module -> local names
    qualified: dict[tuple[int, str], str] = field(default_factory=dict)  # (id(module), local) -> name

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.params)


def find_classifier(model: nn.Module, example: torch.Tensor) -> tuple[str, nn.Linear]:
    """The ``nn.Linear`` whose output is the model's output (the classifier head)."""
    outputs = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: outputs.__setitem__(name, out)))
    try:
        with torch.no_grad():
            logits = logits_of(model(example))
    finally:
        for h in handles:
            h.remove()
    for name, out in outputs.items():
        if out is logits:
            return name, model.get_submodule(name)
    raise ValueError("could not find the classifier: no nn.Linear produces the model's output "
                     f"directly (linear layers seen: {list(outputs) or 'none'}). Pass the head "
                     "explicitly, e.g. params=['fc.weight', 'fc.bias'].")


def select_params(model: nn.Module, params="all", *, example: torch.Tensor | None = None) -> ParamSelection:
    """Resolve ``"all"``, ``"last_layer"``, or a list of parameter names / modules.

    ``"all"`` takes every parameter with ``requires_grad``. ``"last_layer"`` takes the
    classifier head (found with ``example``, a batch of inputs).
    """
    named = dict(model.named_parameters())
    if isinstance(params, str):
        if params == "all":
            chosen = [n for n, p in named.items() if p.requires_grad]
        elif params == "last_layer":
            if example is None:
                raise ValueError("params='last_layer' needs an example batch to find the classifier")
            head, _ = find_classifier(model, example)
            chosen = [n for n in named if n.startswith(head + ".") and n.count(".") == head.count(".") + 1]
        else:
            raise ValueError(f"params must be 'all', 'last_layer' or a list of names/modules, got {params!r}")
    else:
        chosen = []
        module_names = {id(m): n for n, m in model.named_modules()}
        for item in params:
            if isinstance(item, str):
                if item not in named:
                    close = [n for n in named if item in n][:5]
                    raise ValueError(f"model has no parameter {item!r}" +
                                     (f"; did you mean one of {close}?" if close else
                                      f"; parameters are e.g. {list(named)[:5]}"))
                chosen.append(item)
            elif isinstance(item, nn.Module):
                if id(item) not in module_names:
                    raise ValueError(f"module {type(item).__name__} is not part of the model")
                prefix = module_names[id(item)]
                chosen += [n for n in named if prefix == "" or n.startswith(prefix + ".")]
            else:
                raise TypeError(f"params entries must be names or modules, got {type(item).__name__}")
        chosen = [n for n in named if n in set(chosen)]
    if not chosen:
        raise ValueError("no trainable parameters selected")
    owners: dict[int, list] = {}
    for mod_name, m in model.named_modules(remove_duplicate=False):
        for local, p in m.named_parameters(recurse=False):
            owners.setdefault(id(p), []).append((mod_name, m, local))
    modules: dict[nn.Module, list[str]] = {}
    qualified = {}
    for n in chosen:
        owner = owners[id(named[n])]
        if len({id(m) for _, m, _ in owner}) > 1:
            raise ValueError(f"parameter {n!r} is shared by modules {[o[0] for o in owner]}; per-layer "
                             "hooks cannot attribute it. Use backend='functorch'.")
        _, m, local = owner[0]
        modules.setdefault(m, []).append(local)
        qualified[(id(m), local)] = n
    return ParamSelection(chosen, [named[n] for n in chosen], {m: tuple(v) for m, v in modules.items()},
                          qualified)


class BatchStats(NamedTuple):
    sq: torch.Tensor | None      # (B,) per-sample squared gradient norms over the selection
    dot: torch.Tensor | None     # (B,) per-sample dot products with the vector
    layer_dots: dict             # module -> (sum of its share of the dots, sum of their absolute values)


@dataclass
class _Record:
    inputs: tuple
    output: torch.Tensor
    in_versions: tuple
    out_version: int
    grad_out: torch.Tensor | None = None


class LayerCapture:
    """Capture inputs and output gradients of the selected modules for one batch at a time.

    Use as a context manager; hooks are removed on exit. Models that modify a captured
    tensor in place (``nn.ReLU(inplace=True)`` after a conv) are detected and the batch is
    re-run with copies for those layers.
    """

    def __init__(self, model: nn.Module, selection: ParamSelection, *, kernels: dict | None = None):
        self.model = model
        self.selection = selection
        self.kernels = kernels            # per-call overrides of the registry: {module type: kernel}
        self.records: dict[nn.Module, list[_Record]] = {}
        self._copy: set[nn.Module] = set()
        self._handles = []
        self._armed = False  # only the model's own forward is recorded, not kernels re-running a layer

    def __enter__(self):
        for m in self.selection.modules:
            self._handles.append(m.register_forward_hook(self._hook))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.records.clear()

    def _hook(self, module, inputs, output):
        if not self._armed or not torch.is_grad_enabled():
            return None
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"{type(module).__name__} returns a {type(output).__name__}; the per-layer "
                            "kernels need a single tensor output. Use backend='functorch'.")
        copy = module in self._copy
        # Detached views share storage and the version counter, so in-place edits stay visible.
        inputs = tuple((t.detach().clone() if copy else t.detach()) if isinstance(t, torch.Tensor) else t
                       for t in inputs)
        rec = _Record(inputs, output,
                      tuple(t._version if isinstance(t, torch.Tensor) else 0 for t in inputs),
                      output._version)
        self.records.setdefault(module, []).append(rec)
        return output.clone() if copy else None

    def _stale(self) -> set:
        stale = set()
        for m, recs in self.records.items():
            for r in recs:
                if r.output._version != r.out_version or any(
                        isinstance(t, torch.Tensor) and t._version != v
                        for t, v in zip(r.inputs, r.in_versions, strict=True)):
                    stale.add(m)
        return stale

    def forward_backward(self, x, y, loss_fn):
        """Run the batch and capture every selected layer's output gradient.

        Returns per-sample losses ``(B,)`` and logits, both detached.
        """
        for attempt in range(2):
            self.records.clear()
            self._armed = True
            try:
                with torch.enable_grad():
                    logits = self.model(x)
                    losses = loss_fn(logits, y)
            finally:
                self._armed = False
            stale = self._stale()
            if not stale:
                break
            if attempt == 1:
                raise RuntimeError("captured layer tensors were modified in place even with copies")
            self._copy |= stale
        if losses.shape != (x.shape[0],):
            raise ValueError(f"loss_fn must return one loss per sample, shape ({x.shape[0]},); "
                             f"got {tuple(losses.shape)}")
        flat = [r for recs in self.records.values() for r in recs]
        targets = [r.output for r in flat if r.output.requires_grad]
        grads = torch.autograd.grad(losses.sum(), targets, allow_unused=True) if targets else []
        it = iter(grads)
        for r in flat:
            g = next(it) if r.output.requires_grad else None
            r.grad_out = torch.zeros_like(r.output) if g is None else g
        return losses.detach(), logits.detach()

    def stats(self, vectors: dict | None = None, *, need_sq: bool, need_dot: bool, batch: int, dtype,
              device) -> BatchStats:
        """Per-sample statistics of the captured batch over the selected parameters."""
        with torch.no_grad():
            return self._stats(vectors, need_sq, need_dot, batch, dtype, device)

    def _stats(self, vectors, need_sq, need_dot, batch, dtype, device):
        sq = torch.zeros(batch, dtype=dtype, device=device) if need_sq else None
        dot = torch.zeros(batch, dtype=dtype, device=device) if need_dot else None
        layer_dots = {}
        if batch == 0:
            self.records.clear()
            return BatchStats(sq, dot, layer_dots)
        for module, names in self.selection.modules.items():
            recs = self.records.get(module, [])
            if not recs:
                continue  # the layer did not run: its per-sample gradient is zero
            kernel = kernel_for(module, self.kernels)
            vecs = None
            if need_dot:
                vecs = {n: vectors[self.selection.qualified[(id(module), n)]] for n in names}
            if len(recs) == 1:
                r = recs[0]
                s, d = kernel.stats(module, r.inputs, r.grad_out, names, vectors=vecs, need_sq=need_sq,
                                    need_dot=need_dot)
            else:
                # A module called several times per forward: its gradient is the sum over calls,
                # so norms need the summed per-sample gradient; dots are linear and add.
                s = d = None
                if need_sq:
                    acc = None
                    for r in recs:
                        g = kernel.grads(module, r.inputs, r.grad_out, names)
                        acc = g if acc is None else {k: acc[k] + g[k] for k in g}
                    s = sum(torch.linalg.vecdot(v.reshape(batch, -1), v.reshape(batch, -1)) for v in acc.values())
                if need_dot:
                    d = sum(kernel.stats(module, r.inputs, r.grad_out, names, vectors=vecs, need_sq=False,
                                         need_dot=True).dot for r in recs)
            if need_sq:
                sq += s.to(dtype)
            if need_dot:
                d = d.to(dtype)
                dot += d
                layer_dots[module] = (d.sum(), d.abs().sum())
        self.records.clear()
        return BatchStats(sq, dot, layer_dots)
