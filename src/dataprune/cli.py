"""The ``dataprune`` command: a thin layer over the library.

Every choice list and its help text is built from the registries (datasets, models, methods,
policies, plans, forms, backends, noise kinds, presets, suites), so they cannot drift.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

EPILOG = {
    "demo": """examples:
  dataprune demo                              # mnist5k: MoSo, the recommended default and random, ratios 0.3-0.9
  dataprune demo --out runs/demo --seeds 2    # also write results.csv, scores, indices and plots
  dataprune demo --label-noise 0.2 --out runs/noisy""",
    "train": """examples:
  dataprune train --dataset mnist5k --model cnn --epochs 10 --checkpoints 1,3,5,7,9 --out ckpts.pt
  dataprune train --dataset cifar10 --data-root ~/data --model resnet18 --epochs 200 --lr 0.1 \\
      --checkpoints even:10 --out cifar10-ckpts.pt
  dataprune train --dataset mnist5k --epochs 10 --dynamic dynamic --ratio 0.5 --out ckpts.pt  # prune while training""",
    "score": """examples:
  dataprune score --dataset mnist5k --method recommended --out scores.npy
  dataprune score --dataset mnist5k --method recommended --budget 0.25 --out cheap.npy
  dataprune score --dataset mnist5k --model cnn --method moso --checkpoints-file ckpts.pt --out scores.npy
  dataprune score --dataset cifar10 --data-root ~/data --model resnet18 --method moso --params last_layer \\
      --epochs 50 --checkpoints even:10 --partitions 4 --out cifar10-moso.npy""",
    "select": """examples:
  dataprune select --scores scores.npy --dataset mnist5k --ratio 0.7 --out keep.npy
  dataprune select --scores scores.npy --dataset mnist5k --ratio 0.5 --policy topk --out keep50.npy""",
    "prune": """examples:
  dataprune prune --dataset mnist5k --ratio 0.7 --out runs/prune70            # score + select, prints decisions
  dataprune prune --dataset mnist5k --ratio 0.7 --budget 0.25 --out runs/cheap
  dataprune prune --dataset imagefolder --data-root ~/pets --model resnet18 --ratio 0.5 --out runs/pets""",
    "report": """examples:
  dataprune report runs/prune70               # runs/prune70/report.html and its images
  dataprune report runs/prune70 --bench runs/mnist5k --force""",
    "evaluate": """examples:
  dataprune evaluate --dataset mnist5k --model cnn --indices keep.npy --epochs 10
  dataprune evaluate --dataset mnist5k --model cnn --indices keep.npy --seeds 3 --length steps --out res.csv""",
    "bench": """examples:
  dataprune bench --preset mnist5k-cpu --out runs/mnist5k                   # every baseline, 3 seeds
  dataprune bench --preset mnist5k-cpu --label-noise 0.2 --out runs/mnist5k-noisy
  dataprune bench --dataset digits --methods recommended,random,kcenter,aum+ccs --seeds 2 --out runs/digits
  dataprune bench --preset mnist5k-cpu --methods recommended,recommended@0.25,dual --out runs/cost
  dataprune bench --preset mnist5k-cpu --seeds 3,4 --out runs/m2 && \\
      dataprune bench --merge runs/mnist5k runs/m2 --out runs/all              # split by seed, then merge
  dataprune bench --suite robustness --jobs 2 --out runs/robustness
  dataprune bench --preset cifar10-resnet18 --data-root ~/data --device cuda --out runs/cifar10""",
    "list": """examples:
  dataprune list""",
}


class CLIError(Exception):
    pass


def _ratios(text: str) -> list[float]:
    try:
        out = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.3,0.5, got {text!r}") from None
    for r in out:
        if not 0 <= r < 1:
            raise argparse.ArgumentTypeError(f"pruning ratios must be in [0, 1), got {r}")
    return out


def _ratio(text: str) -> float:
    (r,) = _ratios(text) or [None]
    if r is None:
        raise argparse.ArgumentTypeError("expected a pruning ratio in [0, 1)")
    return r


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _seeds(text: str) -> list[int]:
    """``3`` = seeds 0,1,2; ``3,4,5`` = those seeds; ``2-4`` = 2,3,4."""
    text = text.strip()
    try:
        if "," in text:
            out = [int(t) for t in text.split(",") if t.strip()]
        elif "-" in text.lstrip("-"):
            a, b = text.split("-", 1)
            out = list(range(int(a), int(b) + 1))
        else:
            n = int(text)
            if n < 1:
                raise ValueError
            out = list(range(n))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes a count (3 = seeds 0,1,2), a list (3,4,5) or a range "
                                         f"(2-4; one seed: 4-4); got {text!r}") from None
    if not out or len(set(out)) != len(out) or min(out) < 0:
        raise argparse.ArgumentTypeError(f"--seeds needs distinct seeds >= 0, got {text!r}")
    return out


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _options(pairs) -> dict:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise CLIError(f"--set expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip().replace("-", "_")] = _value(v)
    return out


def parse_checkpoints(spec: str | None, total_epochs: int, seed: int = 0) -> list[int]:
    """``1,3,5`` | ``every:k`` | ``even:T`` | ``random:T`` -> sorted epochs; None = the default
    (:func:`dataprune.trajectory.default_checkpoint_epochs`: 10%, 30%, ..., 90% of the schedule)."""
    from .trajectory import choose_epochs, default_checkpoint_epochs

    if spec is None:
        return default_checkpoint_epochs(total_epochs)
    try:
        if ":" in spec:
            kind, val = spec.split(":", 1)
            n = int(val)
            if kind == "every":
                return choose_epochs(total_epochs, every=n)
            if kind in ("even", "random"):
                return choose_epochs(total_epochs, count=n, random=kind == "random", seed=seed)
            raise ValueError
        return choose_epochs(total_epochs, epochs=[int(t) for t in spec.split(",") if t.strip()])
    except ValueError as exc:
        msg = str(exc) if str(exc) else "unrecognised form"
        raise CLIError(f"--checkpoints {spec!r}: {msg}; expected a list like 1,3,5 or every:K, even:T, "
                       f"random:T (epochs 1..{total_epochs}, 0 = initialisation)") from None


# ------------------------------------------------------------- arguments ----

CHECKPOINTS_HELP = ("epochs kept for scoring: 1,3,5 | every:K | even:T | random:T (default: 10%%, 30%%, 50%%, 70%% "
                    "and 90%% of the epochs, e.g. 1,3,5,7,9 of 10 or 20,60,100,140,180 of 200)")


def _data_args(p, default="mnist5k"):
    from .data import DATASETS, NOISE_KINDS, NPY_NORMALIZE

    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=default, choices=list(DATASETS),
                   help="dataset name (default %s)" % (default or "mnist5k, or the preset's"))
    g.add_argument("--data-root", help="folder holding on-disk datasets (cifar10, cifar100, imagefolder, npy)")
    g.add_argument("--label-noise", type=float, default=0.0, metavar="RATE",
                   help="change this fraction of the training labels (the test set is never touched)")
    g.add_argument("--label-noise-kind", default="symmetric", choices=list(NOISE_KINDS),
                   help="symmetric: to a uniformly drawn other class; pair: class c -> c+1 (default %(default)s)")
    g.add_argument("--imbalance", type=float, default=1.0, metavar="R",
                   help="long-tailed training classes: the largest R times the smallest, sizes decaying "
                        "geometrically with the label (default 1: as shipped)")
    g.add_argument("--noise-seed", type=int, default=0,
                   help="seed of the generated variants: noise, long tail, --train-limit, --val-split (default 0)")
    g.add_argument("--image-size", type=int, help="imagefolder: resize images to this side (default 64)")
    g.add_argument("--normalize", choices=list(NPY_NORMALIZE),
                   help="npy: per-channel mean/std of the training set (train, the default) or none")
    g.add_argument("--train-limit", type=int, metavar="N",
                   help="use only N training samples, the same share of every class, drawn at random (fixed "
                        "by --noise-seed): for quick checks")
    g.add_argument("--val-split", type=float, default=0.0, metavar="F",
                   help="hold out this fraction of the training set (stratified) as validation data")


