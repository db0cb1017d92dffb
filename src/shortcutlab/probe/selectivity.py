"""Does a unit read color or shape? Exemplars, a color-selectivity index, polysemanticity.

The measurements use a *color grid*: ``n`` digits of each class taken from a split and
re-rendered in all ten palette colors with the dataset's own style
(:func:`shortcutlab.data.recolor.recolor`), so color and digit are crossed instead of
confounded as they are in the biased splits. For a unit's activations ``A[d, j, c]``
(digit class ``d``, instance ``j``, color ``c``):

* ``color_index`` = V_color / (V_color + V_digit), where V_color is the variance across
  the ten colors of one and the same digit image (averaged over images) and V_digit the
  variance across the digits of one color (averaged over colors and instances).
  1 means the unit reads only color, 0 only what the digit looks like.
* ``color_eta2`` and ``digit_eta2``: the shares of the unit's total variance on the grid
  explained by the color and by the digit class (two-way ANOVA main effects), the axes
  of the selectivity scatter.
* from the unit's top-k exemplars: normalized entropies of their digits and of their
  colors, and ``polysemanticity`` = the smaller of the two: high only when neither a
  single digit nor a single color accounts for what excites the unit.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shortcutlab.data import images_to_tensor, load_meta, load_split
from shortcutlab.data.dataset import dataset_classes
from shortcutlab.data.palette import COLOR_NAMES
from shortcutlab.data.recolor import recolor, split_digits
from shortcutlab.errors import ShortcutlabError
from shortcutlab.hooks import capture, forward_until

NUM_DIGITS = 10
LABEL_THRESHOLD = 0.5  # a factor that explains over half a unit's variance names the unit
_EPS = 1e-12


def source_digits(data_dir: str | os.PathLike, split: str) -> np.ndarray:
    """The grayscale digits a split was rendered from (read-only), cached per dataset.

    Rebuilding them means loading, or for the synthetic source regenerating, the whole
    source; the grid and the exemplar set of one analysis need the same ones.
    """
    return _source_digits(str(Path(data_dir).resolve()), split,
                          load_meta(data_dir).get("dataset_id"))


@functools.lru_cache(maxsize=4)
def _source_digits(data_dir: str, split: str, dataset_id: str | None) -> np.ndarray:
    digits = split_digits(data_dir, split)
    digits.setflags(write=False)
    return digits


@dataclass(frozen=True)
class ColorGrid:
    """``images`` uint8 (K classes, n, K colors, 28, 28, 3), rendered from one split."""

    images: np.ndarray
    split: str
    source_index: np.ndarray  # (10, n) positions of the digits in the split

    @property
    def per_digit(self) -> int:
        return self.images.shape[1]

    def flat_images(self) -> np.ndarray:
        return self.images.reshape(-1, *self.images.shape[3:])

    def flat_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """(digit, color) of every image of :meth:`flat_images`."""
        digits, _, colors = np.meshgrid(np.arange(self.images.shape[0]),
                                        np.arange(self.per_digit),
                                        np.arange(self.images.shape[2]), indexing="ij")
        return digits.ravel(), colors.ravel()


def color_grid(data_dir: str | os.PathLike, split: str = "val", per_digit: int = 10,
               seed: int = 0) -> ColorGrid:
    """Take ``per_digit`` digits of each class from ``split`` and render each in every color."""
    if per_digit < 1:
        raise ShortcutlabError(f"per_digit must be at least 1, got {per_digit}")
    labels = load_split(data_dir, split).labels
    digits = source_digits(data_dir, split)
    classes = dataset_classes(load_meta(data_dir))
    rng = np.random.default_rng(seed)
    chosen = []
    for digit in range(classes):
        index = np.flatnonzero(labels == digit)
        if len(index) < per_digit:
            raise ShortcutlabError(f"split {split!r} has only {len(index)} images of digit "
                                   f"{digit}; ask for at most that many per digit")
        chosen.append(np.sort(rng.choice(index, per_digit, replace=False)))
    source_index = np.stack(chosen)
    gray = np.repeat(digits[source_index.ravel()], classes, axis=0)
    colors = np.tile(np.arange(classes), source_index.size)
    rendered = recolor(data_dir, gray, colors, seed=seed)
    return ColorGrid(rendered.reshape(classes, per_digit, classes, *rendered.shape[1:]),
                     split, source_index)


def balanced_images(data_dir: str | os.PathLike, split: str = "val", limit: int | None = None,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A split's digits re-rendered in uniformly random colors: (images, labels, colors).

    Exemplars drawn from a biased split would show mostly digits in their own color, and
    could not tell a color unit from a digit unit; this set crosses them.
    """
    labels = load_split(data_dir, split).labels
    digits = source_digits(data_dir, split)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    index = np.arange(len(labels))
    if limit is not None and limit < len(index):
        index = np.sort(rng.choice(index, limit, replace=False))
    colors = rng.integers(0, dataset_classes(load_meta(data_dir)), size=len(index))
    return recolor(data_dir, digits[index], colors, seed=seed), labels[index], colors


