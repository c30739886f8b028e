"""Small shared helpers: devices, seeds, progress bars."""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time

import numpy as np
import torch

# Rows per block where an (N, C) array is worked through a block at a time (ImageNet-1k: 1.28M x 1,000
# probabilities, 10 GB in float64 all at once).
ROW_BLOCK = 1 << 14


def row_blocks(n: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n)`` in blocks of :data:`ROW_BLOCK` rows."""
    return [(a, min(a + ROW_BLOCK, n)) for a in range(0, n, ROW_BLOCK)]


def resolve_device(device=None) -> torch.device:
    """``None`` means CUDA when available, else the CPU. A device this PyTorch cannot use is a
    ``ValueError`` that says why (a misspelled name, a CPU-only build, a missing GPU index)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"unknown device {device!r}; expected cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ValueError(f"device {device!r} is not available: this PyTorch ({torch.__version__}, {build}) sees "
                             "no CUDA GPU; use --device cpu (or install a CUDA build of PyTorch)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s) visible")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} is not available on this machine; use --device cpu")
    return dev


def _die_by(signum) -> None:
    import signal

    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's ``KeyboardInterrupt`` so that a command unwinds the same way
    (finished work kept, worker processes stopped) and exits with 143 instead of 130."""


@contextlib.contextmanager
def sigterm_raises():
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: no change)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:
            # A forked child (a DataLoader worker) inherited this handler: end as SIGTERM ends it by default,
            # not by unwinding (which printed tracebacks of its helper threads when the loader stopped it).
            _die_by(signum)
        raise Terminated()

    before = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


class DeferredSignals:
    """Within the block, SIGINT and SIGTERM are recorded instead of raising at an arbitrary bytecode;
    :meth:`check` raises them (``KeyboardInterrupt`` / :class:`Terminated`) at a point of the caller's
    choosing. For a main thread that waits on worker processes: an exception raised while it holds a
    future's lock inside ``concurrent.futures.wait`` would leave that lock held, and the shutdown that
    follows would wait on it for ever. A signal that was ignored before (a background job's SIGINT)
    stays ignored. Off the main thread it does nothing."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.received: int | None = None
        self._before: dict = {}

    def __enter__(self):
        import signal
        import threading

        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return self

        owner = os.getpid()

        def record(signum, frame):
            if os.getpid() != owner:              # inherited by a forked child: the default action there
                _die_by(signum)
            self.received = signum if self.received is None else self.received

        for sig in (signal.SIGINT, signal.SIGTERM):
            before = signal.getsignal(sig)
            if before is not signal.SIG_IGN:
                self._before[sig] = signal.signal(sig, record)
        return self

    def check(self):
        import signal

        if self.received is not None:
            raise Terminated() if self.received == signal.SIGTERM else KeyboardInterrupt()

    def __exit__(self, *exc):
        import signal

        for sig, before in self._before.items():
            signal.signal(sig, before)
        self._before = {}
        return False


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (model initialisation draws from torch's global RNG)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _Quiet:
    def __init__(self, iterable):
        self._it = iterable

    def __iter__(self):
        return iter(self._it)

    def update(self, n=1):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


class _LogLines(_Quiet):
    """Off a terminal: one log line on stderr per step of a stage (an epoch), and for a stage counted in
    samples, a line at its end -- so a run redirected to a file says what it is doing."""

    def __init__(self, iterable, desc, total, unit, initial=0):
        super().__init__(iterable if iterable is not None else range(0))
        self.desc, self.unit, self.count, self.post = desc, unit, initial, {}
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.t0 = time.perf_counter()

    def _line(self, text):
        print(f"[dataprune] {self.desc}: {text} ({time.perf_counter() - self.t0:.1f} s)", file=sys.stderr,
              flush=True)

    def __iter__(self):
        for item in self._it:
            yield item
            self.count += 1
            if self.unit == "epoch":
                post = ", ".join(f"{k} {v}" for k, v in self.post.items())
                self._line(f"epoch {self.count}/{self.total}" + (f", {post}" if post else ""))

    def set_postfix(self, **kw):
        self.post = kw

    def update(self, n=1):
        self.count += n
        if self.total and self.count >= self.total:
            self._line(f"{self.count} {self.unit} done")


def stage(text: str, enabled: bool = True) -> None:
    """One line on stderr when a stage of a run starts (on a terminal and off one alike), so the
    stages between progress bars are never silent; nothing when ``enabled`` is False or
    ``DATAPRUNE_QUIET`` is set."""
    if enabled and not os.environ.get("DATAPRUNE_QUIET"):
        print(f"[dataprune] {text}", file=sys.stderr, flush=True)


def progress_bar(iterable=None, *, desc: str = "", enabled: bool = True, total=None, unit: str = "it",
                 initial: int = 0):
    """A tqdm bar on stderr on a terminal; off one, log lines (:class:`_LogLines`); nothing when
    ``enabled`` is False or ``DATAPRUNE_QUIET`` is set. ``initial``: steps already done (a resumed run)."""
    if not enabled or os.environ.get("DATAPRUNE_QUIET"):
        return _Quiet(iterable if iterable is not None else range(0))
    # Bars only on a terminal: redirected to a log they would fill it with carriage-return lines.
    if not sys.stderr.isatty():
        return _LogLines(iterable, desc, total, unit, initial)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, leave=False,
                dynamic_ncols=True, initial=initial)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype of the model's parameters (inputs are cast to it)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process instead of returning it to the OS (glibc only).

    PyTorch's CPU tensors come from ``malloc``; glibc hands large blocks back to the OS on
    free and the next batch pays page faults to get them again. On small VMs that made
    per-sample scoring up to 30% slower. This sets ``M_MMAP_THRESHOLD`` to 32 MiB and a
    high ``M_TRIM_THRESHOLD`` (what ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
    do from the environment). The ``dataprune`` command calls it; library users may.
    Returns True when applied; set ``DATAPRUNE_NO_MALLOC_TUNING=1`` to skip.
    """
    if os.environ.get("DATAPRUNE_NO_MALLOC_TUNING") or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def logits_of(output) -> torch.Tensor:
    """The class logits in a model's output: the tensor itself, or the ``logits`` field of a dict-like or object
    output (Hugging Face models return a ``ModelOutput`` with ``.logits``). Anything else is a ``TypeError`` that
    says what came back."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    what = type(output).__name__
    if isinstance(output, (tuple, list)):
        what += " of " + ", ".join(type(o).__name__ + (f"{tuple(o.shape)}" if isinstance(o, torch.Tensor) else "")
                                   for o in output[:4])
    elif isinstance(output, dict):
        what += f" with keys {sorted(map(str, output))[:6]}"
    raise TypeError(f"the model's forward() returned {what}; dataprune needs the class logits: a (batch, classes) "
                    "tensor, or an output with a 'logits' field (as Hugging Face models return). Return the logits "
                    "from forward(), or wrap the model in a module that does")


def _logits_hook(module, args, output):
    return None if isinstance(output, torch.Tensor) else logits_of(output)


def _hooked(model) -> bool:
    return _logits_hook in model._forward_hooks.values()


def returns_logits(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` made to return its class logits (:func:`logits_of`) by a forward hook, kept for good: for models
    dataprune made itself (a surrogate, a copy). Idempotent; parameter names and the state dict are unchanged."""
    if not _hooked(model):
        model.register_forward_hook(_logits_hook)
    return model


@contextlib.contextmanager
def logits_view(model):
    """:func:`returns_logits` for the duration of a call on the user's own model: the hook is removed at exit,
    so the model returns what it always did afterwards. Anything that is not a module (a constructor) is left as
    it is."""
    if not isinstance(model, torch.nn.Module) or _hooked(model):
        yield model
        return
    handle = model.register_forward_hook(_logits_hook)
    try:
        yield model
    finally:
        handle.remove()


def takes_logits(fn):
    """Decorator: ``fn(model, ...)`` runs with ``model`` under :func:`logits_view`."""
    import functools

    @functools.wraps(fn)
    def wrapper(model, *args, **kwargs):
        with logits_view(model):
            return fn(model, *args, **kwargs)
    return wrapper


def plain_module(model):
    """The module a ``torch.compile`` wrapper holds (``_orig_mod``), else ``model`` itself: the per-sample kernels
    (hooks, ``torch.func``, a backward that keeps its graph) do not run through a compiled graph."""
    orig = getattr(model, "_orig_mod", None)
    return orig if isinstance(model, torch.nn.Module) and isinstance(orig, torch.nn.Module) else model


def check_logits(logits: torch.Tensor, targets, *, labels=None) -> None:
    """A ``ValueError`` naming the mismatch where ``logits`` are not (batch, classes) for the batch's ``targets``, or
    a label (of ``labels``, default ``targets``) is not one of its classes (labels numbered from 1, a head narrower
    than the label set)."""
    n = len(targets)
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ValueError(f"the model returned logits of shape {tuple(logits.shape)} for a batch of {n}; expected "
                         f"(batch, classes) = ({n}, C)")
    labels = targets if labels is None else labels
    if len(labels):
        lo, hi = int(labels.min()), int(labels.max())
        c = logits.shape[1]
        if lo < 0 or hi >= c:
            why = ("labels must be class numbers 0..C-1 (a negative label often marks an unlabelled sample: leave "
                   "those out of the training set)" if lo < 0 else
                   f"labels look numbered from 1: renumber them 0..{c - 1}" if lo >= 1 and hi == c else
                   f"the head needs at least {hi + 1} outputs, or the labels renumbering to 0..{c - 1}")
            raise ValueError(f"labels run from {lo} to {hi} but the model has {c} class outputs: {why}")