def _recipe_args(p, epochs=10, title="training recipe", length=False):
    g = p.add_argument_group(title)
    g.add_argument("--epochs", type=_positive_int, default=epochs, help="epochs (default %(default)s)")
    _recipe_rest(g)
    if length:
        g.add_argument("--length", default="epochs", choices=["epochs", "steps"],
                       help="how long a subset trains: the same epochs (default) or as many optimizer steps as "
                            "the full data")


def _recipe_rest(g):
    g.add_argument("--batch-size", type=_positive_int, help="batch size (default: the dataset's, see "
                   "`dataprune list`; 128 otherwise)")
    g.add_argument("--lr", type=float, help="peak learning rate of the cosine schedule (default: the "
                   "dataset's; 0.05 otherwise)")
    g.add_argument("--weight-decay", type=float, default=5e-4, help="default %(default)s")
    g.add_argument("--momentum", type=float, default=0.9, help="Nesterov momentum (default %(default)s)")
    g.add_argument("--augment", default="auto", choices=["auto", "none", "flip_crop"],
                   help="training augmentation; auto = the dataset's default (flip+crop for CIFAR/images)")


def _run_args(p, model_default="cnn", seed=True, threads=True):
    from .models import MODELS

    g = p.add_argument_group("run")
    g.add_argument("--model", default=model_default, help=f"model name: {', '.join(MODELS)} or torchvision.<name> "
                   f"(default {model_default or 'cnn, or the preset’s'})")
    g.add_argument("--device", help="cpu, cuda, cuda:1, mps ... (default: cuda if available)")
    if seed:
        g.add_argument("--seed", type=int, default=0, help="default %(default)s")
    g.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for on-disk datasets")
    if threads:
        g.add_argument("--threads", dest="compute_threads", type=_positive_int,
                       help="CPU compute threads (default: PyTorch's, usually one per core; fewer on a machine "
                            "that is busy with other work, where extra threads wait on each other)")
    g.add_argument("--quiet", action="store_true", help="print only the result (no progress, no log lines)")


def _scoring_args(p, method_default="recommended"):
    from .grads.engine import BACKENDS
    from .methods import METHODS
    from .methods.moso import FORMS

    _recipe_args(p, title="surrogate training (used when no --checkpoints-file is given)")
    p.add_argument("--checkpoints", help=CHECKPOINTS_HELP)
    p.add_argument("--partitions", type=_positive_int, default=1,
                   help="train one surrogate per each of K disjoint parts and score each part with its own "
                        "(default 1)")
    p.add_argument("--method", default=method_default, metavar="METHOD",
                   help=f"scoring method, one of: {', '.join(METHODS)} (default %(default)s)")
    p.add_argument("--budget", type=_fraction, metavar="F",
                   help="spend at most F of one full training run on pruning (surrogate + scoring): picks the best "
                        "plan expected to fit (see `dataprune list`) and records what it cost")
    p.add_argument("--checkpoints-file", help="checkpoints from `dataprune train` (skips surrogate training)")
    p.add_argument("--params", help="gradient methods: all | last_layer | comma-separated parameter names")
    p.add_argument("--form", choices=list(FORMS), help="MoSo form (default exact)")
    p.add_argument("--backend", choices=list(BACKENDS), help="per-sample gradient backend (default hooks)")
    p.add_argument("--score-batch-size", type=_positive_int, default=256, help="batch size for scoring (default 256)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra method option, repeatable")


