"""Atomic writes, JSON sidecars and dataset fingerprints.

Every array dataprune saves (scores, kept indices) is a ``.npy`` file with a ``.json``
sidecar next to it saying what made it and on which data, so that ``select`` and
``evaluate`` can refuse a file that belongs to another dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import tempfile
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1


class OutputExistsError(FileExistsError):
    """Raised instead of overwriting a file the user did not ask to overwrite (``.path`` names it)."""

    def __init__(self, path: str, hint: str = "pass overwrite=True to replace it"):
        self.path = os.fspath(path)
        super().__init__(f"{self.path} already exists; {hint}")


class OutputLockedError(RuntimeError):
    """Another run holds the lock on the same output."""


# What this process took from earlier, interrupted runs (the CLI reports it): finished scoring units and
# trained surrogates.
REUSED = {"parts": 0, "surrogates": 0}


def check_writable(path: str, *, overwrite: bool = False) -> None:
    """Fail early, before any work, when ``path`` (or its sidecar) exists and may not be replaced."""
    if overwrite:
        return
    for p in (os.fspath(path), sidecar_path(path)):
        if os.path.exists(p):
            raise OutputExistsError(p)


@contextlib.contextmanager
def output_lock(path: str):
    """Hold an exclusive lock on ``path`` (through ``path + '.lock'``) while a run writes it or its
    partial results: a second run with the same output fails at once, naming the first. The lock
    is released on exit, and by the operating system if the process dies. A folder it had to create is removed
    again if the run left nothing in it (a run that failed before writing)."""
    import datetime
    import fcntl
    import sys

    lock_path = os.fspath(path) + ".lock"
    folder = os.path.dirname(os.path.abspath(lock_path))
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise OutputLockedError(f"{path} is being written by another run ({holder}); wait for it to finish "
                                "or choose another output") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, (f"pid {os.getpid()} on {platform.node()}, started "
                      f"{datetime.datetime.now().isoformat(timespec='seconds')}: {' '.join(sys.argv)}").encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(lock_path)
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):      # only if empty: rmdir refuses a folder with anything in it
                os.rmdir(folder)


@contextlib.contextmanager
def atomic_path(path: str, *, overwrite: bool = False):
    """Yield a temporary path in the same folder; on success it is renamed onto ``path``.

    A crash leaves either the old file or the new one, never a half-written file.
    """
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise OutputExistsError(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would (umask applies).
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_bytes(path: str, data: bytes, *, overwrite: bool = False) -> None:
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def _strict(o):
    """``o`` with every non-finite float replaced by None: the files are strict JSON (no bare NaN or
    Infinity, which strict parsers reject); where a figure is unknown, a neighbouring field says why."""
    if isinstance(o, dict):
        return {k: _strict(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_strict(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.ndarray):
        return _strict(o.tolist())
    return o


def write_json(path: str, obj: Any, *, overwrite: bool = False) -> None:
    text = json.dumps(_strict(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    write_bytes(path, (text + "\n").encode(), overwrite=overwrite)


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.device):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def sidecar_path(path: str) -> str:
    return os.fspath(path) + ".json"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def git_commit() -> str | None:
    """The commit of the dataprune checkout this code runs from (with ``+dirty`` when it has
    uncommitted changes), or None for an installed package."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "src"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


_ENVIRONMENT: dict | None = None


