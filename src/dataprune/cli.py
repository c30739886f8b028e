"""The ``dataprune`` command: a thin layer over the library."""

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
  dataprune demo --out runs/demo --seeds 2    # also write results.csv, scores, indices and a plot
  dataprune demo --label-noise 0.2 --out runs/noisy""",
    "train": """examples:
  dataprune train --dataset mnist5k --model cnn --epochs 10 --checkpoints 1,3,5,7,9 --out ckpts.pt
  dataprune train --dataset cifar10 --data-root ~/data --model resnet18 --epochs 200 --lr 0.1 \\
      --checkpoints even:10 --out cifar10-ckpts.pt""",
    "score": """examples:
  dataprune score --dataset mnist5k --model cnn --method moso --out scores.npy
  dataprune score --dataset mnist5k --model cnn --method moso --checkpoints-file ckpts.pt --out scores.npy
  dataprune score --dataset cifar10 --data-root ~/data --model resnet18 --method moso --params last_layer \\
      --epochs 50 --checkpoints even:10 --partitions 4 --out cifar10-moso.npy""",
    "select": """examples:
  dataprune select --scores scores.npy --dataset mnist5k --ratio 0.7 --out keep.npy
  dataprune select --scores scores.npy --dataset mnist5k --ratio 0.5 --policy topk --out keep50.npy""",
    "evaluate": """examples:
  dataprune evaluate --dataset mnist5k --model cnn --indices keep.npy --epochs 10
  dataprune evaluate --dataset mnist5k --model cnn --indices keep.npy --seeds 3 --budget steps --out res.csv""",
    "bench": """examples:
  dataprune bench --preset mnist5k-cpu --out runs/mnist5k                   # every baseline, 3 seeds
  dataprune bench --preset mnist5k-cpu --label-noise 0.2 --out runs/mnist5k-noisy
  dataprune bench --dataset digits --methods moso,random,el2n,aum+ccs --seeds 2 --out runs/digits
  dataprune bench --preset cifar10-resnet18 --data-root ~/data --device cuda --out runs/cifar10
  dataprune bench --preset mnist5k-cpu --methods el2n --set el2n.keep=easy --out runs/el2n-easy""",
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


def parse_checkpoints(spec: str, total_epochs: int, seed: int = 0) -> list[int]:
    """``1,3,5`` | ``every:k`` | ``even:T`` | ``random:T`` -> sorted epochs."""
    from .trajectory import choose_epochs

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


def _recipe_args(p, epochs=10, prefix="", title="training recipe"):
    g = p.add_argument_group(title)
    g.add_argument(f"--{prefix}epochs", type=int, default=epochs, help="epochs (default %(default)s)")
    g.add_argument(f"--{prefix}batch-size", type=int, help="batch size (default: the dataset's, see "
                   "`dataprune list`; 128 otherwise)")
    g.add_argument(f"--{prefix}lr", type=float, help="peak learning rate of the cosine schedule (default: the "
                   "dataset's; 0.05 otherwise)")
    g.add_argument(f"--{prefix}weight-decay", type=float, default=5e-4, help="default %(default)s")
    g.add_argument(f"--{prefix}momentum", type=float, default=0.9, help="Nesterov momentum (default %(default)s)")
    g.add_argument(f"--{prefix}augment", default="auto", choices=["auto", "none", "flip_crop"],
                   help="training augmentation; auto = the dataset's default (flip+crop for CIFAR/images)")


def _common_args(p, model_default="cnn"):
    g = p.add_argument_group("run")
    g.add_argument("--model", default=model_default, help="model name: mlp, cnn, resnet18, resnet50 "
                   "(default cnn, or the preset's)")
    g.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    g.add_argument("--seed", type=int, default=0, help="default %(default)s")
    g.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for on-disk datasets")
    g.add_argument("--quiet", action="store_true", help="no progress bars or log lines")


def _surrogate_args(p, epochs=10, checkpoints="1,3,5,7,9"):
    _recipe_args(p, epochs=epochs, title="surrogate training (used when no --checkpoints-file is given)")
    p.add_argument("--checkpoints", default=checkpoints,
                   help="epochs kept for scoring: 1,3,5 | every:K | even:T | random:T (default %(default)s)")
    p.add_argument("--partitions", type=int, default=1,
                   help="train one surrogate per each of K disjoint parts and score each part with its own "
                        "(default 1)")


def _grid_args(p):
    """Options shared by `demo` and `bench`; None means: the preset's, else the command's default."""
    _data_args(p, default=None)
    _common_args(p, model_default=None)
    g = p.add_argument_group("retraining recipe (the surrogate's too, unless --surrogate-epochs)")
    g.add_argument("--epochs", type=int, help="retraining epochs (default 10)")
    g.add_argument("--batch-size", type=int, help="batch size (default: the dataset's, see `dataprune list`)")
    g.add_argument("--lr", type=float, help="peak learning rate (default: the dataset's)")
    g.add_argument("--weight-decay", type=float, default=5e-4, help="default %(default)s")
    g.add_argument("--momentum", type=float, default=0.9, help="Nesterov momentum (default %(default)s)")
    g.add_argument("--augment", default="auto", choices=["auto", "none", "flip_crop"],
                   help="training augmentation; auto = the dataset's default")
    g.add_argument("--budget", choices=["epochs", "steps"],
                   help="retraining budget: same epochs (fewer steps, default) or same steps as full data")
    g = p.add_argument_group("grid")
    g.add_argument("--surrogate-epochs", type=int, help="surrogate epochs (default: --epochs)")
    g.add_argument("--checkpoints", help="surrogate epochs scored: 1,3,5 | every:K | even:T | random:T "
                   "(default 1,3,5,7,9)")
    g.add_argument("--partitions", type=int, help="surrogates on K disjoint parts (default 1)")
    g.add_argument("--methods", type=_names, help="comma-separated; METHOD+POLICY selects with another "
                   "policy, e.g. aum+ccs (demo default: moso,random)")
    g.add_argument("--ratios", type=_ratios, help="pruning ratios (default 0.3,0.5,0.7,0.9)")
    g.add_argument("--seeds", type=int, help="number of seeds, 0..N-1 (demo default 1, bench 3)")
    g.add_argument("--policy", help="selection policy (default class_balanced)")
    g.add_argument("--policy-set", action="append", metavar="POLICY.KEY=VALUE",
                   help="policy option, e.g. ccs.beta=0.2 (repeatable)")
    g.add_argument("--set", action="append", metavar="METHOD.KEY=VALUE",
                   help="method option, e.g. el2n.keep=easy (repeatable)")
    g.add_argument("--out", help="folder for results.csv, scores/, indices/, results.md and the plot")
    g.add_argument("--force", action="store_true", help="start over in --out (else a run there resumes)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="dataprune", description="Find the training samples a model can do "
                                     "without: MoSo data pruning, baselines and retraining.")
    parser.add_argument("--version", action="version", version=f"dataprune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, help_):
        return sub.add_parser(name, help=help_, description=help_, epilog=EPILOG.get(name),
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("demo", "run the whole job on mnist5k: surrogate; MoSo, class-wise MoSo + auto and random; "
                    "pruning; retraining")
    _grid_args(p)

    p = add("bench", "compare scoring methods: score once per method and seed, prune, retrain, tabulate")
    p.add_argument("--preset", help="fill unset options from a preset (see `dataprune list`)")
    _grid_args(p)

    p = add("train", "train a surrogate and save the checkpoints chosen for scoring")
    _data_args(p)
    _common_args(p)
    _recipe_args(p)
    p.add_argument("--checkpoints", default="1,3,5,7,9", help="epochs kept: 1,3,5 | every:K | even:T | random:T")
    p.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    p.add_argument("--force", action="store_true", help="overwrite --out")

    p = add("score", "score every training sample (higher = keep)")
    _data_args(p)
    _common_args(p)
    _surrogate_args(p)
    p.add_argument("--method", default="moso", help="scoring method (see `dataprune list`; default moso)")
    p.add_argument("--checkpoints-file", help="checkpoints from `dataprune train` (skips surrogate training)")
    p.add_argument("--params", help="MoSo/gradient methods: all | last_layer | comma-separated parameter names")
    p.add_argument("--form", choices=["exact", "alignment"], help="MoSo form (default exact)")
    p.add_argument("--score-batch-size", type=int, default=256, help="batch size for scoring (default 256)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra method option, repeatable")
    p.add_argument("--out", required=True, help="scores file to write (.npy, with a .json sidecar)")
    p.add_argument("--work-dir", help="partial results for resuming an interrupted run (default: OUT.parts/, "
                   "removed after success)")
    p.add_argument("--force", action="store_true", help="overwrite --out")

    p = add("select", "turn scores into the indices to keep")
    _data_args(p)
    p.add_argument("--scores", required=True, help="scores .npy from `dataprune score`")
    p.add_argument("--ratio", type=float, required=True, help="pruning ratio: fraction REMOVED, in [0, 1)")
    p.add_argument("--policy", default="class_balanced",
                   help="topk | class_balanced | random | ccs | noise_cutoff | auto (default %(default)s); "
                        "noise_cutoff and auto need scores from --method moso_class or moso_norm")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="policy option, e.g. beta=0.2 for ccs, cutoff=0.2 for noise_cutoff (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="indices file to write (.npy, with a .json sidecar)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--quiet", action="store_true")

    p = add("evaluate", "retrain from scratch on kept indices and report test accuracy")
    _data_args(p)
    _common_args(p)
    _recipe_args(p)
    p.add_argument("--indices", help="indices .npy from `dataprune select` (default: all training data)")
    p.add_argument("--seeds", type=int, default=1, help="retrain with seeds 0..N-1 (default 1)")
    p.add_argument("--budget", default="epochs", choices=["epochs", "steps"],
                   help="same epochs on the subset (default) or as many steps as the full data")
    p.add_argument("--out", help="CSV file for the results")
    p.add_argument("--force", action="store_true", help="overwrite --out")

    add("list", "list datasets, models, methods and selection policies")
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


def _load_split(args):
    from .data import load_dataset

    return load_dataset(args.dataset, root=os.path.expanduser(args.data_root) if args.data_root else None,
                        label_noise=args.label_noise, noise_kind=args.label_noise_kind, noise_seed=args.noise_seed,
                        imbalance=args.imbalance, train_limit=args.train_limit, val_split=args.val_split,
                        image_size=args.image_size, normalize=args.normalize)


def _recipe(args, split, prefix=""):
    from .train import TrainConfig

    from .data import DATASETS

    g = lambda k: getattr(args, prefix + k)  # noqa: E731
    augment = g("augment")
    augment = split.augment if augment == "auto" else (None if augment == "none" else augment)
    recipe = DATASETS[args.dataset].recipe
    batch_size = g("batch_size") or recipe.get("batch_size", 128)
    lr = g("lr") or recipe.get("lr", 0.05)
    return TrainConfig(epochs=g("epochs"), batch_size=batch_size, lr=lr, momentum=g("momentum"),
                       nesterov=g("momentum") > 0, weight_decay=g("weight_decay"), augment=augment,
                       budget=getattr(args, "budget", "epochs"))


def _model_factory(args, split):
    from .models import build_model

    build_model(args.model, split.num_classes, split.input_shape)  # fail early on a bad name
    return lambda: build_model(args.model, split.num_classes, split.input_shape)


def _dataset_meta(args, split):
    return {"dataset": args.dataset, "data_root": args.data_root, **{k: v for k, v in split.options.items()
                                                                      if k != "root"}}


# ---------------------------------------------------------------- commands --


DEMO = dict(dataset="mnist5k", model="cnn", epochs=10, checkpoints="1,3,5,7,9",
            methods=["moso", "moso_class+auto", "random"],
            ratios=[0.3, 0.5, 0.7, 0.9], seeds=1)
BENCH = dict(DEMO, methods=None, seeds=3)


def _dotted(pairs, what) -> dict:
    out: dict = {}
    for key, value in _options(pairs).items():
        if "." not in key:
            raise CLIError(f"{what} expects NAME.KEY=VALUE, got {key!r}")
        name, opt = key.split(".", 1)
        out.setdefault(name, {})[opt] = value
    return out


def _resolve_grid(args, defaults: dict) -> None:
    """Fill unset grid options: explicit flags first, then the preset, then the command's defaults."""
    from .presets import get_preset

    preset = get_preset(args.preset) if getattr(args, "preset", None) else {}
    for key in ("dataset", "model", "epochs", "surrogate_epochs", "batch_size", "lr", "checkpoints", "methods",
                "ratios", "seeds", "image_size", "partitions", "policy", "budget"):
        if getattr(args, key, None) is None:
            setattr(args, key, preset.get(key, defaults.get(key)))
    if args.methods is None:
        raise CLIError("name the methods to compare with --methods (or pick a --preset)")
    args.partitions = args.partitions or 1
    args.policy = args.policy or "class_balanced"
    args.budget = args.budget or "epochs"