def _grid_args(p):
    """Options shared by `demo` and `bench`; None means: the preset's, else the command's default."""
    _data_args(p, default=None)
    _run_args(p, model_default=None, seed=False, threads=False)
    g = p.add_argument_group("retraining recipe (the surrogate's too, unless --surrogate-epochs)")
    g.add_argument("--epochs", type=_positive_int, help="retraining epochs (default 10)")
    _recipe_rest(g)
    g.add_argument("--retrain-length", choices=["epochs", "steps"],
                   help="how long a subset retrains: same epochs (fewer steps, default) or same steps as the full data")
    g = p.add_argument_group("grid")
    g.add_argument("--surrogate-epochs", type=_positive_int, help="surrogate epochs (default: --epochs)")
    g.add_argument("--checkpoints", help=CHECKPOINTS_HELP)
    g.add_argument("--partitions", type=_positive_int, help="surrogates on K disjoint parts (default 1)")
    g.add_argument("--methods", type=_names, help="comma-separated; METHOD+POLICY selects with another "
                   "policy (aum+ccs), METHOD@F scores on a budget of F training runs (recommended@0.25)")
    g.add_argument("--ratios", type=_ratios, help="pruning ratios (default 0.3,0.5,0.7,0.9)")
    g.add_argument("--seeds", type=_seeds, help="a count (3 = seeds 0,1,2), a list (3,4,5) or a range (2-4) "
                   "(demo default 1, bench 3)")
    g.add_argument("--policy", help="selection policy for methods without their own (default class_balanced)")
    g.add_argument("--policy-set", action="append", metavar="POLICY.KEY=VALUE",
                   help="policy option, e.g. ccs.beta=0.2 (repeatable)")
    g.add_argument("--set", action="append", metavar="METHOD.KEY=VALUE",
                   help="method option, e.g. el2n.keep=easy (repeatable)")
    g.add_argument("--no-full", action="store_true",
                   help="skip the full-data retraining (the pruning cost is then estimated from the surrogate)")
    g.add_argument("--jobs", type=_positive_int,
                   help="work units run at once, in worker processes (default: CPU cores, at most 4; 1 with a "
                        "GPU); results do not depend on it")
    g.add_argument("--threads", type=_positive_int, default=1,
                   help="compute threads per work unit (default 1; part of the settings, since the numbers "
                        "depend on it)")
    g.add_argument("--out", help="folder for results.csv, scores/, indices/, results.md and the plots")
    g.add_argument("--force", action="store_true", help="start over in --out (else a run there resumes or extends)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .presets import SUITES
    from .select import POLICIES

    parser = argparse.ArgumentParser(prog="dataprune", description="Find the training samples a model can do "
                                     "without: MoSo data pruning, baselines and retraining.", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"dataprune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, help_):
        # No abbreviations: a misspelled or truncated option is an error, never another option.
        return sub.add_parser(name, help=help_, description=help_, epilog=EPILOG.get(name), allow_abbrev=False,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("demo", "run the whole job on mnist5k: surrogate; MoSo, the recommended default and random; "
                    "pruning; retraining")
    _grid_args(p)

    p = add("bench", "compare scoring methods: score once per method and seed, prune, retrain, tabulate")
    p.add_argument("--preset", help="fill unset options from a preset (see `dataprune list`)")
    p.add_argument("--suite", choices=list(SUITES), help="run a suite of generated settings (see `dataprune list`)")
    p.add_argument("--only", type=_names, help="with --suite: only these settings (names as printed by "
                   "`dataprune list`, e.g. mnist5k-cnn-pair40)")
    p.add_argument("--merge", nargs="+", metavar="DIR", help="merge these bench folders (same settings, other "
                   "seeds, methods or ratios) into --out")
    _grid_args(p)

    p = add("train", "train a surrogate and save the checkpoints chosen for scoring")
    _data_args(p)
    _run_args(p)
    _recipe_args(p)
    p.add_argument("--checkpoints", help=CHECKPOINTS_HELP)
    from .dynamic import METHODS as DYNAMIC_METHODS

    p.add_argument("--dynamic", choices=list(DYNAMIC_METHODS),
                   help="prune while training with this method (see docs: dynamic pruning); also writes "
                        "OUT.scores.npy, a static score for the next runs")
    p.add_argument("--ratio", type=float, default=0.5,
                   help="with --dynamic: infobatch's r (share of below-mean-loss samples skipped per epoch) or "
                        "the share of the data skipped per pruned epoch (dynamic, random_dynamic); default 0.5")
    p.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    p.add_argument("--force", action="store_true", help="overwrite --out")

    p = add("score", "score every training sample (higher = keep)")
    _data_args(p)
    _run_args(p)
    _scoring_args(p)
    p.add_argument("--evidence", action="store_true",
                   help="also record the surrogate's class probabilities (what --policy auto reads) for methods "
                        "that do not record them")
    p.add_argument("--out", required=True, help="scores file to write (.npy, with a .json sidecar)")
    p.add_argument("--work-dir", help="partial results for resuming an interrupted run (default: OUT.parts/, "
                   "removed after success)")
    p.add_argument("--force", action="store_true", help="overwrite --out")

    p = add("select", "turn scores into the indices to keep")
    _data_args(p)
    p.add_argument("--scores", required=True, help="scores .npy from `dataprune score`")
    p.add_argument("--ratio", type=_ratio, required=True, help="pruning ratio: fraction REMOVED, in [0, 1)")
    p.add_argument("--policy", choices=list(POLICIES),
                   help="; ".join(f"{k}: {v.summary}" for k, v in POLICIES.items())
                   + " (default: the scoring method's own policy, else class_balanced)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="policy option, e.g. beta=0.2 for ccs, cutoff=0.2 for noise_cutoff (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="indices file to write (.npy with a .json sidecar, and a .csv)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--quiet", action="store_true")

    p = add("prune", "score and select in one step; prints what it estimated and decided")
    _data_args(p)
    _run_args(p)
    _scoring_args(p)
    p.add_argument("--ratio", type=_ratio, required=True, help="pruning ratio: fraction REMOVED, in [0, 1)")
    p.add_argument("--policy", choices=list(POLICIES), help="selection policy (default: the method's own, else "
                   "class_balanced)")
    p.add_argument("--policy-set", action="append", metavar="KEY=VALUE", help="policy option (repeatable)")
    p.add_argument("--out", required=True, help="folder for keep.npy, keep.csv, scores.npy, result.json and the "
                   "report")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--force", action="store_true", help="overwrite the files in --out")

    p = add("report", "write the HTML report of a `dataprune prune` folder (kept and removed samples, why)")
    p.add_argument("folder", help="a folder written by `dataprune prune`")
    p.add_argument("--bench", help="a bench folder whose accuracy plots the report shows too")
    p.add_argument("--force", action="store_true", help="overwrite an existing report.html")
    p.add_argument("--quiet", action="store_true")

    p = add("evaluate", "retrain from scratch on kept indices and report test accuracy")
    _data_args(p)
    _run_args(p)
    _recipe_args(p, length=True)
    p.add_argument("--indices", help="indices .npy from `dataprune select` (default: all training data)")
    p.add_argument("--seeds", type=_positive_int, default=1, help="retrain with seeds 0..N-1 (default 1)")
    p.add_argument("--out", help="CSV file for the results")
    p.add_argument("--force", action="store_true", help="overwrite --out")

    add("list", "list datasets, models, methods, policies, plans, presets and suites")
    return parser


# ----------------------------------------------------------------- helpers --


class _Log:
    def __init__(self, quiet: bool):
        self.quiet = quiet
        if quiet:
            os.environ["DATAPRUNE_QUIET"] = "1"

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)


def _load_split(args, *, need_test: bool = True):
    """The data set the command line names; ``need_test=False`` for the commands that read its training set only
    (train, score, select, prune): an image folder may then lack ``val/``."""
    from .data import load_dataset

    split = load_dataset(args.dataset, root=os.path.expanduser(args.data_root) if args.data_root else None,
                         label_noise=args.label_noise, noise_kind=args.label_noise_kind, noise_seed=args.noise_seed,
                         imbalance=args.imbalance, train_limit=args.train_limit, val_split=args.val_split,
                         image_size=args.image_size, normalize=args.normalize, need_test=need_test)
    for part, ds in (("train", split.train), ("val", split.test)):
        while ds is not None and not hasattr(ds, "skipped") and hasattr(ds, "dataset"):
            ds = ds.dataset                          # through the generated variants' views to the folder
        skipped = getattr(ds, "skipped", None)
        if skipped:
            kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(skipped.items(), key=lambda kv: -kv[1]))
            n = sum(skipped.values())
            what = "files under {}/ are not images and were" if n > 1 else "file under {}/ is not an image and was"
            print(f"note: {n} {what.format(part)} not read ({kinds})", file=sys.stderr)
    return split


def _recipe(args, split, epochs=None, length="epochs"):
    from .data import DATASETS
    from .train import TrainConfig

    augment = args.augment
    augment = split.augment if augment == "auto" else (None if augment == "none" else augment)
    recipe = DATASETS[args.dataset].recipe
    return TrainConfig(epochs=epochs or args.epochs, batch_size=args.batch_size or recipe.get("batch_size", 128),
                       lr=args.lr or recipe.get("lr", 0.05), momentum=args.momentum, nesterov=args.momentum > 0,
                       weight_decay=args.weight_decay, augment=augment, length=length)


def _model_factory(args, split):
    from .models import ModelFactory, build_model

    build_model(args.model, split.num_classes, split.input_shape)  # fail early on a bad name
    return ModelFactory(args.model, split.num_classes, tuple(split.input_shape))


def _dataset_meta(args, split):
    return {"dataset": args.dataset, "data_root": args.data_root,
            **{k: v for k, v in split.options.items() if k != "root"}}


def _check_device(args):
    if getattr(args, "device", None):
        from .utils import resolve_device

        resolve_device(args.device)


def _method_options(args, method):
    from .methods import get_method

    spec = get_method(method)
    options = _options(args.set)
    if args.params:
        options["params"] = args.params if args.params in ("all", "last_layer") else _names(args.params)
    if args.form:
        options["form"] = args.form
    if args.backend:
        options["backend"] = args.backend
    spec.check_options(options)
    return options


# ---------------------------------------------------------------- commands --


DEMO = dict(dataset="mnist5k", model="cnn", epochs=10, checkpoints=None,
            methods=["moso", "recommended", "random"], ratios=[0.3, 0.5, 0.7, 0.9], seeds=[0])
BENCH = dict(DEMO, methods=None, seeds=[0, 1, 2])


def _dotted(pairs, what) -> dict:
    out: dict = {}
    for key, value in _options(pairs).items():
        if "." not in key:
            raise CLIError(f"{what} expects NAME.KEY=VALUE, got {key!r}")
        name, opt = key.split(".", 1)
        out.setdefault(name, {})[opt] = value
    return out


def _resolve_grid(args, defaults: dict, preset: dict | None = None) -> None:
    """Fill the unset grid options of ``args`` (:func:`dataprune.presets.resolve_grid`)."""
    from .presets import GRID_OPTIONS, resolve_grid

    try:
        resolved = resolve_grid({k: getattr(args, k, None) for k in GRID_OPTIONS}, preset, defaults)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    for key, value in resolved.items():
        setattr(args, key, value)


def _grid_spec(args, split):
    from .bench import GridSpec

    rcfg = _recipe(args, split, length=args.retrain_length)
    scfg = rcfg.replace(epochs=args.surrogate_epochs or rcfg.epochs, length="epochs")
    epochs = parse_checkpoints(args.checkpoints, scfg.epochs)
    return GridSpec(dataset=args.dataset, model=args.model, methods=list(args.methods), ratios=list(args.ratios),
                    seeds=list(args.seeds), surrogate=dict(scfg.__dict__), retrain=dict(rcfg.__dict__),
                    checkpoint_epochs=epochs, policy=args.policy, partitions=args.partitions,
                    label_noise=args.label_noise, options=_dotted(args.set, "--set"),
                    policy_options=_dotted(args.policy_set, "--policy-set"), data=_dataset_meta(args, split),
                    full=not args.no_full, threads=args.threads)


def _jobs(args):
    if args.jobs:
        return args.jobs
    import torch

    if (args.device and str(args.device).startswith("cuda")) or (args.device is None and torch.cuda.is_available()):
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def _run_grid(args, log, defaults: dict, title: str, preset: dict | None = None):
    from .bench import run_grid, validate
    from .io import output_lock
    from .report import markdown_table

    _resolve_grid(args, defaults, preset)
    _check_device(args)
    split = _load_split(args)
    make = _model_factory(args, split)
    spec = _grid_spec(args, split)
    validate(spec)                      # every check that can fail before any training
    log(f"dataprune {title}: {args.dataset} ({len(split.train)} train / {len(split.test)} test"
        + (f", {len(split.val)} validation" if split.val is not None else "")
        + (f", {args.label_noise:.0%} {args.label_noise_kind} label noise" if args.label_noise else "")
        + (f", long tail {args.imbalance:g}:1" if args.imbalance != 1 else "")
        + f"), model {args.model}, methods {', '.join(spec.methods)}, "
        f"ratios {', '.join(f'{r:g}' for r in spec.ratios)}, "
        f"seeds {spec.seeds}; surrogate {spec.surrogate['epochs']} epochs (checkpoints {spec.checkpoint_epochs}), "
        f"retraining {spec.retrain['epochs']} epochs at batch {spec.retrain['batch_size']}, lr {spec.retrain['lr']:g}; "
        f"{_jobs(args)} job(s) x {spec.threads} thread(s)")
    t0 = time.perf_counter()
    lock = output_lock(os.path.join(args.out, "run.json")) if args.out else _nullcontext()
    with lock:
        rows = run_grid(spec, split, make, args.out, device=args.device, jobs=_jobs(args), force=args.force, log=log)
    print(f"\n{title}: test accuracy (%) after retraining {spec.retrain['epochs']} epochs on the kept subset "
          f"({spec.policy} selection unless a method has its own policy or says +policy; mean ± std over seeds "
          f"{spec.seeds}); pruning cost in full-data training runs:\n")
    print(markdown_table(rows, spec.methods))
    log(f"done in {time.perf_counter() - t0:.0f}s" + (f"; outputs in {args.out}" if args.out else ""))
    return rows


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def cmd_demo(args, log):
    _run_grid(args, log, DEMO, "demo")


def cmd_bench(args, log):
    from .presets import get_preset

    if args.merge:
        from .bench import merge_runs
        from .report import markdown_table

        if not args.out:
            raise CLIError("--merge needs --out, the folder to write")
        rows = merge_runs(args.merge, args.out, force=args.force)
        methods = json.load(open(os.path.join(args.out, "run.json")))["methods"]
        print(markdown_table(rows, methods))
        log(f"merged {len(args.merge)} folders ({len(rows)} rows) into {args.out}")
        return
    if args.suite:
        return _run_suite(args, log)
    preset = get_preset(args.preset) if args.preset else None
    _run_grid(args, log, BENCH, "bench", preset)


def _run_suite(args, log):
    import copy

    from .presets import suite_runs
    from .report import write_suite_summary

    if not args.out:
        raise CLIError("--suite needs --out, the folder that holds one sub-folder per setting")
    runs = suite_runs(args.suite, args.only, {k: getattr(args, k) for k in ("methods", "ratios", "seeds",
                                                                             "val_split")})
    log(f"suite {args.suite}: {len(runs)} settings: {', '.join(r['name'] for r in runs)}")
    for run in runs:
        sub = copy.copy(args)
        sub.suite = None
        for k, v in run["options"].items():
            setattr(sub, k, v)
        sub.out = os.path.join(args.out, run["name"])
        log(f"\n=== {run['name']} ===")
        _run_grid(sub, log, BENCH, f"suite {args.suite}: {run['name']}", run["preset"])
    write_suite_summary(args.out, [r["name"] for r in runs])
    log(f"suite summary: {os.path.join(args.out, 'summary.md')}")


def cmd_train(args, log):
    from . import distributed as dist
    from .io import check_writable, dataset_fingerprint, output_lock
    from .train import train
    from .trajectory import save_checkpoints
    from .utils import seed_everything

    check_writable(args.out, overwrite=args.force)
    _check_device(args)
    split = _load_split(args, need_test=False)
    make = _model_factory(args, split)
    cfg = _recipe(args, split)
    epochs = parse_checkpoints(args.checkpoints, cfg.epochs)
    scores_out = args.out + ".scores.npy"
    if args.dynamic:
        from .dynamic import DynamicPruner

        check_writable(scores_out, overwrite=args.force)
        if not 0.0 <= args.ratio < 1.0:
            raise CLIError(f"--ratio must be in [0, 1), got {args.ratio}")
    with output_lock(args.out) if dist.rank() == 0 else _nullcontext():
        seed_everything(args.seed)
        model = make()
        pruner = None
        if args.dynamic:
            pruner = DynamicPruner(split.train, model=model, epochs=cfg.epochs, ratio=args.ratio, method=args.dynamic,
                                   seed=args.seed)
        # Killed part way, the same command continues after the last epoch written to OUT.progress.
        key = json.loads(json.dumps({**_dataset_meta(args, split), "model": args.model, "recipe": dict(cfg.__dict__),
                                     "seed": args.seed, "checkpoints": epochs, "dynamic": args.dynamic,
                                     "ratio": args.ratio if args.dynamic else None,
                                     "fingerprint": dataset_fingerprint(split.train)}, default=str))
        res = train(model, split.train, config=cfg, seed=args.seed, device=args.device, checkpoint_epochs=epochs,
                    num_workers=args.num_workers, progress=not args.quiet, pruner=pruner,
                    resume_file=args.out + ".progress", resume_key=key)
        if dist.rank() != 0:
            return
        meta = {**_dataset_meta(args, split), "model": args.model, "recipe": dict(cfg.__dict__), "seed": args.seed,
                "fingerprint": dataset_fingerprint(split.train), "history": res.history}
        if pruner is not None:
            pruner.close()
            meta["dynamic"] = {"method": args.dynamic, "ratio": args.ratio, "saved_fraction": pruner.saved_fraction,
                               "kept_per_epoch": pruner.kept_counts, "evidence": pruner.evidence_decision}
            from .io import save_array

            save_array(scores_out, pruner.scores, {**meta["dynamic"], "kind": "scores",
                                                   "method": f"dynamic:{args.dynamic}",
                                                   "fingerprint": meta["fingerprint"]}, overwrite=args.force)
            log(f"dynamic pruning ({args.dynamic}, ratio {args.ratio:g}): skipped {100 * pruner.saved_fraction:.1f}% "
                f"of the per-sample passes; scores for a static subset in {scores_out}")
            ev = pruner.evidence_decision
            if ev:
                whole = ev.get("classes_kept_whole") or []
                if not ev["credible"]:
                    log(f"label evidence (epochs {ev['evidence_epochs']}): nothing set aside: "
                        f"{ev.get('why', 'not credible')}")
                else:
                    log(f"label evidence (epochs {ev['evidence_epochs']}): set aside {int(pruner.suspect.sum())} "
                        "samples whose labels the run's predictions contradict"
                        + (f"; classes {whole} kept whole (flagged far above the overall "
                           f"{100 * ev['flagged_share']:.1f}%, or hardly recognised: not yet learnt, not noise)"
                           if whole else ""))
        save_checkpoints(res.checkpoints, args.out, overwrite=args.force, meta=meta)
        if os.path.exists(args.out + ".progress"):
            os.remove(args.out + ".progress")
    log(f"trained {cfg.epochs} epochs in {res.seconds:.1f}s (final train accuracy "
        f"{res.history[-1]['train_acc']:.3f}); saved {len(res.checkpoints)} checkpoints "
        f"(epochs {[c.epoch for c in res.checkpoints]}) to {args.out}")


def cmd_score(args, log):
    from . import distributed as dist
    from . import io
    from .evidence import HOLDOUT, judged_by_neighbours
    from .methods import get_method
    from .pipeline import advice_text, budget_advice, plan_for_memory, resolve_plan, surrogate_scores
    from .trajectory import load_checkpoints

    if not args.out.endswith(".npy"):
        raise CLIError(f"--out must end in .npy, got {args.out!r}")
    io.check_writable(args.out, overwrite=args.force)
    _check_device(args)
    spec = get_method(args.method)
    options = _method_options(args, args.method)
    split = _load_split(args, need_test=False)
    make = _model_factory(args, split)
    cfg = _recipe(args, split)
    fingerprint = io.dataset_fingerprint(split.train)
    checkpoints, ck_meta = None, {}
    if args.checkpoints_file:
        if args.budget is not None:
            raise CLIError("--budget buys a cheaper surrogate; with --checkpoints-file there is none to train")
        checkpoints, ck_meta = load_checkpoints(args.checkpoints_file)
        io.check_fingerprint(ck_meta.get("fingerprint"), fingerprint, args.checkpoints_file)
        epochs = [c.epoch for c in checkpoints]
    else:
        epochs = parse_checkpoints(args.checkpoints, cfg.epochs, seed=args.seed)
    # The same plan decision as dp.prune and the bench.
    plan, needs_probs = resolve_plan(args.method, budget=args.budget, recipe_epochs=cfg.epochs,
                                     checkpoint_epochs=epochs, options=options, partitions=args.partitions,
                                     checkpoints_given=checkpoints is not None)
    needs_probs = needs_probs or args.evidence
    memory_note = None
    if checkpoints is None:                    # the full plan where it fits in memory, else the head plan
        plan, memory_note = plan_for_memory(plan, args.method, options=options, budget=args.budget, model=make(),
                                            num_classes=split.num_classes, device=args.device)
        if memory_note:
            log(memory_note)
    # One expected cost, the one the plan was chosen by, in the log and in the sidecar.
    expected = plan.expected_cost(cfg.epochs, epochs, evidence=needs_probs, history=spec.history is not None,
                                  records_evidence="evidence_epochs" in spec.options) \
        if checkpoints is None else None
    work_dir = args.work_dir or args.out + ".parts"
    with io.output_lock(args.out) if dist.rank() == 0 else _nullcontext():
        if args.budget is not None:
            log(f"budget {args.budget:g}: {plan.name} ({plan.describe(cfg.epochs, epochs)}), expected cost "
                f"{expected:.3f} of a training run")
        run = surrogate_scores([args.method], split.train, make, config=cfg, checkpoint_epochs=epochs,
                               plan=None if checkpoints is not None else plan, partitions=args.partitions,
                               seed=args.seed, device=args.device, batch_size=args.score_batch_size,
                               num_workers=args.num_workers, progress=not args.quiet and dist.rank() == 0,
                               options={args.method: options}, checkpoints=checkpoints, work_dir=work_dir,
                               evidence_for=[args.method] if needs_probs else [], holdout=HOLDOUT)
        scores = run.scores[args.method]
        if dist.rank() != 0:
            return
        cost = run.cost(args.method)
        if args.budget is not None:
            cost.update(budget=args.budget, expected_cost_fraction=expected)
        meta = io.scores_meta(
            args.method, fingerprint=fingerprint, options=options,
            checkpoints=[{"epoch": c.epoch, "lr": c.lr} for part in run.checkpoints for c in part],
            evidence_report=run.evidence or None, **_dataset_meta(args, split), model=args.model, seed=args.seed,
            partitions=args.partitions, surrogate=ck_meta.get("recipe", dict(cfg.__dict__)),
            checkpoints_file=args.checkpoints_file, seconds=run.seconds[args.method],
            surrogate_seconds=run.surrogate_seconds, cost=cost)
        if args.method in run.aux:
            meta["aux"] = io.save_aux(args.out, run.aux[args.method])
        advice = budget_advice(plan, args.method, run.evidence, recipe=cfg, checkpoint_epochs=epochs,
                               n=len(split.train) // max(args.partitions, 1), options=options,
                               partitions=args.partitions) \
            if args.budget is not None and checkpoints is None else None
        if advice:
            meta["evidence_advice"] = advice
        if memory_note:
            meta["plan_memory"] = memory_note
        io.save_array(args.out, scores, meta, overwrite=args.force)
        if not args.work_dir:
            io.PartStore(work_dir, {}).clear()
    finite = scores[np.isfinite(scores)]
    unit = "s of CPU time" if cost["clock"] == "cpu" else "s"
    log(f"scored {len(scores)} samples with {args.method}: surrogate {cost['surrogate_seconds']:.1f}{unit}, scoring "
        f"{cost['scoring_seconds']:.1f}{unit}"
        + (f" = {cost['cost_fraction']:.2f} of one full training run (estimated from the surrogate's speed)"
           if cost.get("cost_fraction") is not None else f" ({cost.get('cost_unknown', 'cost fraction unknown')})")
        + f"; range [{finite.min():.4g}, {finite.max():.4g}]; wrote {args.out}")
    for report in run.evidence or []:
        if judged_by_neighbours(report):
            log("probabilities not credible: " + report.get("why", ""))       # the neighbour labels judged instead
        elif (report or {}).get("credible") is False:
            log("label evidence not credible: " + report.get("why", ""))
        elif (report or {}).get("caution"):
            log("caution: " + report["caution"])
    if advice:
        log(advice_text(advice))


def cmd_select(args, log):
    from . import io
    from .data import get_targets
    from .prune import default_policy
    from .select import POLICIES, selection

    if not args.out.endswith(".npy"):
        raise CLIError(f"--out must end in .npy, got {args.out!r}")
    io.check_writable(args.out, overwrite=args.force)
    if os.path.exists(args.out[:-4] + ".csv") and not args.force:
        raise io.OutputExistsError(args.out[:-4] + ".csv")
    scores, meta = io.load_array(args.scores)
    if meta.get("kind") not in (None, "scores"):
        raise CLIError(f"{args.scores} holds {meta.get('kind')}, not scores")
    split = _load_split(args, need_test=False)
    io.check_fingerprint(meta.get("fingerprint"), io.dataset_fingerprint(split.train), args.scores,
                         expected_data=meta, actual_data=_dataset_meta(args, split))
    labels = get_targets(split.train)
    method = meta.get("method")
    from .methods import METHODS

    policy = args.policy or (default_policy(method) if method in METHODS else "class_balanced")
    popts = _options(args.set)
    evidence = io.load_aux(args.scores, meta) if meta.get("aux") else {}
    missing = [e for e in POLICIES[policy].evidence if e not in evidence]
    if missing:
        raise CLIError(f"policy {policy!r} needs the per-sample evidence ({', '.join(missing)}) recorded with the "
                       f"scores; {args.scores} was made by {method or 'an unknown method'} without it. Score with "
                       f"--method recommended (or add --evidence to `dataprune score`)")
    from .evidence import apply_credibility

    popts, extra = apply_credibility(policy, popts, meta.get("evidence_report"))
    if meta.get("evidence_advice"):
        extra["evidence_advice"] = meta["evidence_advice"]
    sel = selection(scores, args.ratio, labels=labels, policy=policy, seed=args.seed, num_samples=len(split.train),
                    **popts, **evidence)
    sel.decisions.update(extra)
    out_meta = {"kind": "indices", "ratio": args.ratio, "policy": policy, "seed": args.seed, "policy_options": popts,
                "decisions": sel.decisions, "scores_file": os.path.abspath(args.scores), "method": method,
                **_dataset_meta(args, split), "fingerprint": io.dataset_fingerprint(split.train)}
    io.save_array(args.out, sel.keep, out_meta, overwrite=args.force)
    _write_csv(args.out[:-4] + ".csv", sel.keep, labels, scores, split)
    from .prune import PruneResult

    result = PruneResult(sel.keep, scores, labels, args.ratio, method or "?", policy, {}, sel.decisions)
    log(result.summary() + f"\nwrote {args.out} and {args.out[:-4] + '.csv'}")


def _write_csv(path, keep, labels, scores, split):
    from .prune import PruneResult, sample_paths

    PruneResult(keep, scores, labels, 0.0, "", "").to_csv(path, overwrite=True, positions=split.train_positions,
                                                          paths=sample_paths(split.train))


def cmd_prune(args, log):
    from . import io
    from .methods import get_method
    from .prune import RESULT_FILES, prune, sample_paths
    from .utils import stage

    if not args.force:
        for f in RESULT_FILES:
            if os.path.exists(os.path.join(args.out, f)):
                raise io.OutputExistsError(os.path.join(args.out, f), "pass --force to overwrite it")
    _check_device(args)
    options = _method_options(args, args.method)
    get_method(args.method)
    split = _load_split(args, need_test=False)
    make = _model_factory(args, split)
    cfg = _recipe(args, split)
    checkpoints = None
    if args.checkpoints_file:
        from .trajectory import load_checkpoints

        checkpoints, ck_meta = load_checkpoints(args.checkpoints_file)
        io.check_fingerprint(ck_meta.get("fingerprint"), io.dataset_fingerprint(split.train), args.checkpoints_file)
    work_dir = os.path.join(args.out, "parts")
    stage(f"{args.dataset}: {len(split.train)} training samples, {split.num_classes} classes; model {args.model}; "
          f"recipe {cfg.epochs} epochs at batch {cfg.batch_size}, lr {cfg.lr:g}", not args.quiet)
    if os.path.isdir(work_dir):
        log(f"resuming: reusing the finished parts in {work_dir} that match these settings")
    with io.output_lock(os.path.join(args.out, "result.json")):
        result = prune(make if checkpoints is None else make(), split.train, ratio=args.ratio, method=args.method,
                       budget=args.budget, checkpoints=checkpoints, policy=args.policy, config=cfg,
                       checkpoint_epochs=None if args.checkpoints is None else parse_checkpoints(args.checkpoints,
                                                                                                 cfg.epochs),
                       seed=args.seed, device=args.device, score_batch_size=args.score_batch_size, options=options,
                       policy_options=_options(args.policy_set), progress=not args.quiet,
                       num_workers=args.num_workers, work_dir=work_dir)
        if io.REUSED["surrogates"] or io.REUSED["parts"]:
            log(f"resumed: reused {io.REUSED['surrogates']} trained surrogate(s) and {io.REUSED['parts']} scored "
                "checkpoint(s) from the interrupted run")
        result.provenance.update(_dataset_meta(args, split), model=args.model)
        result.save(args.out, overwrite=True, positions=split.train_positions, paths=sample_paths(split.train))
        io.PartStore(work_dir, {}).clear()          # finished: the parts are not needed any more
        if not args.no_report:
            stage("writing the report", not args.quiet)
        page = None if args.no_report else result.report(args.out, overwrite=True)
    print(result.summary())
    log(f"wrote {', '.join(RESULT_FILES)}" + (f" and {os.path.basename(page)}" if page else "") + f" in {args.out}")


def cmd_report(args, log):
    from . import io
    from .data import load_dataset
    from .prune import PruneResult

    for f in ("keep.npy", "scores.npy", "result.json"):
        if not os.path.isfile(os.path.join(args.folder, f)):
            raise CLIError(f"{args.folder} is not a `dataprune prune` folder (no {f})")
    if args.bench is not None and not os.path.isfile(os.path.join(args.bench, "results.csv")):
        raise CLIError(f"--bench {args.bench!r} is not a bench folder (no results.csv there); pass a folder "
                       "written by `dataprune bench`, or leave --bench out")
    if os.path.exists(os.path.join(args.folder, "report.html")) and not args.force:
        raise io.OutputExistsError(os.path.join(args.folder, "report.html"), "pass --force to overwrite it")
    result = PruneResult.load(args.folder)
    prov = result.provenance
    dataset = None
    if prov.get("dataset"):
        try:
            settings = {k: prov[k] for k in io.DATA_KEYS if k in prov and k not in ("dataset", "data_root")}
            split = load_dataset(prov["dataset"], root=prov.get("data_root"), need_test=False, **settings)
            io.check_fingerprint(prov.get("fingerprint"), io.dataset_fingerprint(split.train),
                                 os.path.join(args.folder, "keep.npy"))
            dataset = split.train
        except (ValueError, FileNotFoundError, ImportError) as exc:
            log(f"(the dataset could not be loaded again, so the report shows tables instead of images: {exc})")
    else:
        log("(this result was saved from Python and names no built-in dataset, so the report shows tables "
            "instead of images; result.report(folder) in Python, where the dataset is at hand, draws them)")
    page = result.report(args.folder, dataset=dataset, bench_dir=args.bench, overwrite=True)
    print(page)


def cmd_evaluate(args, log):
    import csv
    import io as _io

    from . import io
    from .evaluate import retrain

    if args.out:
        if os.path.isdir(args.out):
            raise CLIError(f"--out {args.out} is a folder; name the CSV file to write, e.g. {args.out}/results.csv")
        io.check_writable(args.out, overwrite=args.force)
    _check_device(args)
    split = _load_split(args)
    make = _model_factory(args, split)
    cfg = _recipe(args, split, length=args.length)
    keep, meta = (None, {})
    if args.indices:
        keep, meta = io.load_array(args.indices)
        if meta.get("kind") not in (None, "indices"):
            raise CLIError(f"{args.indices} holds {meta.get('kind')}, not indices")
        keep = io.as_indices(keep, args.indices)
        io.check_fingerprint(meta.get("fingerprint"), io.dataset_fingerprint(split.train), args.indices,
                             expected_data=meta, actual_data=_dataset_meta(args, split))
    rows = []
    for seed in range(args.seeds):
        res = retrain(make, split.train, split.test, keep, config=cfg, seed=seed, device=args.device,
                      num_workers=args.num_workers, progress=not args.quiet, val_set=split.val)
        rows.append({"method": meta.get("method", "full" if keep is None else "given"),
                     "policy": meta.get("policy", ""), "plan": meta.get("plan", ""),
                     "ratio": float(meta.get("ratio", 0.0)), "seed": seed, "retrain_length": res["length"], **res})
        print(f"seed {seed}: kept {res['n_kept']} samples, {res['steps']} steps, test accuracy {res['test_acc']:.4f}"
              + (f", validation {res['val_acc']:.4f}" if "val_acc" in res else ""))
    accs = [r["test_acc"] for r in rows]
    print(f"test accuracy: {np.mean(accs):.4f} ± {np.std(accs):.4f} over {len(accs)} seed(s)")
    if args.out:
        from .results import RESULT_COLUMNS, _fmt

        buf = _io.StringIO()
        w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows({k: _fmt(r.get(k)) for k in RESULT_COLUMNS} for r in rows)
        io.write_bytes(args.out, buf.getvalue().encode(), overwrite=args.force)
        log(f"wrote {args.out}")


def cmd_list(args, log):
    from .data import DATASETS, NOISE_KINDS
    from .methods import METHODS
    from .models import MODELS
    from .pipeline import PLANS
    from .presets import PRESETS, SUITES, suite_settings
    from .select import POLICIES

    print("datasets (default training recipe):")
    for k, v in DATASETS.items():
        recipe = ", ".join(f"{a} {b}" for a, b in v.recipe.items())
        print(f"  {k:12s} {v.about}" + (f" [{recipe}]" if recipe else ""))
    print(f"  variants: --label-noise RATE --label-noise-kind {'|'.join(NOISE_KINDS)}, --imbalance R, "
          "--train-limit N, --val-split F")
    print("models:\n  " + ", ".join(MODELS) + " (torchvision.<name> with the vision extra)")
    print("methods (higher score = keep):")
    for k, v in METHODS.items():
        print(f"  {k:16s} {v.summary}" + (f" [policy {v.policy}]" if v.policy else ""))
    print("selection policies:")
    for k, v in POLICIES.items():
        print(f"  {k:16s} {v.summary}")
    from .dynamic import SUMMARIES

    print("pruning while training (bench methods; dataprune train --dynamic METHOD --ratio R):")
    for k, v in SUMMARIES.items():
        print(f"  {k:16s} {v}")
    print("plans a --budget F picks from (expected cost for a 10-epoch recipe, checkpoints 1,3,5,7,9; second "
          "column: with the label evidence of the recommended default):")
    for p in PLANS:
        ck = [1, 3, 5, 7, 9]
        print(f"  {p.name:24s} {p.expected_cost(10, ck):5.2f} "
              f"{p.expected_cost(10, ck, evidence=True, records_evidence=True):5.2f}  {p.describe(10, ck)}")
    print("bench presets:")
    for k, v in PRESETS.items():
        print(f"  {k:22s} {v['about']}")
    print("bench suites:")
    for k, v in SUITES.items():
        names = [s["name"] for s in suite_settings(k)]
        print(f"  {k:22s} {v['about']} ({len(names)} settings: {names[0]} ... {names[-1]})")


DISTRIBUTED_COMMANDS = ("train", "score")


def _init_distributed(args) -> None:
    """Under torchrun (WORLD_SIZE > 1): join the process group; only train and score run sharded."""
    from .distributed import init_from_env

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    if args.command not in DISTRIBUTED_COMMANDS:
        raise CLIError(f"`dataprune {args.command}` runs in one process; under torchrun use "
                       f"{' or '.join(DISTRIBUTED_COMMANDS)}")
    import torch.distributed as tdist

    args.device = init_from_env(args.device)
    if tdist.get_rank() != 0:
        args.quiet = True
        os.environ["DATAPRUNE_QUIET"] = "1"


COMMANDS = {"demo": cmd_demo, "bench": cmd_bench, "train": cmd_train, "score": cmd_score, "select": cmd_select,
            "prune": cmd_prune, "report": cmd_report, "evaluate": cmd_evaluate, "list": cmd_list}


# Commands that keep finished work on disk and pick it up when run again with the same arguments.
RESUMABLE = ("demo", "bench", "score", "prune", "train")


def main(argv=None) -> int:
    from .io import OutputExistsError, OutputLockedError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    import torch

    # --quiet and --threads hold for this command only (main may be called again in the same process).
    quiet_before, threads_before = os.environ.get("DATAPRUNE_QUIET"), torch.get_num_threads()
    log = _Log(getattr(args, "quiet", False))
    from .utils import Terminated, sigterm_raises, tune_cpu_allocator

    tune_cpu_allocator()
    finished = False
    try:
        with sigterm_raises():
            if getattr(args, "compute_threads", None):
                torch.set_num_threads(args.compute_threads)
            _init_distributed(args)
            log.quiet = getattr(args, "quiet", False)
            COMMANDS[args.command](args, log)
            finished = True
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        if args.command in RESUMABLE:
            what += "; what had finished is kept, and the same command resumes from it"
        print(f"dataprune {args.command}: {what}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except OutputExistsError as exc:
        if os.environ.get("DATAPRUNE_DEBUG"):
            raise
        print(f"dataprune {args.command}: error: {exc.path} already exists; pass --force to overwrite it",
              file=sys.stderr)
        return 2
    except (CLIError, ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError,
            OutputLockedError, FloatingPointError) as exc:
        if os.environ.get("DATAPRUNE_DEBUG"):
            raise
        print(f"dataprune {args.command}: error: {exc}", file=sys.stderr)
        # 1: the run failed (a diverging recipe: train() names the epoch and the learning rate); 2: bad input
        return 1 if isinstance(exc, FloatingPointError) else 2
    finally:
        from .distributed import shutdown

        shutdown(ok=finished)
        if quiet_before is None:
            os.environ.pop("DATAPRUNE_QUIET", None)
        else:
            os.environ["DATAPRUNE_QUIET"] = quiet_before
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