def _cpu() -> dict:
    """The CPU model and the instruction set torch's CPU kernels use: floating-point results of the same code
    and seed can differ between machines whose kernels differ (AVX2 / AVX-512), never within one."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        capability = "unknown"
    return {"cpu": model, "cpu_capability": capability}


def environment() -> dict:
    """What made an artifact: dataprune (and its git commit in a checkout), torch, numpy, Python, the CPU."""
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        from ._version import __version__

        _ENVIRONMENT = {"dataprune": __version__, "git_commit": git_commit(), "torch": torch.__version__,
                        "numpy": np.__version__, "python": platform.python_version(), **_cpu()}
    return dict(_ENVIRONMENT)


def save_array(path: str, array: np.ndarray, meta: dict, *, overwrite: bool = False) -> None:
    """Write ``array`` to ``path`` (.npy) and ``meta`` plus environment to ``path + '.json'``."""
    if not os.fspath(path).endswith(".npy"):
        raise ValueError(f"array files are .npy; got {path!r}")
    side = sidecar_path(path)
    check_writable(path, overwrite=overwrite)
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    data = buf.getvalue()
    meta = dict(meta, format_version=FORMAT_VERSION, environment=environment(),
                sha256=hashlib.sha256(data).hexdigest(), shape=list(np.shape(array)),
                dtype=str(np.asarray(array).dtype))
    write_bytes(path, data, overwrite=True)
    write_json(side, meta, overwrite=True)


def aux_path(path: str) -> str:
    return os.fspath(path)[:-4] + ".aux.npz"


def save_aux(path: str, arrays: dict) -> dict:
    """Write the auxiliary per-sample arrays of a scores file next to it; returns their sidecar entry."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    data = buf.getvalue()
    write_bytes(aux_path(path), data, overwrite=True)
    return {"file": os.path.basename(aux_path(path)), "arrays": sorted(arrays),
            "sha256": hashlib.sha256(data).hexdigest()}


def load_aux(path: str, meta: dict) -> dict:
    entry = meta.get("aux")
    if not entry:
        return {}
    apath = aux_path(path)
    if not os.path.isfile(apath):
        raise FileNotFoundError(f"{path} refers to auxiliary arrays in {apath}, which is missing")
    with open(apath, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise ValueError(f"{apath} does not match the checksum recorded in {sidecar_path(path)}")
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_array(path: str) -> tuple[np.ndarray, dict]:
    """Read a ``.npy`` file and its sidecar (an empty dict where there is none)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    with open(path, "rb") as f:
        data = f.read()
    meta = read_json(sidecar_path(path)) if os.path.isfile(sidecar_path(path)) else {}
    if meta.get("sha256") and hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ValueError(f"{path} does not match the checksum in its sidecar: the file was changed or "
                         "truncated after it was written")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path} is not a readable .npy array ({exc})") from exc
    return arr, meta


def dataset_fingerprint(dataset, targets: np.ndarray | None = None, n_probe: int = 32) -> dict:
    """N, a hash of the labels and a hash of ``n_probe`` evenly spaced inputs.

    Cheap (reads ``n_probe`` samples) and enough to tell two datasets apart: a
    different size, a relabelled copy (label noise) or a different data root.
    """
    from .data import get_targets
    from .data.views import SeededView

    n = len(dataset)
    if targets is None:
        targets = get_targets(dataset)
    if not hasattr(dataset, "get_batch") and not isinstance(dataset, SeededView):
        # The deterministic view: a random transform reads the same draw every time.
        dataset = SeededView(dataset, 0)
    labels = hashlib.sha256(np.ascontiguousarray(np.asarray(targets, dtype=np.int64)).tobytes()).hexdigest()
    h = hashlib.sha256()
    for i in np.unique(np.linspace(0, max(n - 1, 0), num=min(n_probe, n), dtype=np.int64)):
        x = dataset[int(i)][0]
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        # Rounded so that the same data read on another machine or BLAS gives the same hash.
        h.update(np.round(x.astype(np.float64), 4).tobytes())
    return {"n": int(n), "labels_sha256": labels[:16], "inputs_sha256": h.hexdigest()[:16]}


def scores_meta(method: str, *, fingerprint: dict | None, options: dict | None = None, checkpoints=None,
                evidence_report=None, **extra) -> dict:
    """The sidecar of a scores file, the same fields wherever scores are written (``dataprune score``, the
    bench, ``PruneResult.save``): what made them, on which data, higher = keep, the checkpoints scored and
    the label evidence's report; ``extra`` adds what the writer knows besides (cost, seeds, settings)."""
    def plain(v):
        return v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else repr(v)

    meta = {"kind": "scores", "method": method, "higher_is": "keep", "fingerprint": fingerprint,
            "options": {k: plain(v) for k, v in (options or {}).items()}, "checkpoints": checkpoints,
            "evidence_report": evidence_report}
    meta.update(extra)
    return meta


DATA_KEYS = ("dataset", "data_root", "label_noise", "noise_kind", "noise_seed", "imbalance", "train_limit",
             "val_split", "image_size", "normalize")


def as_indices(values, what: str = "indices") -> np.ndarray:
    """``values`` as an int64 index array; float or other non-integer arrays are refused (never truncated)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of sample indices, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{what} holds {arr.dtype} values; indices must be integers (save them with "
                        "np.save(path, keep.astype(np.int64)))")
    return arr.astype(np.int64)


def check_fingerprint(expected: dict | None, actual: dict, what: str, *, expected_data: dict | None = None,
                      actual_data: dict | None = None) -> None:
    """Raise ``ValueError`` naming every field where ``expected`` and ``actual`` differ; with the
    data settings of both sides, also the settings that differ (``image_size 64 vs 32``)."""
    if not expected:
        return
    diffs = []
    if expected.get("n") != actual["n"]:
        diffs.append(f"{expected.get('n')} samples vs {actual['n']} in the dataset")
    if expected.get("labels_sha256") != actual["labels_sha256"]:
        diffs.append("the labels differ (another dataset, split or label-noise setting)")
    if expected.get("inputs_sha256") != actual["inputs_sha256"]:
        diffs.append("the inputs differ (another data root, dataset or preprocessing)")
    if diffs and expected_data is not None and actual_data is not None:
        settings = [f"{k} {expected_data.get(k)!r} there vs {actual_data.get(k)!r} here" for k in DATA_KEYS
                    if k in expected_data and expected_data.get(k) != actual_data.get(k)]
        if settings:
            diffs.append("settings: " + ", ".join(settings))
    if diffs:
        raise ValueError(f"{what} was made for a different dataset: " + "; ".join(diffs) +
                         ". Recompute it for this dataset (or pass the dataset it was made on).")


def tensor_digest(state: dict) -> str:
    """A short SHA-256 of a state_dict's names, shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k]
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(v).encode())
    return h.hexdigest()[:20]