def _run_grid(args, log, defaults: dict, title: str):
    from .evaluate import GridSpec, markdown_table, run_grid, parse_entry
    from .methods import get_method
    from .select import POLICIES

    _resolve_grid(args, defaults)
    for m in args.methods:
        method, policy = parse_entry(m, args.policy)
        get_method(method)
        if policy not in POLICIES:
            raise CLIError(f"unknown policy {policy!r} in {m!r}; valid: {', '.join(POLICIES)}")
    split = _load_split(args)
    make = _model_factory(args, split)
    rcfg = _recipe(args, split)
    scfg = rcfg.replace(epochs=args.surrogate_epochs or rcfg.epochs, budget="epochs")
    epochs = parse_checkpoints(args.checkpoints, scfg.epochs)
    spec = GridSpec(dataset=args.dataset, model=args.model, methods=list(args.methods),
                    ratios=list(args.ratios), seeds=list(range(args.seeds)), surrogate=dict(scfg.__dict__),
                    retrain=dict(rcfg.__dict__), checkpoint_epochs=epochs, policy=args.policy,
                    partitions=args.partitions, label_noise=args.label_noise, options=_dotted(args.set, "--set"),
                    policy_options=_dotted(args.policy_set, "--policy-set"), data=_dataset_meta(args, split))
    log(f"dataprune {title}: {args.dataset} ({len(split.train)} train / {len(split.test)} test"
        + (f", {args.label_noise:.0%} label noise" if args.label_noise else "") + f"), model {args.model}, "
        f"methods {', '.join(args.methods)}, ratios {', '.join(f'{r:g}' for r in args.ratios)}, "
        f"{args.seeds} seed(s); surrogate {scfg.epochs} epochs (checkpoints {epochs}), retraining "
        f"{rcfg.epochs} epochs at batch {rcfg.batch_size}, lr {rcfg.lr:g}, budget {rcfg.budget}")
    t0 = time.perf_counter()
    rows = run_grid(spec, split, make, args.out, device=args.device, num_workers=args.num_workers,
                    progress=not args.quiet, force=args.force, log=log)
    print(f"\nTest accuracy (%) after retraining {rcfg.epochs} epochs on the kept subset "
          f"({args.policy} selection unless a method says +policy; mean ± std over {args.seeds} seed(s)):\n")
    print(markdown_table(rows))
    log(f"done in {time.perf_counter() - t0:.0f}s" + (f"; outputs in {args.out}" if args.out else ""))


