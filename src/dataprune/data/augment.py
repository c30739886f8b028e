"""Batch-level augmentation on tensors (no torchvision): random crop with padding, flips."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def flip_crop(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random horizontal flip and random ``padding``-pixel translation (zero padded), per sample."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip.to(x.device).view(b, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (padding,) * 4)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    rows = (dy.view(b, 1) + torch.arange(h, device=x.device).view(1, h))  # (B, H)
    cols = (dx.view(b, 1) + torch.arange(w, device=x.device).view(1, w))  # (B, W)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(b, h, 1), cols.view(b, 1, w)]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


AUGMENTATIONS = {"none": None, "flip_crop": flip_crop}


def get_augmentation(name):
    if name is None or callable(name):
        return name
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[name]