class PartialResultWarning(UserWarning):
    """A partial result on disk was unreadable or did not match its checksum; it is recomputed."""


class PartStore:
    """Per-unit partial results of a long run (one per checkpoint), for resuming after a crash.

    Each unit is an ``.npz`` file written atomically plus a JSON sidecar with its SHA-256
    and the key that produced it; a unit is reused only when both match, so a truncated,
    corrupt or stale file is recomputed (with a :class:`PartialResultWarning`), never used.
    """

    def __init__(self, folder: str, key: dict):
        self.folder = os.fspath(folder)
        self.key = json.loads(json.dumps(key, sort_keys=True, default=_json_default))

    def _paths(self, name: str):
        base = os.path.join(self.folder, name)
        return base + ".npz", base + ".npz.json"

    def load(self, name: str, unit_key: dict) -> dict | None:
        data_path, meta_path = self._paths(name)
        if not (os.path.isfile(data_path) and os.path.isfile(meta_path)):
            return None
        want = {"run": self.key, "unit": json.loads(json.dumps(unit_key, sort_keys=True, default=_json_default))}
        try:
            meta = read_json(meta_path)
            with open(data_path, "rb") as f:
                data = f.read()
            if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
                raise ValueError("checksum mismatch (truncated or modified)")
            if meta.get("key") != want:
                return None  # another run's unit: recompute, without fuss
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (ValueError, OSError, json.JSONDecodeError, KeyError) as exc:
            import warnings

            warnings.warn(f"partial result {data_path} is unusable ({exc}); recomputing it", PartialResultWarning,
                          stacklevel=2)
            return None

    def save(self, name: str, unit_key: dict, arrays: dict) -> None:
        data_path, meta_path = self._paths(name)
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        data = buf.getvalue()
        write_bytes(data_path, data, overwrite=True)
        write_json(meta_path, {"sha256": hashlib.sha256(data).hexdigest(),
                               "key": {"run": self.key, "unit": unit_key}}, overwrite=True)

    def get_or_compute(self, name: str, unit_key: dict, compute) -> dict:
        """The unit from disk when a valid copy is there, else ``compute()`` saved for next time.

        Under torch.distributed rank 0 reads and writes; every rank gets the same result.
        """
        from . import distributed as dist

        found = self.load(name, unit_key) if dist.rank() == 0 else None
        found = dist.broadcast_object(found)
        if found is not None:
            REUSED["parts"] += 1
            return found
        result = compute()
        if dist.rank() == 0:
            self.save(name, unit_key, result)
        dist.barrier()
        return result

    def clear(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)
