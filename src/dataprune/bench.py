"""The experiment grid: methods x pruning ratios x seeds, every subset retrained from scratch.

:func:`run_grid` scores once per method and seed, prunes at every ratio, retrains, and
writes each finished cell to ``results.csv`` as it goes, so an interrupted run resumes where
it stopped; a folder can be extended with more methods, ratios or seeds (the saved
surrogates, scores and full-data runs are reused), and folders run apart (by seed, on
several machines) are merged with :func:`merge_runs`.

Work units (one surrogate + its scores per seed and plan; one retraining per cell) run in
``jobs`` worker processes, each with ``threads`` compute threads. A unit's result depends on
its seed and settings only, never on how many run at once, so a table is the same with
``jobs=1`` or ``jobs=8``.

Every row records the pruning cost of its method (surrogate training and scoring, in
seconds, and as ``cost_fraction`` of the full-data training run measured in the same
grid), the share of mislabelled samples it kept when the labels were made noisy, and test
(and validation) accuracy.
"""

from __future__ import annotations

import json
import numbers
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field

import numpy as np

from . import io
from .data import get_targets
from .dynamic import METHODS as DYNAMIC
from .methods import get_method
from .pipeline import FULL, Plan, resolve_plan
from .results import read_results, write_results
from .select import POLICIES, selection
from .train import TrainConfig
from .utils import DeferredSignals

# Keys of run.json that a run may extend (everything else must match to resume or add to a folder);
# per-method and per-policy options merge, as long as no option is given two values.
# "environments": what ran each invocation that wrote to the folder (versions, git commit, CPU), appended.
GRID_KEYS = ("methods", "ratios", "seeds", "full", "options", "policy_options", "environments")


@dataclass
class GridSpec:
    """Everything that determines a grid's results (stored as ``run.json``)."""

    dataset: str
    model: str
    methods: list[str]
    ratios: list[float]
    seeds: list[int]
    surrogate: dict
    retrain: dict
    checkpoint_epochs: list[int]
    policy: str = "class_balanced"                     # for entries without a "+policy" suffix
    partitions: int = 1
    label_noise: float = 0.0
    options: dict = field(default_factory=dict)        # per scoring method: extra keyword options
    policy_options: dict = field(default_factory=dict)  # per policy: extra keyword options (e.g. ccs beta)
    data: dict = field(default_factory=dict)           # load_dataset keywords (variant, root, val split)
    full: bool = True                                  # retrain on all the training data too
    threads: int = 1                                   # compute threads per work unit (changes the numbers)

    def settings(self) -> dict:
        """What must match for two runs to share a folder."""
        return {k: v for k, v in json.loads(json.dumps(asdict(self))).items() if k not in GRID_KEYS}


@dataclass(frozen=True)
class Entry:
    """One row label of the grid: ``METHOD[+POLICY][@BUDGET]``."""

    text: str
    method: str
    policy: str
    budget: float | None = None


def parse_entry(entry: str, default_policy: str = "class_balanced") -> Entry:
    """``"aum+ccs"`` -> aum with policy ccs; ``"recommended@0.25"`` -> the recommended default on a
    budget of 0.25 training runs; a method's own policy (``recommended``: auto; ``dual``: dual)
    applies when no ``+POLICY`` is given, else ``default_policy``."""
    text = entry.strip()
    rest, _, budget = text.partition("@")
    method, _, policy = rest.partition("+")
    if method in DYNAMIC:
        if policy or budget:
            raise ValueError(f"{text!r}: {method} prunes while training; it takes no +POLICY or @BUDGET")
        return Entry(text, method, "", None)
    spec = get_method(method)
    if budget:
        try:
            value = float(budget)
        except ValueError:
            raise ValueError(f"{text!r}: the budget after @ must be a number (a fraction of one training run), "
                             f"got {budget!r}") from None
        if not value > 0:
            raise ValueError(f"{text!r}: the budget must be > 0")
    policy = policy or spec.policy or default_policy
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r} in {text!r}; valid: {', '.join(POLICIES)}")
    return Entry(text, method, policy, float(budget) if budget else None)


