"""Random transformations and regularizers that make visualizations robust, not adversarial.

An image that excites a unit only at one exact pixel alignment is noise the network
happens to like; one that still excites it when jittered, rescaled and rotated shows a
feature. Each transformation is a small data object that draws one random 2x3 affine
matrix per image; they are composed and applied in a single ``grid_sample``. Regularizers
return one penalty per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F


def _uniform(count: int, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    return torch.rand(count, generator=generator) * (high - low) + low


@dataclass(frozen=True)
class Jitter:
    """A random shift of up to ``pixels`` in each direction."""

    pixels: float = 2.0

    def matrix(self, count: int, size: int, generator: torch.Generator | None) -> Tensor:
        shift = 2.0 * self.pixels / size  # grid coordinates span [-1, 1]
        theta = torch.eye(3).repeat(count, 1, 1)
        theta[:, 0, 2] = _uniform(count, -shift, shift, generator)
        theta[:, 1, 2] = _uniform(count, -shift, shift, generator)
        return theta


@dataclass(frozen=True)
class Scale:
    """A random zoom by a factor in ``[low, high]``."""

    low: float = 0.9
    high: float = 1.1

    def matrix(self, count: int, size: int, generator: torch.Generator | None) -> Tensor:
        factor = _uniform(count, self.low, self.high, generator)
        theta = torch.eye(3).repeat(count, 1, 1)
        theta[:, 0, 0] = 1.0 / factor
        theta[:, 1, 1] = 1.0 / factor
        return theta


@dataclass(frozen=True)
class Rotate:
    """A random rotation by up to ``degrees`` either way."""

    degrees: float = 10.0

    def matrix(self, count: int, size: int, generator: torch.Generator | None) -> Tensor:
        angle = _uniform(count, -self.degrees, self.degrees, generator) * math.pi / 180.0
        theta = torch.eye(3).repeat(count, 1, 1)
        theta[:, 0, 0] = torch.cos(angle)
        theta[:, 0, 1] = -torch.sin(angle)
        theta[:, 1, 0] = torch.sin(angle)
        theta[:, 1, 1] = torch.cos(angle)
        return theta


DEFAULT_TRANSFORMS: tuple = (Jitter(2.0), Scale(0.9, 1.1), Rotate(10.0))


def apply_transforms(images: Tensor, transforms: Sequence, generator: torch.Generator | None
                     ) -> Tensor:
    """Apply the composition of ``transforms`` (one random draw per image)."""
    if not transforms:
        return images
    count, _, size, _ = images.shape
    theta = torch.eye(3).repeat(count, 1, 1)
    for transform in transforms:
        theta = transform.matrix(count, size, generator) @ theta
    theta = theta[:, :2].to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def total_variation(images: Tensor) -> Tensor:
    """Mean absolute difference between neighbouring pixels, per image."""
    dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().flatten(1).mean(1)
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dy + dx


def l2_penalty(images: Tensor) -> Tensor:
    """Mean squared distance from mid-gray, per image."""
    return (images - 0.5).pow(2).flatten(1).mean(1)
