"""Benchmark presets: the paper's settings for GPU users, small CPU settings for everyone.

A preset fills in every option of ``dataprune bench`` that the command line leaves unset.
"""

from __future__ import annotations

# Every registered baseline with the CPU presets (MoSo's variants are added by name where wanted).
CPU_METHODS = ["moso", "random", "el2n", "grand", "forgetting", "aum", "aum+ccs", "entropy", "least_confidence",
               "dynunc", "tdds", "herding", "kcenter", "moderate", "ssp"]
PAPER_METHODS = ["moso", "random", "el2n", "grand", "forgetting", "aum", "aum+ccs", "entropy", "dynunc",
                 "tdds", "herding", "kcenter", "moderate", "ssp"]

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


def get_preset(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
