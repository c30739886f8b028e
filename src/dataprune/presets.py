"""Benchmark presets and suites.

A preset fills in every option of ``dataprune bench`` that the command line leaves unset: the
paper's settings for GPU users, small CPU settings for everyone. A suite is a list of
settings (generated variants of the built-in data sets x architectures), each run as a grid
into its own sub-folder, with one summary table over all of them.
"""

from __future__ import annotations

import fnmatch

# Every registered baseline with the CPU presets (MoSo's variants are added by name where wanted).
CPU_METHODS = ["recommended", "moso", "random", "el2n", "grand", "forgetting", "aum", "aum+ccs", "entropy",
               "least_confidence", "dynunc", "tdds", "dual", "herding", "kcenter", "moderate", "ssp"]
PAPER_METHODS = ["recommended", "moso", "random", "el2n", "grand", "forgetting", "aum", "aum+ccs", "entropy",
                 "dynunc", "tdds", "dual", "herding", "kcenter", "moderate", "ssp"]

PRESETS: dict[str, dict] = {
    "mnist5k-cpu": dict(
        about="mnist5k, small CNN, 10-epoch surrogate and retraining at batch 32 (2 CPU cores: < 20 min)",
        dataset="mnist5k", model="cnn", epochs=10, surrogate_epochs=10, batch_size=32, lr=0.05,
        checkpoints="1,3,5,7,9", methods=CPU_METHODS, ratios=[0.3, 0.5, 0.7, 0.9], seeds=3),
    "digits-cpu": dict(
        about="digits, small CNN, 15 epochs at batch 32 (2 CPU cores: a few minutes)",
        dataset="digits", model="cnn", epochs=15, surrogate_epochs=15, batch_size=32, lr=0.05,
        checkpoints="1,4,7,10,13", methods=CPU_METHODS, ratios=[0.3, 0.5, 0.7, 0.9], seeds=3),
    "cifar10-resnet18": dict(
        about="the MoSo paper's CIFAR-10 setting: ResNet-18, 200 epochs, batch 128, lr 0.1 (GPU)",
        dataset="cifar10", model="resnet18", epochs=200, surrogate_epochs=50, batch_size=128, lr=0.1,
        checkpoints="even:10", methods=PAPER_METHODS, ratios=[0.3, 0.5, 0.7, 0.9], seeds=3),
    "cifar100-resnet18": dict(
        about="the MoSo paper's CIFAR-100 setting: ResNet-18, 200 epochs, batch 128, lr 0.1 (GPU)",
        dataset="cifar100", model="resnet18", epochs=200, surrogate_epochs=50, batch_size=128, lr=0.1,
        checkpoints="even:10", methods=PAPER_METHODS, ratios=[0.3, 0.5, 0.7, 0.9], seeds=3),
    "tinyimagenet-resnet50": dict(
        about="Tiny-ImageNet as an image folder (train/, val/ by class), ResNet-50, 90 epochs, 64 px (GPU)",
        dataset="imagefolder", model="resnet50", epochs=90, surrogate_epochs=30, batch_size=128, lr=0.1,
        image_size=64, checkpoints="even:10", methods=PAPER_METHODS, ratios=[0.3, 0.5, 0.7, 0.9], seeds=3),
}

# The generated variants of the robustness suite (load_dataset keywords; the test set is never touched).
VARIANTS = {
    "clean": {},
    "sym20": {"label_noise": 0.2, "label_noise_kind": "symmetric"},
    "sym40": {"label_noise": 0.4, "label_noise_kind": "symmetric"},
    "pair20": {"label_noise": 0.2, "label_noise_kind": "pair"},
    "pair40": {"label_noise": 0.4, "label_noise_kind": "pair"},
    "lt10": {"imbalance": 10.0},
    "lt50": {"imbalance": 50.0},
}
# The default and random against the best baselines of the earlier benches and DUAL, the cost anchor.
ROBUSTNESS_METHODS = ["recommended", "random", "kcenter", "moderate", "aum+ccs", "forgetting", "tdds", "dual"]