def entry_plan(entry: Entry, spec: GridSpec) -> Plan:
    """The plan that buys an entry's scores: its budget's, the method's own (DUAL), or the full one."""
    return resolve_plan(entry.method, budget=entry.budget, recipe_epochs=spec.surrogate["epochs"],
                        checkpoint_epochs=spec.checkpoint_epochs, policy=entry.policy,
                        options=spec.options.get(entry.method), partitions=spec.partitions,
                        full_epochs=spec.retrain["epochs"])[0]


def validate(spec: GridSpec) -> list[Entry]:
    """Every check that can fail before any training: entries, policies, options, plans, evidence."""
    if not spec.methods:
        raise ValueError("no methods to compare")
    if not spec.ratios:
        raise ValueError("no pruning ratios to run")
    for r in spec.ratios:
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not 0.0 <= r < 1.0:
            raise ValueError(f"ratios are fractions of samples removed, each in [0, 1); got {r!r}")
    if not spec.seeds:
        raise ValueError("no seeds to run")
    bad_seeds = [s for s in spec.seeds if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0]
    if bad_seeds:
        raise ValueError(f"seeds must be integers >= 0, got {bad_seeds}")
    for what in ("surrogate", "retrain"):
        try:
            TrainConfig(**getattr(spec, what))
        except TypeError as exc:
            raise TypeError(f"the {what} recipe: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"the {what} recipe: {exc}") from None
    last = spec.surrogate.get("epochs", TrainConfig().epochs)
    bad = [e for e in spec.checkpoint_epochs if not 0 <= e <= last]
    if not spec.checkpoint_epochs or bad:
        raise ValueError(f"checkpoint epochs must be within the surrogate's [0, {last}] epochs, got "
                         f"{spec.checkpoint_epochs}")
    entries = [parse_entry(m, spec.policy) for m in spec.methods]
    dupes = sorted({e.text for e in entries if [x.text for x in entries].count(e.text) > 1})
    if dupes:
        raise ValueError(f"methods listed twice: {dupes}")
    names = {e.method for e in entries}
    for method, opts in spec.options.items():
        if method not in names:
            raise ValueError(f"--set names method {method!r}, which is not in the grid ({', '.join(sorted(names))})")
        if method in DYNAMIC:
            raise ValueError(f"--set: {method} has no options here (its ratio is the grid's --ratios)")
        get_method(method).check_options(opts)
    for policy, opts in spec.policy_options.items():
        if policy not in POLICIES:
            raise ValueError(f"--policy-set names unknown policy {policy!r}; valid: {', '.join(POLICIES)}")
        unknown = set(opts) - set(POLICIES[policy].options)
        if unknown:
            raise ValueError(f"policy {policy!r} has no option(s) {sorted(unknown)}; valid: "
                             f"{', '.join(POLICIES[policy].options) or 'none'}")
    for e in entries:
        if e.method in DYNAMIC:
            continue
        plan = entry_plan(e, spec)
        method = get_method(e.method)
        needs = POLICIES[e.policy].evidence
        if "label_prob" in needs and e.method != "dual":
            raise ValueError(f"{e.text!r}: policy {e.policy!r} needs DUAL's label probabilities; use it with "
                             "method dual")
        if plan.fused and method.fused is None:
            raise ValueError(f"{e.text!r}: plan {plan.name!r} scores inside training, which {e.method!r} cannot do")
    return entries


# ------------------------------------------------------------- results I/O --





# ------------------------------------------------------------- work units --


_WORKER: dict = {}


def _init_worker(split, make_model, threads):
    import signal

    import torch

    # Ctrl-C on a terminal reaches the whole process group; only the main process acts on it (it stops
    # the workers itself), so a worker never dies half-way through reading its task queue.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    torch.set_num_threads(threads)
    _WORKER.update(split=split, make_model=make_model)


def _score_unit(methods, plan, spec_dict, seed, work_dir, device, batch_size, options, evidence_for):
    """Train the surrogate of ``plan`` for ``seed`` and score it with ``methods`` (in a worker).

    Methods whose policy reads the label evidence get the surrogate ``dp.prune`` trains for them (the
    held-out share of :mod:`dataprune.evidence` kept out of its training); the others share one trained on
    all the data, as they would alone."""
    from .evidence import HOLDOUT
    from .pipeline import surrogate_scores

    spec = GridSpec(**spec_dict)
    split, make_model = _WORKER["split"], _WORKER["make_model"]
    judged = [m for m in methods if m in evidence_for]
    groups = [(judged, HOLDOUT, "evidence"), ([m for m in methods if m not in judged], 0.0, None)]
    out = {"scores": {}, "aux": {}, "seconds": {}, "prune_cost": {}, "evidence": {}}
    for group, holdout, sub in groups:
        if not group:
            continue
        run = surrogate_scores(group, split.train, make_model, config=TrainConfig(**spec.surrogate),
                               checkpoint_epochs=spec.checkpoint_epochs, plan=plan, partitions=spec.partitions,
                               seed=seed, device=device, batch_size=batch_size, options=options,
                               work_dir=work_dir if work_dir is None or sub is None else os.path.join(work_dir, sub),
                               evidence_for=[m for m in evidence_for if m in group], holdout=holdout)
        out["scores"].update(run.scores)
        out["aux"].update(run.aux)
        out["seconds"].update(run.seconds)
        out["prune_cost"].update({m: run.surrogate_cost(m) + run.scoring_cost(m) for m in run.scores})
        out["evidence"].update({m: run.evidence for m in group if run.evidence})
        full = run.cost(next(iter(run.scores)))["full_train_seconds"]
        out["clock"] = run.clock
        if full is not None or "full_estimate" not in out:
            # From a group that trained a surrogate (a group of methods that need none has no estimate).
            out.update({"surrogate_seconds": run.surrogate_seconds, "recorded_seconds": run.recorded_seconds,
                        "full_estimate": float("nan") if full is None else full,
                        "checkpoints": [{"epoch": c.epoch, "lr": c.lr} for part in run.checkpoints for c in part],
                        "epochs_trained": plan.trained_epochs(spec.surrogate["epochs"], spec.checkpoint_epochs)})
    return out


def _retrain_unit(keep, seed, retrain_cfg, device, desc, dynamic=None):
    from .evaluate import retrain

    split, make_model = _WORKER["split"], _WORKER["make_model"]
    try:
        return retrain(make_model, split.train, split.test, keep, config=TrainConfig(**retrain_cfg), seed=seed,
                       device=device, desc=desc, val_set=split.val, dynamic=dynamic)
    except FloatingPointError as e:                          # say which cell; the rows so far are saved
        hint = ("; InfoBatch's weights 1 / (1 - r) scale its steps with r: its published default is r = 0.5"
                if dynamic is not None and dynamic[0] == "infobatch" else "")
        raise FloatingPointError(f"{desc}, seed {seed}: {e}{hint}. The finished cells are saved: run the same "
                                 "command without this cell (e.g. other --ratios) to resume") from e


class _Runner:
    """Runs units inline (jobs=1) or in worker processes; either way each unit sees ``threads`` threads."""

    def __init__(self, jobs, split, make_model, threads):
        self.jobs = jobs
        self.threads = threads
        self.pool = None
        if jobs > 1:
            import multiprocessing
            import pickle

            try:
                pickle.dumps(make_model)
            except Exception as exc:
                raise ValueError(f"jobs={jobs} runs units in worker processes, which needs a picklable model "
                                 f"constructor (e.g. dataprune.models.ModelFactory), not {make_model!r} ({exc}); "
                                 "or use jobs=1") from None
            self.pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init_worker, initargs=(split, make_model, threads))
        else:
            _WORKER.update(split=split, make_model=make_model)

    def submit(self, fn, *args) -> Future:
        if self.pool is not None:
            return self.pool.submit(fn, *args)
        import torch

        fut: Future = Future()
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(exc)
        finally:
            torch.set_num_threads(before)
        return fut

    def close(self, abort: bool = False):
        """Wait for the workers to finish (``abort=False``), or stop them now: queued units are
        cancelled and running ones killed (their results were never written, so a re-run redoes them)."""
        if self.pool is None:
            return
        if not abort:
            self.pool.shutdown(cancel_futures=True)
            return
        procs = list(getattr(self.pool, "_processes", {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + 5
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(1)


# ------------------------------------------------------------------ grid --


def _open_folder(spec: GridSpec, out_dir: str, force: bool) -> tuple[GridSpec, list[dict]]:
    """run.json and results.csv of ``out_dir``: refuse other settings, extend the grid, or start over."""
    os.makedirs(out_dir, exist_ok=True)
    run_path = os.path.join(out_dir, "run.json")
    want = json.loads(json.dumps(asdict(spec)))
    rows: list[dict] = []
    environments: list[dict] = []
    if os.path.isfile(run_path) and not force:
        have = io.read_json(run_path)
        have_settings = {k: v for k, v in have.items() if k not in GRID_KEYS}
        diff = sorted(k for k in set(have_settings) | set(spec.settings())
                      if have_settings.get(k) != spec.settings().get(k))
        if diff:
            raise ValueError(f"{out_dir} holds a run with different settings ({', '.join(diff)}); use another "
                             "--out folder, or --force to start over there")
        rows = read_results(os.path.join(out_dir, "results.csv"))
        for key in ("options", "policy_options"):
            want[key] = _merge_options(have.get(key, {}), want[key], key, out_dir)
        # The folder's grid grows: earlier methods, ratios and seeds stay in the table.
        want["methods"] = list(dict.fromkeys(have.get("methods", []) + spec.methods))
        want["ratios"] = sorted(set(have.get("ratios", [])) | set(spec.ratios))
        want["seeds"] = sorted(set(have.get("seeds", [])) | set(spec.seeds))
        want["full"] = bool(have.get("full", True)) or spec.full
        environments = have.get("environments", [])
    want["environments"] = _union(environments, [io.environment()])
    io.write_json(run_path, want, overwrite=True)
    return spec, rows


def _union(*lists: list) -> list:
    """The items of ``lists`` in order, each once (for unhashable items: run.json's environments)."""
    out: list = []
    for items in lists:
        for x in items:
            if x not in out:
                out.append(x)
    return out


def _merge_options(have: dict, new: dict, what: str, where: str) -> dict:
    out = {k: dict(v) for k, v in have.items()}
    for name, opts in new.items():
        for k, v in opts.items():
            if k in out.get(name, {}) and out[name][k] != v:
                raise ValueError(f"{where} ran {name} with {k}={out[name][k]!r}, this run asks for {v!r} "
                                 f"({what}); use another --out folder, or --force to start over there")
            out.setdefault(name, {})[k] = v
    return out


def run_grid(spec: GridSpec, split, make_model: Callable, out_dir: str | None = None, *, device=None,
             batch_size: int = 256, jobs: int = 1, force: bool = False,
             log: Callable[[str], None] = lambda s: None, cell_log: Callable[[str], None] | None = None) -> list[dict]:
    """Score once per method, plan and seed, prune at every ratio, retrain, collect test accuracy.

    With ``out_dir``, writes ``run.json`` (the settings), ``results.csv`` after every finished
    cell, ``surrogates/``, ``scores/<entry>-seed<s>.npy`` and ``indices/<entry>-r<ratio>-seed<s>.npy``
    with JSON sidecars, ``results.md`` and the plots. Re-running skips finished cells; new methods,
    ratios or seeds with the same settings extend the folder; other settings are refused unless
    ``force`` (which starts over). ``cell_log`` gets one line per finished cell.
    """
    entries = validate(spec)
    rows: list[dict] = []
    if out_dir is not None:
        if force:
            import shutil

            for sub in ("scores", "indices", "surrogates", "results.csv"):
                path = os.path.join(out_dir, sub)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.isfile(path):
                    os.remove(path)
        spec, rows = _open_folder(spec, out_dir, force)
        merged = io.read_json(os.path.join(out_dir, "run.json"))
        spec.options, spec.policy_options = merged["options"], merged["policy_options"]
    cell_log = cell_log or log
    done = {(r["method"], float(r["ratio"]), int(r["seed"])) for r in rows}
    targets = get_targets(split.train)
    fingerprint = io.dataset_fingerprint(split.train, targets)
    flipped = getattr(split, "flipped", None)
    order = [e.text for e in entries]
    folder_methods = order
    if out_dir is not None:
        folder_methods = io.read_json(os.path.join(out_dir, "run.json"))["methods"]

    def save():
        if out_dir is not None:
            write_results(os.path.join(out_dir, "results.csv"), rows, folder_methods)

    # Which scores each seed needs: one unit per (plan, seed), all its methods together.
    groups: dict[tuple, dict] = {}
    for seed in spec.seeds:
        for e in entries:
            if e.method in DYNAMIC or all((e.text, float(r), seed) in done for r in spec.ratios):
                continue
            plan = entry_plan(e, spec)
            g = groups.setdefault((plan, seed), {"methods": [], "evidence": set(), "entries": []})
            if e.method not in g["methods"]:
                g["methods"].append(e.method)
            if POLICIES[e.policy].evidence and e.method != "dual":
                g["evidence"].add(e.method)
            g["entries"].append(e)
    runner = _Runner(jobs, split, make_model, spec.threads)
    pending: dict[Future, tuple] = {}
    from .utils import resolve_device

    clock = "cpu" if resolve_device(device).type == "cpu" else "wall"
    timing = "train_cpu_seconds" if clock == "cpu" else "train_seconds"
    full_seconds: dict[int, float] = {int(r["seed"]): r[timing] for r in rows if r["method"] == "full"}
    score_cache: dict[tuple, dict] = {}
    total_cells = sum(len(g["entries"]) for g in groups.values()) * len(spec.ratios) + \
        sum(1 for s in spec.seeds if spec.full and ("full", 0.0, s) not in done) + \
        sum(1 for s in spec.seeds for e in entries for r in spec.ratios
            if e.method in DYNAMIC and (e.text, float(r), s) not in done)
    finished = [0]
    t_start = time.perf_counter()
    aborted = True
    # With worker processes, Ctrl-C / SIGTERM are acted on between waits, never inside one (see DeferredSignals).
    signals = DeferredSignals(enabled=runner.pool is not None).__enter__()
    try:
        for seed in spec.seeds:
            if spec.full and ("full", 0.0, seed) not in done:
                fut = runner.submit(_retrain_unit, None, seed, spec.retrain, device, "full data")
                pending[fut] = ("full", seed)
        # Dynamic pruning: one training run per (method, ratio, seed), pruning inside it.
        for seed in spec.seeds:
            for e in entries:
                if e.method not in DYNAMIC:
                    continue
                for ratio in spec.ratios:
                    if (e.text, float(ratio), seed) not in done:
                        fut = runner.submit(_retrain_unit, None, seed, spec.retrain, device, f"{e.text} r={ratio:g}",
                                            (e.method, float(ratio)))
                        pending[fut] = ("dynamic", e, ratio, seed)
        for (plan, seed), g in groups.items():
            loaded = _load_scores(out_dir, plan, seed, g["methods"], g["evidence"], fingerprint, clock)
            if loaded is not None:
                score_cache[(plan, seed)] = loaded
                continue
            what = plan.describe(spec.surrogate["epochs"], spec.checkpoint_epochs)
            log(f"[seed {seed}] training the surrogate ({what}) and scoring: {', '.join(g['methods'])}")
            work_dir = None if out_dir is None else os.path.join(out_dir, "surrogates", f"{plan.name}-seed{seed}")
            fut = runner.submit(_score_unit, g["methods"], plan, asdict(spec), seed, work_dir, device, batch_size,
                                spec.options, sorted(g["evidence"]))
            pending[fut] = ("score", plan, seed)
        # Cells whose scores are already there.
        for key, res in list(score_cache.items()):
            _submit_cells(runner, pending, groups[key], res, key, spec, targets, fingerprint, out_dir, device,
                          done)
        while pending:
            signals.check()
            finished_now, _ = wait(list(pending), timeout=0.2, return_when=FIRST_COMPLETED)
            # A failed unit is raised after the units that finished with it are saved.
            failed = [f for f in finished_now if f.cancelled() or f.exception() is not None]
            for fut in sorted(finished_now, key=lambda f: f in failed):
                what = pending.pop(fut)
                res = fut.result()
                if what[0] == "full":
                    seed = what[1]
                    full_seconds[seed] = res[timing]
                    rows.append({"method": "full", "policy": "", "plan": "", "ratio": 0.0, "seed": seed,
                                 "prune_seconds": 0.0, "cost_fraction": 0.0, "cost_clock": clock,
                                 "retrain_length": res["length"],
                                 "kept_mislabelled": _kept_share(flipped, None), **res})
                    save()
                    finished[0] += 1
                    cell_log(f"  [{finished[0]}/{total_cells}] full data, seed {seed}: test accuracy "
                             f"{res['test_acc']:.4f}")
                elif what[0] == "dynamic":
                    _, e, ratio, seed = what
                    rows.append({"method": e.text, "policy": "", "plan": "in-training", "ratio": float(ratio),
                                 "seed": seed, "prune_seconds": 0.0, "cost_fraction": 0.0, "cost_clock": clock,
                                 "retrain_length": res["length"], "kept_mislabelled": float("nan"), "_new": True,
                                 **res})
                    save()
                    finished[0] += 1
                    cell_log(f"  [{finished[0]}/{total_cells}] {e.text} r={ratio:g} seed {seed}: skipped "
                             f"{100 * res['saved_fraction']:.1f}% of the passes, test accuracy {res['test_acc']:.4f}")
                elif what[0] == "score":
                    _, plan, seed = what
                    if out_dir is not None:
                        _save_scores(out_dir, plan, seed, res, spec, fingerprint)
                    log(f"  [seed {seed}] {plan.name}: surrogate {res['surrogate_seconds']:.1f}s; scoring " +
                        ", ".join(f"{m} {res['seconds'][m]:.1f}s" for m in res["scores"]))
                    score_cache[(plan, seed)] = res
                    _submit_cells(runner, pending, groups[(plan, seed)], res, (plan, seed), spec, targets,
                                  fingerprint, out_dir, device, done)
                else:
                    _, e, ratio, seed, keep, plan, decisions = what
                    sres = score_cache[(plan, seed)]
                    prune = sres["prune_cost"][e.method]
                    full = full_seconds.get(seed) or _mean(full_seconds.values()) or sres["full_estimate"]
                    rows.append({"method": e.text, "policy": e.policy, "plan": plan.name, "ratio": float(ratio),
                                 "seed": seed, "prune_seconds": prune, "cost_fraction": prune / full if full else
                                 float("nan"), "cost_clock": clock, "retrain_length": res["length"],
                                 "kept_mislabelled": _kept_share(flipped, keep), "_new": True, **res})
                    save()
                    finished[0] += 1
                    cell_log(f"  [{finished[0]}/{total_cells}] {e.text} r={ratio:g} seed {seed}: kept {res['n_kept']}, "
                             f"test accuracy {res['test_acc']:.4f}, pruning cost {rows[-1]['cost_fraction']:.2f} "
                             f"of a training run ({time.perf_counter() - t_start:.0f}s)")
        signals.check()
        aborted = False
    finally:
        runner.close(abort=aborted)
        signals.__exit__()
    _fix_costs(rows, full_seconds, timing)
    if out_dir is not None:
        save()
        from .report import write_grid_report

        write_grid_report(out_dir, read_results(os.path.join(out_dir, "results.csv")),
                          io.read_json(os.path.join(out_dir, "run.json")))
    return rows


def _mean(values):
    values = [v for v in values if v == v]
    return float(np.mean(values)) if values else None


def _fix_costs(rows, full_seconds, timing="train_cpu_seconds"):
    """Cells that finished before their seed's full-data run had an estimate; use the measurement. Every
    row gets ``total_cost``: (pruning + its training run) / the full-data run of the same recipe and seed,
    on the bench's clock, and ``wall_saved``: 1 - its training wall time / the full run's."""
    full_wall = {int(r["seed"]): r.get("train_seconds") for r in rows if r["method"] == "full"}
    full_n = next((int(x["n_kept"]) for x in rows if x["method"] == "full" and x.get("n_kept") not in (None, "")),
                  None)
    def missing(r, key):
        v = r.get(key)
        return v is None or v == "" or v != v

    for r in rows:
        full = full_seconds.get(int(r["seed"])) or _mean(full_seconds.values())
        new = r.pop("_new", False)
        if new and r.get("prune_seconds") == r.get("prune_seconds") and full:
            r["cost_fraction"] = r["prune_seconds"] / full
        # Rows read back from results.csv keep their figures (recomputed from rounded values they would move).
        prune = 0.0 if missing(r, "prune_seconds") else r["prune_seconds"]
        if (new or missing(r, "total_cost")) and full and not missing(r, timing):
            r["total_cost"] = (prune + r[timing]) / full
        wall = full_wall.get(int(r["seed"])) or _mean(full_wall.values())
        if (new or missing(r, "wall_saved")) and wall and not missing(r, "train_seconds"):
            r["wall_saved"] = 1.0 - r["train_seconds"] / wall
        if r["method"] == "full":
            r["saved_fraction"] = 0.0
        elif r.get("plan") != "in-training" and r.get("n_kept") not in (None, ""):
            # a static subset saves its share of the passes when it trains as many epochs as the full data
            steps = r.get("retrain_length") == "steps"
            r["saved_fraction"] = 0.0 if steps else (1.0 - int(r["n_kept"]) / full_n if full_n else float("nan"))


def _kept_share(flipped, keep):
    if flipped is None:
        return float("nan")
    flipped = np.asarray(flipped, bool)
    return float(flipped.mean() if keep is None else flipped[keep].mean())


def _submit_cells(runner, pending, group, res, key, spec, targets, fingerprint, out_dir, device, done):
    plan, seed = key
    for e in group["entries"]:
        aux = res["aux"].get(e.method, {})
        from .evidence import apply_credibility

        popts, extra = apply_credibility(e.policy, spec.policy_options.get(e.policy, {}),
                                         res.get("evidence", {}).get(e.method))
        evidence = {k: v for k, v in aux.items()}
        for ratio in spec.ratios:
            if (e.text, float(ratio), seed) in done:
                continue
            sel = selection(res["scores"][e.method], ratio, labels=targets, policy=e.policy, seed=seed,
                            **popts, **evidence)
            sel.decisions.update(extra)
            if out_dir is not None:
                io.save_array(os.path.join(out_dir, "indices", f"{_safe(e.text)}-r{ratio:g}-seed{seed}.npy"),
                              sel.keep, {"kind": "indices", "method": e.method, "entry": e.text, "ratio": ratio,
                                         "policy": e.policy, "policy_options": popts, "plan": plan.name,
                                         "decisions": sel.decisions, "seed": seed, "dataset": spec.dataset,
                                         "data": spec.data, "fingerprint": fingerprint}, overwrite=True)
            fut = runner.submit(_retrain_unit, sel.keep, seed, spec.retrain, device, f"{e.text} r={ratio:g}")
            pending[fut] = ("cell", e, ratio, seed, sel.keep, plan, sel.decisions)


def _safe(text: str) -> str:
    return text.replace("/", "_")


def _score_path(out_dir, plan, method, seed):
    tag = method if plan == FULL else f"{method}@{plan.name}"
    return os.path.join(out_dir, "scores", f"{tag}-seed{seed}.npy")


def _save_scores(out_dir, plan, seed, res, spec, fingerprint):
    for m, scores in res["scores"].items():
        path = _score_path(out_dir, plan, m, seed)
        meta = io.scores_meta(
            m, fingerprint=fingerprint, options=spec.options.get(m, {}), checkpoints=res["checkpoints"],
            evidence_report=res.get("evidence", {}).get(m), seed=seed, dataset=spec.dataset, data=spec.data,
            model=spec.model, surrogate=spec.surrogate, partitions=spec.partitions, plan=asdict(plan),
            seconds=res["seconds"][m], surrogate_seconds=res["surrogate_seconds"], prune_cost=res["prune_cost"][m],
            clock=res["clock"], recorded_seconds=res["recorded_seconds"], full_estimate=res["full_estimate"])
        if res["aux"].get(m):
            meta["aux"] = io.save_aux(path, res["aux"][m])
        io.save_array(path, scores, meta, overwrite=True)


def _load_scores(out_dir, plan, seed, methods, evidence_for, fingerprint, clock=None):
    """Every method's scores of a (plan, seed) unit from the folder, or None when one is missing, was
    timed on another clock than this run's (its cost would not compare with the rows timed now), or was
    scored before the label evidence was judged on held-out samples."""
    if out_dir is None:
        return None
    res = {"scores": {}, "aux": {}, "seconds": {}, "prune_cost": {}, "surrogate_seconds": 0.0,
           "recorded_seconds": 0.0, "full_estimate": float("nan"), "clock": "wall", "evidence": {}}
    for m in methods:
        path = _score_path(out_dir, plan, m, seed)
        if not os.path.isfile(path):
            return None
        arr, meta = io.load_array(path)
        io.check_fingerprint(meta.get("fingerprint"), fingerprint, path)
        aux = io.load_aux(path, meta) if meta.get("aux") else {}
        if m in evidence_for and ("probs" not in aux or "evidence_report" not in meta):
            return None          # scored earlier without the evidence a policy now needs
        if clock is not None and meta.get("clock", "wall") != clock:
            return None          # timed on another clock: its cost is not comparable with this run's
        res["evidence"][m] = meta.get("evidence_report")
        res["scores"][m], res["seconds"][m], res["aux"][m] = arr, float(meta.get("seconds", 0.0)), aux
        res["prune_cost"][m] = float(meta.get("prune_cost", meta.get("seconds", 0.0)
                                              + meta.get("surrogate_seconds", 0.0)))
        res["clock"] = meta.get("clock", "wall")
        res["surrogate_seconds"] = float(meta.get("surrogate_seconds", 0.0))
        res["recorded_seconds"] = float(meta.get("recorded_seconds", 0.0))
        res["full_estimate"] = float(meta.get("full_estimate", float("nan")))
    return res


# ----------------------------------------------------------------- merge --


def merge_runs(folders: list[str], out_dir: str, *, force: bool = False) -> list[dict]:
    """One folder from several runs of the same settings (e.g. seeds run on different machines).

    Settings must match; rows are united (a cell present in two folders must agree); rows without a total
    cost (a ``--no-full`` folder) get it from the full-data rows merged in; scores, indices and surrogates
    are copied. Writes run.json, results.csv, results.md and the plots.
    """
    import shutil

    if len(folders) < 2:
        raise ValueError("merge needs at least two bench folders")
    runs = []
    for f in folders:
        path = os.path.join(f, "run.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{f} is not a bench folder (no run.json)")
        runs.append(io.read_json(path))
    base = {k: v for k, v in runs[0].items() if k not in GRID_KEYS}
    for f, r in zip(folders[1:], runs[1:], strict=True):
        other = {k: v for k, v in r.items() if k not in GRID_KEYS}
        diff = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))
        if diff:
            raise ValueError(f"{f} was run with other settings than {folders[0]} ({', '.join(diff)}); only runs "
                             "that differ in methods, ratios or seeds can be merged")
    if os.path.exists(os.path.join(out_dir, "run.json")) and not force:
        raise io.OutputExistsError(os.path.join(out_dir, "run.json"), "merge into a new folder, or pass --force")
    merged = dict(runs[0])
    merged["methods"] = list(dict.fromkeys(m for r in runs for m in r["methods"]))
    merged["ratios"] = sorted({x for r in runs for x in r["ratios"]})
    merged["seeds"] = sorted({x for r in runs for x in r["seeds"]})
    merged["full"] = any(r.get("full", True) for r in runs)
    merged["environments"] = _union(*(r.get("environments", []) for r in runs))
    cells: dict[tuple, dict] = {}
    for f in folders:
        for row in read_results(os.path.join(f, "results.csv")):
            key = (row["method"], row["ratio"], row["seed"])
            if key in cells and abs(cells[key]["test_acc"] - row["test_acc"]) > 1e-9:
                raise ValueError(f"{f} and another folder disagree on {key}: test accuracy {row['test_acc']} vs "
                                 f"{cells[key]['test_acc']}")
            cells.setdefault(key, row)
        for sub in ("scores", "indices", "surrogates"):
            src = os.path.join(f, sub)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(out_dir, sub), dirs_exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    io.write_json(os.path.join(out_dir, "run.json"), merged, overwrite=True)
    rows = list(cells.values())
    # Rows of a folder run without the full data (--no-full) get their total cost and wall time saved from the
    # full-data rows of another (rows that have them keep them).
    clock = next((r.get("cost_clock") for r in rows if r.get("cost_clock") in ("cpu", "wall")), "cpu")
    timing = "train_cpu_seconds" if clock == "cpu" else "train_seconds"
    full_seconds = {int(r["seed"]): r[timing] for r in rows
                    if r["method"] == "full" and isinstance(r.get(timing), float) and r[timing] > 0}
    _fix_costs(rows, full_seconds, timing)
    write_results(os.path.join(out_dir, "results.csv"), rows, merged["methods"])
    from .report import write_grid_report

    write_grid_report(out_dir, read_results(os.path.join(out_dir, "results.csv")), merged)
    return rows
