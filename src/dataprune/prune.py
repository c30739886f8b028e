"""One call from a model and a training set to the samples to keep: :func:`prune`.

It trains the surrogate (unless checkpoints are given), scores every sample with the chosen
method, selects with that method's policy and returns a :class:`PruneResult`: the kept
indices and everything that led to them -- scores, the evidence the policy read, what it
estimated and decided, what it cost, and where it came from.
"""

from __future__ import annotations

import csv
import io as _io
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from . import io
from .data import get_targets
from .evidence import judge, judged_by_neighbours
from .methods import RECOMMENDED, get_method
from .pipeline import advice_text, budget_advice, scores_with_evidence, surrogate_scores
from .select import POLICIES, describe_neighbours, describe_sampling, evidence_reports, selection
from .train import TrainConfig
from .trajectory import as_checkpoints
from .utils import check_logits, logits_view, plain_module, returns_logits, stage
from .utils import resolve_device as utils_resolve_device

RESULT_FILES = ("keep.npy", "keep.csv", "scores.npy", "result.json")


@dataclass
class PruneResult:
    """What :func:`prune` kept and why.

    keep : (K,) int64, sorted -- dataset positions to keep.
    scores : (N,) float64, higher = keep.
    evidence : per-sample arrays the policy may read (``probs`` (N, C), ``gradnorm``, ...): pass them
        back with ``dp.select(result.scores, r, policy=..., **result.evidence)``.
    decisions : what the policy estimated and decided (noise per class, set-aside counts, quotas,
        sampling).
    cost : surrogate and scoring seconds and ``cost_fraction`` of one full training run.
    provenance : method, options, checkpoints, dataset fingerprint, versions.
    """

    keep: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    ratio: float
    method: str
    policy: str
    evidence: dict = field(default_factory=dict)
    decisions: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    class_names: list | None = None
    dataset: object = field(default=None, repr=False)

    @property
    def n_kept(self) -> int:
        return int(len(self.keep))

    @property
    def estimated_noise(self):
        """The estimated share of wrong labels (overall), when the policy estimated one."""
        return self.decisions.get("estimated_noise")

    @property
    def estimated_noise_per_class(self) -> dict:
        return dict(self.decisions.get("estimated_noise_per_class", {}))

    def kept_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.scores), bool)
        mask[self.keep] = True
        return mask

    def per_class(self) -> list[dict]:
        """One row per class: size, kept, kept share, estimated noise, set aside."""
        mask = self.kept_mask()
        noise = self.estimated_noise_per_class
        aside = self.decisions.get("set_aside_per_class", {})
        rows = []
        for c in np.unique(self.labels):
            members = self.labels == c
            rows.append({"class": int(c), "name": self.class_name(int(c)), "size": int(members.sum()),
                         "kept": int(mask[members].sum()), "kept_share": float(mask[members].mean()),
                         "estimated_noise": noise.get(int(c), noise.get(str(int(c)))),
                         "set_aside": aside.get(int(c), aside.get(str(int(c))))})
        return rows

    def class_name(self, c: int) -> str:
        if self.class_names is not None and 0 <= c < len(self.class_names):
            return str(self.class_names[c])
        return str(c)

    def subset(self, dataset=None) -> torch.utils.data.Subset:
        """The kept samples as a ``torch.utils.data.Subset`` (of the dataset :func:`prune` saw)."""
        dataset = self.dataset if dataset is None else dataset
        if dataset is None:
            raise ValueError("this result was loaded from disk: pass the dataset, result.subset(train_set)")
        if len(dataset) != len(self.scores):
            raise ValueError(f"the dataset has {len(dataset)} samples but the result was made for {len(self.scores)}")
        expected = self.provenance.get("fingerprint")
        if expected and dataset is not self.dataset:
            from .data.views import as_pairs

            io.check_fingerprint(expected, io.dataset_fingerprint(as_pairs(dataset)), "this result")
        return torch.utils.data.Subset(dataset, self.keep.tolist())

    def summary(self) -> str:
        """A few lines saying what was done (printed by ``dataprune prune``)."""
        lines = [f"kept {self.n_kept} of {len(self.scores)} samples (pruning ratio {self.ratio:g}) with "
                 f"{self.method} + {self.policy}"]
        d = self.decisions
        if "estimated_noise" in d and d.get("noise_rule") != "none":
            worst = sorted(self.estimated_noise_per_class.items(), key=lambda kv: -kv[1])[:3]
            lines.append(f"labels that look wrong: {d['estimated_noise']:.1%} overall (most in classes "
                         + ", ".join(f"{self.class_name(int(c))} {r:.0%}" for c, r in worst) + f"); set aside "
                         f"{d.get('set_aside', 0)} samples")
        for report in evidence_reports(d):
            if report.get("held_out_accuracy"):
                k = report["checkpoint_epochs"].index(report["evidence_epochs"][0])
                lines.append(f"label evidence read at epochs {report['evidence_epochs']}: there the surrogate was "
                             f"right on {report['held_out_accuracy'][k]:.0%} of {report['held_out']} samples it did "
                             "not train on")
            if report.get("trend"):
                lines.append(report["trend"])
            if report.get("credible") is False:
                rescued = judged_by_neighbours(report)     # the neighbour labels judged instead
                lines.append(("probabilities not credible: " if rescued else "labels not judged: ")
                             + report.get("why", "the surrogate's evidence is not credible"))
                if rescued and d.get("noise_rule") == "none":
                    lines.append("no label noise was evident in them: nothing was set aside")
                if d.get("sampling") == "random":
                    lines.append(("each class's share is a random sample of its trusted samples" if rescued else
                                  "so each class's share is a random sample")
                                 + " (the scores come from the same surrogate)")
            elif report.get("credible") is None and "estimated_noise" in d:
                lines.append("warning: " + report.get("why", "the evidence could not be judged"))
            if report.get("caution"):
                lines.append("caution: " + report["caution"])
        if describe_neighbours(d):
            lines.append("label evidence: " + describe_neighbours(d))
        if d.get("evidence_advice"):
            lines.append(advice_text(d["evidence_advice"]))
        if d.get("view") == "seeded":
            lines.append("note: the training set draws random transforms; scoring read one fixed draw per sample "
                         "(pass score_set= with evaluation preprocessing to score the plain samples)")
        if "quotas" in d:
            sizes = {r["class"]: r["size"] for r in self.per_class()}
            shares = [d["quotas"][c] / sizes[int(c)] for c in d["quotas"] if sizes.get(int(c))]
            lines.append(f"class quotas: kept share per class from {min(shares):.0%} to {max(shares):.0%}"
                         + (f" (alpha {d['alpha']:g})" if "alpha" in d else ""))
        if d.get("non_finite"):
            lines.append(f"{d['non_finite']} samples had no computable score (-inf): pruned first"
                         + (f", {d['non_finite_kept']} kept to fill the budget" if d.get("non_finite_kept") else ""))
        if "sampling" in d:
            lines.append("within each class: " + describe_sampling(d))
        if d.get("off_centre"):
            lines.append(f"{d['off_centre']} trusted samples lie nearer another class's mean feature than their own "
                         f"(likely wrong labels the probabilities missed): kept last, {d.get('off_centre_kept', 0)} "
                         "of them kept")
        if self.cost:
            frac = self.cost.get("cost_fraction")
            unit = " of CPU time" if self.cost.get("clock") == "cpu" else ""
            lines.append(f"pruning cost: {self.cost.get('prune_seconds', float('nan')):.1f} s{unit}"
                         + (f" = {frac:.2f} of one training run" if frac is not None and frac == frac else
                            f" ({self.cost.get('cost_unknown', 'no full training run to compare with')})")
                         + f" (plan {self.cost.get('plan')})")
        return "\n".join(lines)

    # ------------------------------------------------------------- saving --

    def to_csv(self, path: str, *, overwrite: bool = False, positions=None, paths=None) -> None:
        """The kept samples as CSV: ``index`` (dataset position), ``label``, ``score``, and when known
        ``source_index`` (position in the shipped training set) and ``path`` (image files)."""
        buf = _io.StringIO()
        cols = ["index", "label", "score"] + (["source_index"] if positions is not None else []) + \
            (["path"] if paths is not None else [])
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for i in self.keep:
            row = [int(i), int(self.labels[i]), f"{self.scores[i]:.8g}"]
            if positions is not None:
                row.append(int(positions[i]))
            if paths is not None:
                row.append(paths[i])
            w.writerow(row)
        io.write_bytes(path, buf.getvalue().encode(), overwrite=overwrite)

    def save(self, folder: str, *, overwrite: bool = False, positions=None, paths=None) -> None:
        """``keep.npy`` (+ sidecar), ``keep.csv``, ``scores.npy`` (+ evidence), ``result.json``.

        Every file is first written to a temporary folder beside them and then renamed into place,
        ``result.json`` last: an interrupted save leaves the earlier result or a complete new one."""
        import shutil
        import tempfile

        if not overwrite:
            for f in RESULT_FILES:
                if os.path.exists(os.path.join(folder, f)):
                    raise io.OutputExistsError(os.path.join(folder, f))
        os.makedirs(folder, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".dataprune-save-", dir=folder)
        try:
            meta = self._meta()
            scores_path = os.path.join(tmp, "scores.npy")
            prov = dict(self.provenance)
            smeta = io.scores_meta(self.method, fingerprint=prov.pop("fingerprint", None),
                                   options=prov.pop("options", None), checkpoints=prov.pop("checkpoints", None),
                                   evidence_report=self.decisions.get("evidence"), **prov)
            smeta["aux"] = io.save_aux(scores_path, {**self.evidence, "labels": self.labels})
            io.save_array(scores_path, self.scores, smeta, overwrite=True)
            io.save_array(os.path.join(tmp, "keep.npy"), self.keep,
                          {"kind": "indices", "scores_file": "scores.npy", **meta}, overwrite=True)
            self.to_csv(os.path.join(tmp, "keep.csv"), overwrite=True, positions=positions, paths=paths)
            io.write_json(os.path.join(tmp, "result.json"), {**meta, "per_class": self.per_class(),
                                                             "class_names": self.class_names}, overwrite=True)
            names = sorted(os.listdir(tmp), key=lambda f: f == "result.json")
            for f in names:
                os.replace(os.path.join(tmp, f), os.path.join(folder, f))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _meta(self) -> dict:
        return {"method": self.method, "policy": self.policy, "ratio": self.ratio, "n": int(len(self.scores)),
                "n_kept": self.n_kept, "decisions": self.decisions, "cost": self.cost, **self.provenance}

    @classmethod
    def load(cls, folder: str) -> PruneResult:
        """A result saved by :meth:`save` (without the dataset; pass it to :meth:`subset`)."""
        keep, meta = io.load_array(os.path.join(folder, "keep.npy"))
        scores, smeta = io.load_array(os.path.join(folder, "scores.npy"))
        evidence = io.load_aux(os.path.join(folder, "scores.npy"), smeta)
        info = io.read_json(os.path.join(folder, "result.json"))
        labels = evidence.pop("labels").astype(np.int64)
        # The environment that *made* the result is provenance (the sidecar's own is the one that saved it,
        # the same for a result saved once).
        prov = {k: v for k, v in meta.items() if k not in ("method", "policy", "ratio", "n", "n_kept", "decisions",
                                                           "cost", "kind", "scores_file", "format_version",
                                                           "sha256", "shape", "dtype")}
        return cls(keep.astype(np.int64), scores, labels, float(meta["ratio"]), meta["method"], meta["policy"],
                   evidence, _int_keys(meta.get("decisions", {})), meta.get("cost", {}), prov,
                   info.get("class_names"))

    def report(self, folder: str, *, dataset=None, bench_dir: str | None = None, overwrite: bool = False) -> str:
        """Write the HTML report (``folder/report.html`` and its images); returns the page's path."""
        from .report import write_prune_report

        return write_prune_report(self, folder, dataset=dataset, bench_dir=bench_dir, overwrite=overwrite)


