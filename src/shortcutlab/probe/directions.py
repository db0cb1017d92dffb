"""Directions in a layer's activation space, and feature accentuation from real images.

A unit is only one direction of a layer; the interesting ones are often others: an SAE
feature's decoder row (:func:`shortcutlab.decompose.run.feature_direction`), or the
difference between the mean activation of two groups of images (:func:`mean_difference`,
:func:`color_direction`: "yellow backgrounds minus the rest"). Each becomes a
:class:`~shortcutlab.probe.objectives.Direction` objective that :func:`visualize`
optimizes like any other.

Feature accentuation (Hamblin et al. 2024) starts from a real image instead of noise and
pushes it along the objective while a penalty keeps it close to where it started, so the
change shows what *in this image* the feature responds to. With the digit's mask,
:func:`accentuate` also says where the change went: a color direction of a color reader
should recolor the background and leave the stroke alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from shortcutlab.data import images_to_tensor, load_meta, load_split
from shortcutlab.data.dataset import dataset_colors
from shortcutlab.errors import ShortcutlabError
from shortcutlab.hooks import capture, forward_until
from shortcutlab.probe.objectives import Direction, Objective


@torch.no_grad()
def _mean_activation(model: nn.Module, layer: str, images: Tensor, batch_size: int = 500
                     ) -> Tensor:
    """The mean over images (and positions, for a conv layer) of ``layer``'s output."""
    total, count = None, 0
    with capture(model.eval(), [layer]) as acts:
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])
            output = acts[layer]
            per_image = output.mean(dim=(2, 3)) if output.dim() == 4 else output.flatten(1)
            part = per_image.sum(0).double()
            total = part if total is None else total + part
            count += per_image.shape[0]
    return (total / max(count, 1)).float()


def mean_difference(model: nn.Module, layer: str, images: Tensor, others: Tensor,
                    label: str = "difference") -> Direction:
    """The direction from the mean activation of ``others`` to that of ``images``."""
    if len(images) == 0 or len(others) == 0:
        raise ShortcutlabError("a mean difference needs images on both sides")
    device = next(model.parameters()).device
    vector = (_mean_activation(model, layer, images.to(device))
              - _mean_activation(model, layer, others.to(device)))
    return Direction(layer, vector.cpu(), label)


def color_direction(model: nn.Module, layer: str, data_dir: str, color: str | int,
                    split: str = "val", limit: int = 3000) -> Direction:
    """The direction from the split's images of other colors to those of ``color`` (a
    palette name or index)."""
    names, _ = dataset_colors(load_meta(data_dir))
    index = names.index(color) if isinstance(color, str) and color in names else (
        int(color) if not isinstance(color, str) else -1)
    if not 0 <= index < len(names):
        raise ShortcutlabError(f"unknown color {color!r}; choose one of {', '.join(names)}")
    chosen = load_split(data_dir, split)
    chosen = chosen.subset(np.arange(min(limit, len(chosen))))
    images = images_to_tensor(chosen.images)
    mine = torch.from_numpy(chosen.colors == index)
    return mean_difference(model, layer, images[mine], images[~mine],
                           label=f"{names[index]} minus the other colors")


@dataclass
class Accentuation:
    """Real images pushed along an objective (see :func:`accentuate`)."""

    images: Tensor  # (N, 3, H, W): the accentuated images
    before: np.ndarray  # (N,): the objective on the originals
    after: np.ndarray  # (N,): on the accentuated images
    background_share: np.ndarray | None  # (N,): share of the change off the digit
    area_share: np.ndarray | None  # (N,): the background's share of the pixels (chance)


def accentuate(model: nn.Module, images: Tensor, objective: Objective,
               masks: Tensor | None = None, *, steps: int = 100, lr: float = 0.01,
               closeness: float = 1.0) -> Accentuation:
    """Push ``images`` (N, 3, H, W) in [0, 1] along ``objective`` in pixel space, with a
    penalty ``closeness * ||x - x0||^2`` (per image) that keeps each one near its start;
    pixels stay in [0, 1]. ``masks`` (N, H, W), True on the digit, give the share of the
    change (the L1 of x - x0) that fell on the background."""
    from shortcutlab.probe.visualize import evaluate_objectives

    if steps < 1 or lr <= 0 or closeness < 0:
        raise ShortcutlabError("steps and lr must be positive, closeness >= 0")
    model = model.eval()
    start = images.detach().clone()
    pixels = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([pixels], lr=lr)
    n = len(images)
    with capture(model, list(objective.layers), stop_early=True) as acts:
        def value(x: Tensor) -> Tensor:
            forward_until(model, x)
            return evaluate_objectives([objective], acts, n)[0]

        with torch.no_grad():
            before = value(start).cpu().numpy()
        for _ in range(steps):
            gain = value(pixels)
            distance = (pixels - start).pow(2).flatten(1).sum(1)
            loss = (-gain + closeness * distance).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                pixels.clamp_(0.0, 1.0)
        with torch.no_grad():
            after = value(pixels).cpu().numpy()
    result = pixels.detach()
    background_share = area_share = None
    if masks is not None:
        off_digit = ~masks.bool().to(result.device)
        change = (result - start).abs().sum(dim=1)
        total = change.flatten(1).sum(1).clamp_min(1e-12)
        background_share = ((change * off_digit).flatten(1).sum(1) / total).cpu().numpy()
        area_share = off_digit.flatten(1).float().mean(1).cpu().numpy()
    return Accentuation(result, before, after, background_share, area_share)