def cmd_demo(args, log):
    _run_grid(args, log, DEMO, "demo")


def cmd_bench(args, log):
    _run_grid(args, log, BENCH, "bench")


def cmd_train(args, log):
    from .io import OutputExistsError, dataset_fingerprint
    from .train import train
    from .trajectory import save_checkpoints
    from .utils import seed_everything

    if os.path.exists(args.out) and not args.force:
        raise OutputExistsError(f"{args.out} already exists; pass --force to overwrite it")
    split = _load_split(args)
    make = _model_factory(args, split)
    cfg = _recipe(args, split)
    epochs = parse_checkpoints(args.checkpoints, cfg.epochs)
    seed_everything(args.seed)
    res = train(make(), split.train, config=cfg, seed=args.seed, device=args.device, checkpoint_epochs=epochs,
                num_workers=args.num_workers, progress=not args.quiet)
    from . import distributed as dist

    if dist.rank() != 0:
        return
    meta = {**_dataset_meta(args, split), "model": args.model, "recipe": dict(cfg.__dict__), "seed": args.seed,
            "fingerprint": dataset_fingerprint(split.train), "history": res.history}
    save_checkpoints(res.checkpoints, args.out, overwrite=args.force, meta=meta)
    log(f"trained {cfg.epochs} epochs in {res.seconds:.1f}s (final train accuracy "
        f"{res.history[-1]['train_acc']:.3f}); saved {len(res.checkpoints)} checkpoints "
        f"(epochs {[c.epoch for c in res.checkpoints]}) to {args.out}")


