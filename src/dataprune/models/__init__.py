"""Models by name. Every model maps ``(B, *input_shape)`` to logits ``(B, num_classes)`` and
ends in an ``nn.Linear`` classifier (``model.fc``) whose input is the penultimate feature."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from .resnet import ResNet, resnet18, resnet50
from .small import MLP, SmallCNN, cnn, mlp

MODELS = {
    "mlp": mlp,
    "cnn": cnn,
    "resnet18": resnet18,
    "resnet50": resnet50,
}


def build_model(name: str, num_classes: int, input_shape) -> nn.Module:
    """Construct a model from the registry (``MODELS``), or ``torchvision.<name>`` with the vision extra."""
    if name.startswith("torchvision."):
        try:
            import torchvision.models as tvm
        except Exception as exc:
            raise ImportError(f"model {name!r} needs torchvision: pip install 'dataprune[vision]'") from exc
        ctor = getattr(tvm, name.split(".", 1)[1], None)
        if ctor is None:
            raise ValueError(f"torchvision.models has no {name.split('.', 1)[1]!r}")
        return ctor(num_classes=num_classes)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)} "
                         "(or torchvision.<name> with the vision extra)")
    return MODELS[name](num_classes, tuple(input_shape))


@dataclass(frozen=True)
class ModelFactory:
    """``ModelFactory("cnn", 10, (1, 28, 28))()`` builds a fresh model: a picklable model constructor
    (worker processes of ``dataprune bench --jobs N`` build their models with it)."""

    name: str
    num_classes: int
    input_shape: tuple

    def __call__(self) -> nn.Module:
        return build_model(self.name, self.num_classes, self.input_shape)


__all__ = ["MODELS", "build_model", "ModelFactory", "MLP", "SmallCNN", "ResNet", "mlp", "cnn", "resnet18", "resnet50"]
