"""Figures of the probe: labelled image grids and the selectivity scatter."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from shortcutlab.data.palette import palette_array
from shortcutlab.figures import save_figure


def pyplot():
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt

    return plt


def as_hwc(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Images as float (N, H, W, 3) in [0, 1], from uint8 NHWC or float NCHW."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    if images.shape[-1] != 3 and images.shape[-3] == 3:
        images = np.moveaxis(images, -3, -1)
    return np.clip(images, 0.0, 1.0)


def palette_rgb(palette: np.ndarray | None = None) -> np.ndarray:
    """A dataset's palette as float RGB in [0, 1]; None: the ten default colors."""
    return palette_array(np.float32) if palette is None else np.asarray(palette)


def tight_under_title(fig, pad: float = 0.3, title_inches: float = 0.45) -> None:
    """``tight_layout`` that leaves room for the suptitle, whatever the figure's height."""
    height = fig.get_size_inches()[1]
    fig.tight_layout(pad=pad, rect=(0, 0, 1, max(0.5, 1 - title_inches / height)))


def image_grid(images: np.ndarray | torch.Tensor, path: str | os.PathLike,
               titles: Sequence[str] | None = None, columns: int = 8,
               row_labels: Sequence[str] | None = None, title: str | None = None,
               cell: float = 1.1, fontsize: float = 6.5) -> None:
    """A grid of images (N, ...) with an optional caption under each and a label per row.

    ``images`` may also be (rows, columns, ...), which fixes the layout. The grid is one
    mosaic drawn on one axes, its captions placed as text: a matplotlib axes per picture
    (hundreds in a probe's figures) cost most of a probe's time in layout and drawing.
    """
    plt = pyplot()
    images = np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images)
    if images.ndim == 5:
        rows, columns = images.shape[:2]
        images = images.reshape(-1, *images.shape[2:])
    else:
        columns = max(1, min(columns, len(images)))
        rows = (len(images) + columns - 1) // columns
    images = as_hwc(images)
    caption_space = 0.35 if titles is not None else 0.05
    height, width = images.shape[1:3]
    gap_x = max(1, round(width * 0.1))
    gap_y = max(1, round(height * caption_space / cell))
    step_x, step_y = width + gap_x, height + gap_y
    mosaic = np.ones((rows * step_y - gap_y, columns * step_x - gap_x, 3), dtype=np.float32)
    for index, image in enumerate(images):
        top, left = (index // columns) * step_y, (index % columns) * step_x
        mosaic[top:top + height, left:left + width] = image
    fig, axis = plt.subplots(figsize=(cell * columns + (0.9 if row_labels else 0),
                                      (cell + caption_space) * rows + (0.4 if title else 0)))
    axis.imshow(mosaic, interpolation="nearest")
    axis.set_axis_off()
    if titles is not None:
        for index, caption in enumerate(titles[:len(images)]):
            top, left = (index // columns) * step_y, (index % columns) * step_x
            axis.text(left + width / 2, top + height + 0.5, caption, fontsize=fontsize,
                      ha="center", va="top")
    if row_labels is not None:
        for row, label in enumerate(row_labels[:rows]):
            axis.text(-gap_x, row * step_y + height / 2, label, fontsize=fontsize + 0.5,
                      ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    tight_under_title(fig, title_inches=0.45 if title else 0.0)
    save_figure(fig, path)


def selectivity_scatter(layers: dict[str, dict[str, np.ndarray]], path: str | os.PathLike,
                        title: str = "What units read: digit vs color",
                        palette: np.ndarray | None = None) -> None:
    """One panel per layer: digit eta^2 (x) against color eta^2 (y), dots in the preferred color."""
    plt = pyplot()
    palette = palette_rgb(palette)
    fig, axes = plt.subplots(1, len(layers), squeeze=False,
                             figsize=(max(5.0, 3.1 * len(layers)), 3.2))
    for axis, (layer, table) in zip(axes[0], layers.items(), strict=True):
        colors = palette[np.asarray(table["preferred_color"], dtype=int)]
        axis.scatter(table["digit_eta2"], table["color_eta2"], c=colors, s=18,
                     edgecolors="black", linewidths=0.3)
        axis.plot([0, 1], [0, 1], color="0.7", lw=0.6, ls="--")
        axis.set_xlim(-0.02, 1.02)
        axis.set_ylim(-0.02, 1.02)
        axis.set_xlabel("digit selectivity (eta²)", fontsize=8)
        axis.set_title(layer, fontsize=8)
        axis.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("color selectivity (eta²)", fontsize=8)
    fig.suptitle(title + " (dot color: the unit's preferred color)", fontsize=9)
    tight_under_title(fig)
    save_figure(fig, path)