def cmd_score(args, log):
    from . import distributed as dist
    from . import io
    from .io import OutputExistsError
    from .pipeline import surrogate_scores
    from .trajectory import load_checkpoints

    if not args.out.endswith(".npy"):
        raise CLIError(f"--out must end in .npy, got {args.out!r}")
    for p in (args.out, io.sidecar_path(args.out)):
        if os.path.exists(p) and not args.force:
            raise OutputExistsError(f"{p} already exists; pass --force to overwrite it")
    split = _load_split(args)
    make = _model_factory(args, split)
    cfg = _recipe(args, split)
    options = _options(args.set)
    if args.params:
        options["params"] = args.params if args.params in ("all", "last_layer") else _names(args.params)
    if args.form:
        options["form"] = args.form
    fingerprint = io.dataset_fingerprint(split.train)
    checkpoints, ck_meta = None, {}
    if args.checkpoints_file:
        checkpoints, ck_meta = load_checkpoints(args.checkpoints_file)
        io.check_fingerprint(ck_meta.get("fingerprint"), fingerprint, args.checkpoints_file)
        epochs = [c.epoch for c in checkpoints]
    else:
        epochs = parse_checkpoints(args.checkpoints, cfg.epochs, seed=args.seed)
    work_dir = args.work_dir or args.out + ".parts"
    t0 = time.perf_counter()
    run = surrogate_scores([args.method], split.train, make, config=cfg, checkpoint_epochs=epochs,
                           partitions=args.partitions, seed=args.seed, device=args.device,
                           batch_size=args.score_batch_size, num_workers=args.num_workers,
                           progress=not args.quiet and dist.rank() == 0, options={args.method: options},
                           checkpoints=checkpoints, work_dir=work_dir)
    scores = run.scores[args.method]
    if dist.rank() != 0:
        return
    meta = {"kind": "scores", "method": args.method, "options": options, "higher_is": "keep",
            **_dataset_meta(args, split), "model": args.model, "seed": args.seed, "partitions": args.partitions,
            "surrogate": ck_meta.get("recipe", dict(cfg.__dict__)),
            "checkpoints": [{"epoch": c.epoch, "lr": c.lr} for part in run.checkpoints for c in part],
            "checkpoints_file": args.checkpoints_file, "seconds": run.seconds[args.method],
            "surrogate_seconds": run.surrogate_seconds, "fingerprint": fingerprint}
    if args.method in run.aux:
        meta["aux"] = io.save_aux(args.out, run.aux[args.method])
    io.save_array(args.out, scores, meta, overwrite=args.force)
    if not args.work_dir:
        io.PartStore(work_dir, {}).clear()
    finite = scores[np.isfinite(scores)]
    log(f"scored {len(scores)} samples with {args.method} in {time.perf_counter() - t0:.1f}s "
        f"(surrogate {run.surrogate_seconds:.1f}s, scoring {run.seconds[args.method]:.1f}s); "
        f"range [{finite.min():.4g}, {finite.max():.4g}]; wrote {args.out}")


