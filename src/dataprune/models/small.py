"""Small models for 28x28 and 8x8 inputs: they train in seconds on a CPU."""

from __future__ import annotations

import math

import torch.nn as nn


class MLP(nn.Module):
    """Flatten, then ``hidden`` ReLU layers, then a linear classifier ``fc``."""

    def __init__(self, in_features: int, num_classes: int, hidden=(256, 128)):
        super().__init__()
        layers, width = [nn.Flatten()], in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


class SmallCNN(nn.Module):
    """Two conv-BN-ReLU-pool blocks, a 2x2 adaptive pool, a 128-unit hidden layer, ``fc``."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(8 * width, 128), nn.ReLU(),
        )
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


def mlp(num_classes: int, input_shape) -> nn.Module:
    return MLP(math.prod(input_shape), num_classes)


def cnn(num_classes: int, input_shape) -> nn.Module:
    return SmallCNN(input_shape[0], num_classes)