SUITES: dict[str, dict] = {
    "robustness": dict(
        about="recommended vs random vs the best baselines on mnist5k and digits: symmetric noise 0/20/40%, "
              "pair-flip 20/40%, long tail 10:1 and 50:1, cnn and mlp, ratios 0.3-0.9, 3 seeds, 20% validation split",
        datasets={"mnist5k": "mnist5k-cpu", "digits": "digits-cpu"}, models=["cnn", "mlp"], variants=VARIANTS,
        methods=ROBUSTNESS_METHODS, ratios=[0.3, 0.5, 0.7, 0.9], seeds=[0, 1, 2], val_split=0.2),
}


def get_preset(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def suite_settings(name: str, only=None) -> list[dict]:
    """The settings of suite ``name`` (``only``: names or shell patterns, e.g. ``mnist5k-*-pair*``)."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; valid suites: {', '.join(SUITES)}")
    suite = SUITES[name]
    out = []
    for dataset, preset in suite["datasets"].items():
        for model in suite["models"]:
            for variant, data in suite["variants"].items():
                out.append({"name": f"{dataset}-{model}-{variant}", "preset": preset, "model": model,
                            "data": {"dataset": dataset, "label_noise": 0.0, "label_noise_kind": "symmetric",
                                     "imbalance": 1.0, **data},
                            "methods": list(suite["methods"]), "ratios": list(suite["ratios"]),
                            "seeds": list(suite["seeds"]), "val_split": suite.get("val_split", 0.0)})
    if only:
        picked = [s for s in out if any(fnmatch.fnmatch(s["name"], pat) for pat in only)]
        unknown = [pat for pat in only if not any(fnmatch.fnmatch(s["name"], pat) for s in out)]
        if unknown:
            raise ValueError(f"--only {unknown} match no setting of suite {name!r}; e.g. {out[0]['name']}")
        out = picked
    return out


# Grid options a command line or a caller may leave unset, filled by resolve_grid.
GRID_OPTIONS = ("dataset", "model", "epochs", "surrogate_epochs", "batch_size", "lr", "checkpoints", "methods",
                "ratios", "seeds", "image_size", "partitions", "policy", "retrain_length")


def resolve_grid(given: dict, preset: dict | None, defaults: dict) -> dict:
    """The grid's options: each given one (not None), else the preset's, else ``defaults``.

    A given ``epochs`` also sets the surrogate's epochs unless ``surrogate_epochs`` is given, and drops the
    preset's checkpoints (both belong to the preset's own epoch count). A seed count becomes a list.
    Returns every key of :data:`GRID_OPTIONS`; ``methods`` must come from somewhere."""
    preset = preset or {}
    explicit_epochs = given.get("epochs") is not None
    out = {}
    for key in GRID_OPTIONS:
        value = given.get(key)
        if value is None:
            if key == "surrogate_epochs" and explicit_epochs:
                out[key] = None
                continue
            if key == "checkpoints" and explicit_epochs and "checkpoints" in preset:
                out[key] = None
                continue
            value = preset.get(key, defaults.get(key))
            if key == "seeds" and isinstance(value, int):
                value = list(range(value))
        out[key] = value
    if out["methods"] is None:
        raise ValueError("name the methods to compare with --methods (or pick a --preset)")
    out["partitions"] = out["partitions"] or 1
    out["policy"] = out["policy"] or "class_balanced"
    out["retrain_length"] = out["retrain_length"] or "epochs"
    return out


def suite_runs(name: str, only=None, given: dict | None = None) -> list[dict]:
    """One entry per setting of suite ``name``: ``{"name", "preset", "options"}`` where ``options`` are
    the setting's data and model, and its methods, ratios, seeds and validation split unless ``given``
    (the caller's explicit choices, None = unset) says otherwise."""
    given = given or {}
    runs = []
    for s in suite_settings(name, only):
        options = {**s["data"], "model": s["model"]}
        for key in ("methods", "ratios", "seeds"):
            options[key] = given[key] if given.get(key) is not None else s[key]
        if not given.get("val_split"):
            options["val_split"] = s.get("val_split", 0.0)
        runs.append({"name": s["name"], "preset": get_preset(s["preset"]), "options": options})
    return runs