def cmd_select(args, log):
    from . import io
    from .data import get_targets
    from .select import select

    split = _load_split(args)
    scores, meta = io.load_array(args.scores)
    if meta.get("kind") not in (None, "scores"):
        raise CLIError(f"{args.scores} holds {meta.get('kind')}, not scores")
    io.check_fingerprint(meta.get("fingerprint"), io.dataset_fingerprint(split.train), args.scores)
    labels = get_targets(split.train)
    popts = _options(args.set)
    if args.policy in ("noise_cutoff", "auto"):
        aux = io.load_aux(args.scores, meta)
        if "gradnorm" not in aux:
            raise CLIError(f"policy {args.policy!r} needs the per-sample evidence that `dataprune score --method "
                           f"moso_class` (or moso_norm) saves next to the scores; {args.scores} was made by "
                           f"{meta.get('method', 'an unknown method')} and has none")
        popts["evidence"] = aux["gradnorm"]
        if args.policy == "auto":
            popts["disagreement"] = aux["disagreement"]
    keep = select(scores, args.ratio, labels=labels, policy=args.policy, seed=args.seed,
                  num_samples=len(split.train), **popts)
    out_meta = {"kind": "indices", "ratio": args.ratio, "policy": args.policy, "seed": args.seed,
                "policy_options": {k: v for k, v in popts.items() if not isinstance(v, np.ndarray)},
                "scores_file": os.path.abspath(args.scores), "method": meta.get("method"),
                **_dataset_meta(args, split), "fingerprint": io.dataset_fingerprint(split.train)}
    if args.policy == "auto":
        from .select import auto_plan
        plan = auto_plan(popts["disagreement"], args.ratio)
        out_meta.update(plan)
        log(f"auto: {plan['estimated_noise']:.1%} of the labels look wrong to the surrogate; "
            f"setting aside {plan['cutoff']:.1%} of each class by gradient norm, then "
            + ("keeping the highest scores" if plan["sampling"] == "top" else "sampling evenly across score strata"))
    if not args.out.endswith(".npy"):
        raise CLIError(f"--out must end in .npy, got {args.out!r}")
    io.save_array(args.out, keep, out_meta, overwrite=args.force)
    log(f"kept {len(keep)} of {len(scores)} samples (pruning ratio {args.ratio:g}, {args.policy}); wrote {args.out}")