def _int_keys(d):
    """JSON turns integer dict keys into strings; class-keyed dicts get them back."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = {int(kk) if isinstance(kk, str) and kk.lstrip("-").isdigit() else kk: vv for kk, vv in v.items()}
        out[k] = v
    return out


def default_policy(method: str, labels_given: bool = True) -> str:
    """The policy used when none is named, everywhere (API and CLI): the method's own (``recommended``:
    auto, ``dual``: dual), else ``class_balanced`` (``topk`` when there are no labels)."""
    return get_method(method).policy or ("class_balanced" if labels_given else "topk")


def prune(model: torch.nn.Module, train_set, *, ratio: float, method: str = RECOMMENDED,
          budget: float | None = None, checkpoints=None, policy: str | None = None, config: TrainConfig | None = None,
          checkpoint_epochs=None, seed: int = 0, device=None, score_batch_size: int = 256,
          options: dict | None = None, policy_options: dict | None = None, progress: bool = False,
          num_workers: int = 0, score_set=None, holdout: float | None = None, input_key=None, label_key=None,
          work_dir: str | None = None, loss_fn=None, **train_overrides) -> PruneResult:
    """Score ``train_set`` and keep ``1 - ratio`` of it: the whole job in one call.

    Parameters
    ----------
    model : torch.nn.Module or a constructor returning one
        The architecture (its weights are not changed): the surrogate is a copy re-initialised
        with every layer's ``reset_parameters()`` under ``seed`` (or ``model()`` for a constructor),
        trained here unless ``checkpoints`` are given.
    train_set : map-style Dataset
        Items ``(input, integer_label)``, or dicts / longer tuples (Hugging Face ``datasets`` with
        ``set_format("torch")``): the input and label fields are detected (``pixel_values``, ``image``,
        ``input_ids``...; ``label``, ``labels``, ``y``...) or named with ``input_key`` / ``label_key``.
        Training reads it as it is, random transforms included.
    ratio : float in [0, 1), keyword-only
        Fraction of samples removed.
    method : str
        Any registered method (``dataprune.methods.METHODS``); default ``"recommended"``, the
        current recommended default (score + its policy).
    budget : float, optional
        Spend at most this fraction of one full training run on pruning: the best plan
        (:data:`dataprune.pipeline.PLANS`) whose expected cost fits is used and the achieved
        cost is in ``result.cost``. None: the full plan.
    checkpoints : list of Checkpoint or (state_dict, lr), optional
        Score these instead of training a surrogate (``budget`` must then be None).
    policy : str, optional
        Selection policy; default: the method's own, else ``class_balanced``.
    config : TrainConfig, optional
        The surrogate's recipe (default ``TrainConfig()``; keyword overrides such as ``epochs=10,
        batch_size=32, lr=0.05`` replace its fields). Its epochs are the "full training run" of
        the cost accounting.
    checkpoint_epochs : list of int, optional
        Epochs scored (default: 10%, 30%, 50%, 70% and 90% of the recipe's epochs, e.g. 1,3,5,7,9 of 10
        or 20,60,100,140,180 of 200; the surrogate stops after the last one unless the method reads
        its whole training record).
    score_batch_size : int
        Batch size of the scoring passes (memory, not results); ``batch_size=`` is the surrogate's.
    options, policy_options : dict, optional
        The method's and the policy's own options.
    score_set : Dataset, optional
        The same samples in the same order with deterministic (evaluation) preprocessing: what scoring,
        the label evidence and the fingerprint read. Default: ``train_set`` itself when reading a sample
        twice gives the same input, else ``train_set`` read with the random generators seeded per sample
        (a fixed draw of your augmentation; ``result.decisions["view"]`` says which).
    holdout : float
        Share of the training set (class-stratified, at most 2,000 samples) held out of the surrogate's
        training to judge on data it did not train on whether it has learnt the task, and where on its
        schedule to read the label evidence (:mod:`dataprune.evidence`); the held-out samples are still
        scored and selected. 0 reads the evidence at a fixed early segment without judging it.
    input_key, label_key : str or int, optional
        The input and label fields of dict or tuple items, when they cannot be detected.
    loss_fn : callable, optional
        Your per-sample loss ``(logits, targets) -> (B,)`` (e.g. label smoothing), used by the surrogate's
        training and by the scoring terms alike. Methods whose scores are a closed form of the
        cross-entropy (probability-based baselines) refuse it.
    work_dir : str, optional
        Makes the run resumable: the trained surrogate and every finished scoring checkpoint are kept
        there, and a run with the same settings and data continues from them (``dataprune prune``
        uses ``OUT/parts`` and removes it when the result is saved).
    """
    from .data.views import as_pairs, deterministic_view
    from .evidence import HOLDOUT, apply_credibility
    from .pipeline import PlanMemoryWarning, plan_for_memory, resolve_plan
    from .select import _check
    from .trajectory import default_checkpoint_epochs

    # Every argument is checked before anything trains.
    spec = get_method(method)
    cfg = (config or TrainConfig()).replace(**train_overrides)
    _check(np.zeros(1), ratio, None, None)
    holdout = HOLDOUT if holdout is None else float(holdout)
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout must be a share of the training set in [0, 1), got {holdout}")
    policy = policy or default_policy(method)
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; valid: {', '.join(POLICIES)}")
    options = dict(options or {})
    popts = dict(policy_options or {})
    unknown = set(popts) - set(POLICIES[policy].options)
    if unknown:
        raise TypeError(f"policy {policy!r} has no option(s) {sorted(unknown)}; valid: "
                        f"{', '.join(POLICIES[policy].options) or 'none'}")
    if loss_fn is not None:
        if "loss_fn" not in spec.options:
            raise ValueError(f"method {method!r} is computed from the surrogate's class probabilities (a "
                             "cross-entropy closed form) and cannot use loss_fn=; MoSo-family methods (moso, "
                             "moso_class, recommended, ...) take it")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be a function (logits, targets) -> per-sample losses, got {loss_fn!r}")
        options["loss_fn"] = loss_fn
    train_set = as_pairs(train_set, input_key=input_key, label_key=label_key)
    if score_set is not None:
        score_set = as_pairs(score_set, input_key=input_key, label_key=label_key)
    view, view_kind = deterministic_view(train_set, score_set)
    labels = get_targets(view)
    if checkpoint_epochs is None:
        checkpoint_epochs = default_checkpoint_epochs(cfg.epochs)
    plan, needs_probs = resolve_plan(method, budget=budget, recipe_epochs=cfg.epochs,
                                     checkpoint_epochs=checkpoint_epochs, policy=policy, options=options,
                                     checkpoints_given=checkpoints is not None)
    needs_evidence = list(POLICIES[policy].evidence)
    memory_note = None
    if any(e != "probs" for e in needs_evidence) and not spec.aux:
        raise ValueError(f"policy {policy!r} needs the evidence {needs_evidence}, which method {method!r} does not "
                         "record")
    if checkpoints is not None:
        cks = as_checkpoints(checkpoints)
        stage(f"scoring {len(cks)} given checkpoints with {method}", progress)
        import time

        # The user's own module is only viewed through the logits hook while scoring (logits_view); one built here
        # keeps it.
        model = plain_module(model) if isinstance(model, torch.nn.Module) else returns_logits(plain_module(model()))
        _probe(model, view, labels, device)
        t0, c0 = time.perf_counter(), time.process_time()
        with logits_view(model):
            report = judge(model, cks, view, batch_size=score_batch_size, device=device,
                           num_workers=num_workers, given=True) if needs_probs else None
            scores, aux = scores_with_evidence(spec, model, cks, view, report=report, options=options,
                                               batch_size=score_batch_size, device=device, seed=seed,
                                               progress=progress, num_workers=num_workers)
        reports = [report] if report is not None else []
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        cpu_clock = utils_resolve_device(device).type == "cpu"
        cost = {"plan": "given checkpoints", "clock": "cpu" if cpu_clock else "wall", "surrogate_seconds": 0.0,
                "scoring_seconds": cpu if cpu_clock else wall, "prune_seconds": cpu if cpu_clock else wall,
                "wall_seconds": wall, "cost_fraction": None, "full_train_seconds": None,
                "cost_unknown": "the checkpoints were given: no training run was timed to compare with"}
        ck_info = [{"epoch": c.epoch, "lr": c.lr} for c in cks]
        plan = None
    else:
        probe = _fresh(model)
        _probe(probe, view, labels, device)
        plan, why = plan_for_memory(plan, method, options=options, budget=budget, model=probe,
                                    num_classes=len(np.unique(labels)), device=device)
        if why:
            memory_note = why
            warnings.warn(why, PlanMemoryWarning, stacklevel=2)
        stage(f"{plan.describe(cfg.epochs, checkpoint_epochs)}; scoring with {method}", progress)
        run = surrogate_scores([method], train_set, lambda: _fresh(model), config=cfg,
                               checkpoint_epochs=checkpoint_epochs, plan=plan, seed=seed, device=device,
                               batch_size=score_batch_size, num_workers=num_workers, progress=progress,
                               options={method: options}, evidence_for=[method] if needs_probs else [],
                               score_view=view, holdout=holdout if needs_probs else 0.0, work_dir=work_dir,
                               loss_fn=loss_fn)
        scores, aux = run.scores[method], run.aux.get(method, {})
        reports = run.evidence
        cost = run.cost(method)
        if budget is not None:
            cost["budget"] = float(budget)
            cost["expected_cost_fraction"] = plan.expected_cost(
                cfg.epochs, checkpoint_epochs, evidence=needs_probs, history=spec.history is not None,
                records_evidence="evidence_epochs" in spec.options)
        ck_info = [{"epoch": c.epoch, "lr": c.lr} for part in run.checkpoints for c in part]
    missing = [e for e in needs_evidence if e not in aux]
    if missing:
        raise ValueError(f"policy {policy!r} needs the evidence {missing}, which method {method!r} does not record")
    popts, extra = apply_credibility(policy, popts, reports)
    advice = budget_advice(plan, method, reports, recipe=cfg, checkpoint_epochs=checkpoint_epochs, n=len(labels),
                           options=options) if budget is not None and plan is not None else None
    if advice:
        extra["evidence_advice"] = advice
    stage(f"selecting: pruning ratio {ratio:g} of {len(labels)} samples, policy {policy}", progress)
    sel = selection(scores, ratio, labels=labels, policy=policy, seed=seed, **popts, **aux)
    decisions = {**sel.decisions, **extra, "view": view_kind}
    if memory_note:
        decisions["plan_memory"] = memory_note
    provenance = {"options": {k: repr(v) if not isinstance(v, (int, float, str, bool, type(None), list)) else v
                              for k, v in options.items()},
                  "policy_options": dict(policy_options or {}), "seed": seed, "recipe": dict(cfg.__dict__),
                  "plan": None if plan is None else plan.name, "checkpoints": ck_info,
                  "holdout": holdout if needs_probs and checkpoints is None else 0.0,
                  "fingerprint": io.dataset_fingerprint(view, labels), "environment": io.environment()}
    return PruneResult(sel.keep, scores, labels, float(ratio), method, policy, dict(aux), decisions, cost,
                       provenance, _class_names(train_set), train_set)


def _fresh(model):
    """A freshly initialised model: ``model()`` when given a constructor, else a copy of the module with
    every ``reset_parameters()`` called (under the run's seed, so the surrogate is reproducible). A model
    with parameters that no ``reset_parameters()`` re-initialises (a bare ``nn.Parameter`` in a module
    without one) is refused: the surrogate would start from the passed-in weights for those."""
    import copy

    if not isinstance(model, torch.nn.Module):
        fresh = model()
        if not isinstance(fresh, torch.nn.Module):
            raise TypeError(f"the model constructor returned {type(fresh).__name__}, not a torch.nn.Module")
        return returns_logits(plain_module(fresh))
    fresh = copy.deepcopy(plain_module(model))
    stuck = []
    for mod_name, m in fresh.named_modules():
        own = list(m.named_parameters(recurse=False))
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
        elif own:
            stuck += [f"{mod_name}.{n}" if mod_name else n for n, _ in own]
    if stuck:
        raise ValueError(f"cannot re-initialise the model: parameters {stuck[:5]}{' ...' if len(stuck) > 5 else ''} "
                         "belong to modules without reset_parameters(), so the surrogate would start from the "
                         "weights you passed. Pass a constructor instead, e.g. dp.prune(lambda: MyNet(), ...), "
                         "or give those modules a reset_parameters()")
    return returns_logits(fresh)


def _probe(model: torch.nn.Module, view, labels, device) -> None:
    """One forward pass of ``model`` on two samples, before anything trains: its output must hold (batch, classes)
    logits and every label must be one of its classes (:func:`dataprune.utils.check_logits`)."""
    from .data import iter_batches
    from .utils import model_dtype

    device = utils_resolve_device(device)
    was = model.training
    model.to(device).eval()
    rows = np.arange(min(2, len(labels)))
    with torch.no_grad(), logits_view(model):
        for _, x, y in iter_batches(view, rows, len(rows), device=device, dtype=model_dtype(model)):
            check_logits(model(x), y, labels=labels)
    model.train(was)


def _class_names(dataset):
    """The class names: a ``classes`` attribute (torchvision, image folders; through Subsets and views), or the
    ``ClassLabel`` names of a Hugging Face dataset's label column, the field the wrapping view
    (:class:`dataprune.data.views.PairView`) detected or was given; else None (the summary prints indices).
    Wrappers are followed through the attributes :data:`WRAPPED` (a Subset's ``dataset``, a user's ``base``...)."""
    key = None
    for _ in range(16):                             # (a wrapper that refers to itself ends the walk)
        if dataset is None:
            break
        names = getattr(dataset, "classes", None)
        key = getattr(dataset, "label_key", key)
        features = getattr(dataset, "features", None)
        if names is None and isinstance(key, str) and hasattr(features, "get"):
            names = getattr(features.get(key), "names", None)
        if names is not None:
            return list(names)
        dataset = next((inner for inner in (getattr(dataset, a, None) for a in WRAPPED)
                        if hasattr(inner, "__getitem__") and hasattr(inner, "__len__")
                        and not isinstance(inner, (np.ndarray, torch.Tensor))), None)
    return None


# Attributes under which a wrapping dataset keeps the one it wraps, for the class names.
WRAPPED = ("dataset", "base", "ds", "data_source")


def sample_paths(dataset):
    """File paths of the samples when the dataset reads files (image folders), else None."""
    positions = np.arange(len(dataset))
    while not hasattr(dataset, "files") and hasattr(dataset, "dataset") and hasattr(dataset, "indices"):
        positions = np.asarray(dataset.indices)[positions]
        dataset = dataset.dataset
    files = getattr(dataset, "files", None)
    return None if files is None else [files[int(i)] for i in positions]


__all__ = ["prune", "PruneResult", "default_policy", "sample_paths"]