@torch.no_grad()
def layer_activations(model: nn.Module, layers: Sequence[str], images: np.ndarray | torch.Tensor,
                      batch_size: int = 500, device: torch.device | str = "cpu"
                      ) -> dict[str, np.ndarray]:
    """Activations (N, units) of each layer in one pass; conv channels averaged over positions.

    ``images`` are uint8 (N, 28, 28, 3) or float tensors (N, 3, 28, 28) in [0, 1].
    """
    model = model.eval()
    chunks: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    with capture(model, layers, stop_early=True) as acts:
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            if isinstance(batch, np.ndarray):
                batch = images_to_tensor(batch)
            forward_until(model, batch.to(device))
            for layer in layers:
                value = acts[layer]
                if value.dim() > 2:
                    value = value.flatten(2).mean(2)
                chunks[layer].append(value.float().cpu())
    return {layer: torch.cat(parts).numpy() for layer, parts in chunks.items()}


def unit_activations(model: nn.Module, layer: str, images: np.ndarray | torch.Tensor,
                     batch_size: int = 500, device: torch.device | str = "cpu") -> np.ndarray:
    """Activations (N, units) of one layer (see :func:`layer_activations`)."""
    return layer_activations(model, [layer], images, batch_size, device)[layer]


def selectivity(grid_acts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-unit selectivity from activations (K classes, n, K colors, units) on a color grid."""
    if grid_acts.ndim != 4 or grid_acts.shape[0] != grid_acts.shape[2]:
        raise ShortcutlabError(f"expected activations (K, n, K, units), got {grid_acts.shape}")
    acts = grid_acts.astype(np.float64)
    across_colors = acts.var(axis=2).mean(axis=(0, 1))     # digit image fixed, color varies
    across_digits = acts.var(axis=0).mean(axis=(0, 1))     # color (and instance) fixed
    total = acts.reshape(-1, acts.shape[-1]).var(axis=0)
    color_means = acts.mean(axis=(0, 1))                    # (10 colors, units)
    digit_means = acts.mean(axis=(1, 2))                    # (10 digits, units)
    return {
        "color_index": across_colors / (across_colors + across_digits + _EPS),
        "color_eta2": color_means.var(axis=0) / (total + _EPS),
        "digit_eta2": digit_means.var(axis=0) / (total + _EPS),
        "preferred_color": color_means.argmax(axis=0),
        "preferred_digit": digit_means.argmax(axis=0),
        "color_means": color_means.T,
        "digit_means": digit_means.T,
        "variance": total,
    }


def top_exemplars(acts: np.ndarray, k: int) -> np.ndarray:
    """Indices (units, k) of the ``k`` most activating images of each unit, best first."""
    k = min(k, acts.shape[0])
    part = np.argpartition(-acts, k - 1, axis=0)[:k]
    order = np.take_along_axis(acts, part, axis=0).argsort(axis=0)[::-1]
    return np.take_along_axis(part, order, axis=0).T


def normalized_entropy(values: np.ndarray, categories: int = NUM_DIGITS) -> np.ndarray:
    """Entropy of each row's category counts, divided by log(categories): in [0, 1]."""
    values = np.atleast_2d(values)
    counts = np.stack([np.bincount(row, minlength=categories) for row in values])
    share = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(share > 0, share * np.log(share), 0.0)
    return -terms.sum(axis=1) / np.log(categories)


def polysemanticity(exemplars: np.ndarray, labels: np.ndarray,
                    colors: np.ndarray, classes: int = NUM_DIGITS) -> dict[str, np.ndarray]:
    """Entropies over digits and colors of each unit's exemplars, and their minimum."""
    digit_entropy = normalized_entropy(labels[exemplars], classes)
    color_entropy = normalized_entropy(colors[exemplars], classes)
    return {
        "digit_entropy": digit_entropy,
        "color_entropy": color_entropy,
        "polysemanticity": np.minimum(digit_entropy, color_entropy),
    }


def label_unit(color_eta2: float, digit_eta2: float, preferred_color: int,
               preferred_digit: int, variance: float, color_index: float,
               color_names: Sequence[str] = COLOR_NAMES) -> str:
    """Name a unit by what explains its activation on the color grid.

    ``color:NAME`` or ``digit:D`` when that factor explains over half the variance;
    ``shape`` when neither does but the unit changes more with the digit image than with
    its color (a stroke-part detector, say, that no single digit class owns); ``mixed``
    otherwise; ``dead`` for a unit that does not vary on the grid.
    """
    if variance <= 1e-10:
        return "dead"
    if color_eta2 >= LABEL_THRESHOLD and color_eta2 > digit_eta2:
        return f"color:{color_names[preferred_color]}"
    if digit_eta2 >= LABEL_THRESHOLD:
        return f"digit:{preferred_digit}"
    if color_index < 0.5:
        return "shape"
    return "mixed"