def cmd_evaluate(args, log):
    from . import io
    from .evaluate import RESULT_COLUMNS, retrain

    if args.out and os.path.exists(args.out) and not args.force:
        raise io.OutputExistsError(f"{args.out} already exists; pass --force to overwrite it")
    split = _load_split(args)
    make = _model_factory(args, split)
    cfg = _recipe(args, split)
    keep, meta = (None, {})
    if args.indices:
        keep, meta = io.load_array(args.indices)
        if meta.get("kind") not in (None, "indices"):
            raise CLIError(f"{args.indices} holds {meta.get('kind')}, not indices")
        io.check_fingerprint(meta.get("fingerprint"), io.dataset_fingerprint(split.train), args.indices)
    rows = []
    for seed in range(args.seeds):
        res = retrain(make, split.train, split.test, keep, config=cfg, seed=seed, device=args.device,
                      num_workers=args.num_workers, progress=not args.quiet)
        rows.append({"method": meta.get("method", "full" if keep is None else "given"),
                     "ratio": float(meta.get("ratio", 0.0)), "seed": seed, "score_seconds": "", **res})
        print(f"seed {seed}: kept {res['n_kept']} samples, {res['steps']} steps, "
              f"test accuracy {res['test_acc']:.4f}")
    accs = [r["test_acc"] for r in rows]
    print(f"test accuracy: {np.mean(accs):.4f} ± {np.std(accs):.4f} over {len(accs)} seed(s)")
    if args.out:
        import csv
        import io as _io

        buf = _io.StringIO()
        w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        io.write_bytes(args.out, buf.getvalue().encode(), overwrite=args.force)
        log(f"wrote {args.out}")


def cmd_list(args, log):
    from .data import DATASETS
    from .methods import METHODS
    from .models import MODELS
    from .select import POLICIES

    print("datasets (default training recipe):")
    for k, v in DATASETS.items():
        recipe = ", ".join(f"{a} {b}" for a, b in v.recipe.items())
        print(f"  {k:12s} {v.about}" + (f" [{recipe}]" if recipe else ""))
    print("models:\n  " + ", ".join(MODELS) + " (torchvision.<name> with the vision extra)")
    print("methods (higher score = keep):")
    for k, v in METHODS.items():
        print(f"  {k:12s} {v.summary}")
    print("selection policies:\n  " + ", ".join(POLICIES))
    from .presets import PRESETS

    print("bench presets:")
    for k, v in PRESETS.items():
        print(f"  {k:22s} {v['about']}")


DISTRIBUTED_COMMANDS = ("train", "score")


def _init_distributed(args) -> None:
    """Under torchrun (WORLD_SIZE > 1): join the process group; only train and score run sharded."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return
    if args.command not in DISTRIBUTED_COMMANDS:
        raise CLIError(f"`dataprune {args.command}` runs in one process; under torchrun use "
                       f"{' or '.join(DISTRIBUTED_COMMANDS)}")
    import torch
    import torch.distributed as tdist

    if not tdist.is_initialized():
        use_cuda = torch.cuda.is_available() and (args.device is None or str(args.device).startswith("cuda"))
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            args.device = f"cuda:{local}"
        tdist.init_process_group("nccl" if use_cuda else "gloo")
    if tdist.get_rank() != 0:
        args.quiet = True
        os.environ["DATAPRUNE_QUIET"] = "1"


COMMANDS = {"demo": cmd_demo, "bench": cmd_bench, "train": cmd_train, "score": cmd_score, "select": cmd_select,
            "evaluate": cmd_evaluate, "list": cmd_list}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    log = _Log(getattr(args, "quiet", False))
    from .utils import tune_cpu_allocator

    tune_cpu_allocator()
    try:
        _init_distributed(args)
        log.quiet = getattr(args, "quiet", False)
        COMMANDS[args.command](args, log)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError) as exc:
        if os.environ.get("DATAPRUNE_DEBUG"):
            raise
        print(f"dataprune {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        import torch.distributed as tdist

        if tdist.is_available() and tdist.is_initialized():
            tdist.destroy_process_group()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
