"""A labelled picture of a dataset: one row per digit, aligned and conflicting examples of
every split side by side, so that a reader sees at a glance what the bias looks like."""

from __future__ import annotations

import os

import numpy as np

from shortcutlab.data.dataset import SPLITS, dataset_classes, dataset_colors, load_meta, load_split
from shortcutlab.data.palette import NUM_COLORS
from shortcutlab.data.styles import StyleParams
from shortcutlab.figures import save_figure

_GAP = 4        # pixels between examples
_SPLIT_GAP = 14  # pixels between splits
_SIZE = 28
PIXEL_DPI = 100  # not the house dpi: the layouts below are sized in pixels at this dpi


def pick_examples(labels: np.ndarray, colors: np.ndarray, digit: int, aligned: bool,
                  count: int) -> np.ndarray:
    """Indices of the first ``count`` images of ``digit`` that carry (or do not carry) its
    class color; deterministic, so the same dataset always gives the same picture."""
    match = (labels == digit) & ((colors == digit) == aligned)
    return np.flatnonzero(match)[:count]


def grid_canvas(data_dir: str | os.PathLike, per_cell: int = 2
                ) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """The grid as an RGB uint8 canvas (white gaps; missing examples hatched in gray),
    plus ``(split, x_start, x_stop)`` for each split's block of columns."""
    if per_cell < 1:
        raise ValueError("per_cell must be at least 1")
    step = _SIZE + _GAP
    block = 2 * per_cell * step
    width = len(SPLITS) * block + (len(SPLITS) - 1) * _SPLIT_GAP
    classes = dataset_classes(load_meta(data_dir))
    canvas = np.full((classes * step, width, 3), 255, dtype=np.uint8)
    blocks = []
    for s, split in enumerate(SPLITS):
        data = load_split(data_dir, split)
        x0 = s * (block + _SPLIT_GAP)
        blocks.append((split, x0, x0 + block - _GAP))
        for digit in range(classes):
            y = digit * step
            for half, aligned in enumerate((True, False)):
                chosen = pick_examples(data.labels, data.colors, digit, aligned, per_cell)
                for k in range(per_cell):
                    x = x0 + (half * per_cell + k) * step
                    cell = canvas[y:y + _SIZE, x:x + _SIZE]
                    if k < len(chosen):
                        cell[:] = data.images[chosen[k]]
                    else:
                        cell[:] = 235
                        cell[np.add.outer(np.arange(_SIZE), np.arange(_SIZE)) % 6 == 0] = 200
    return canvas, blocks


def save_grid(data_dir: str | os.PathLike, out: str | os.PathLike, per_cell: int = 2) -> None:
    """Write the grid as a PNG with titles, split and column headers and a color key."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    meta = load_meta(data_dir)
    canvas, blocks = grid_canvas(data_dir, per_cell)
    config = meta.get("config", {})
    scale = 3.0  # screen pixels per image pixel
    margin_left, margin_top, margin_bottom, margin_right = 2.4, 1.5, 0.5, 0.3  # inches
    height_in = canvas.shape[0] * scale / PIXEL_DPI + margin_top + margin_bottom
    width_in = canvas.shape[1] * scale / PIXEL_DPI + margin_left + margin_right
    figure = Figure(figsize=(width_in, height_in), dpi=PIXEL_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((margin_left / width_in, margin_bottom / height_in,
                            1 - (margin_left + margin_right) / width_in,
                            1 - (margin_top + margin_bottom) / height_in))
    axes.imshow(canvas, interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)
    step = _SIZE + _GAP
    color_names, palette = dataset_colors(meta)
    for digit in range(len(palette)):
        y = digit * step + _SIZE / 2
        axes.text(-10, y, f"{digit}", ha="right", va="center", fontsize=13, weight="bold")
        axes.add_patch(_swatch(-40, y - 7, palette[digit]))
        axes.text(-46, y, color_names[digit], ha="right", va="center", fontsize=10)
    half = per_cell * step
    for split, x0, x1 in blocks:
        axes.text((x0 + x1) / 2, -20, split, ha="center", va="bottom", fontsize=12,
                  weight="bold")
        axes.text(x0 + half / 2 - _GAP / 2, -6, "aligned", ha="center", va="bottom",
                  fontsize=9)
        axes.text(x0 + 1.5 * half - _GAP / 2, -6, "conflicting", ha="center", va="bottom",
                  fontsize=9)
    title = (f"Colored MNIST {meta.get('dataset_id', '')}: source {config.get('source')}, "
             f"style {config.get('style')}, bias {config.get('bias')}, "
             f"hard {config.get('hard')}, seed {config.get('seed')}")
    figure.text(0.5, 1 - 0.2 / height_in, title, ha="center", va="top", fontsize=14)
    figure.text(0.5, 0.15 / height_in,
                "rows: digit and its class color. aligned = the image carries its class's "
                "color; conflicting = another color. Hatched = no such image "
                "(test_hard has no aligned images by design).",
                ha="center", va="bottom", fontsize=9)
    save_figure(figure, out, dpi=PIXEL_DPI, tight=False)


def _swatch(x: float, y: float, rgb: np.ndarray):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), 14, 14, facecolor=tuple(rgb), edgecolor="black", linewidth=0.5,
                     clip_on=False)


def style_sheet(gray: np.ndarray, params: StyleParams | None = None, seed: int = 0
                ) -> tuple[np.ndarray, list[str]]:
    """Ten digits (one per class, each in its class color) rendered in every style:
    an RGB canvas with one row per style, and the style names in row order."""
    from shortcutlab.data.build import render
    from shortcutlab.data.styles import STYLES

    params = params or StyleParams()
    names = list(STYLES)
    step = _SIZE + _GAP
    canvas = np.full((len(names) * step, NUM_COLORS * step, 3), 255, dtype=np.uint8)
    colors = np.arange(NUM_COLORS)
    for row, name in enumerate(names):
        images = render(gray[:NUM_COLORS], colors, name, params, np.random.default_rng(seed))
        for col, image in enumerate(images):
            canvas[row * step:row * step + _SIZE, col * step:col * step + _SIZE] = image
    return canvas, names


def save_style_sheet(out: str | os.PathLike, source: str = "mnist",
                     params: StyleParams | None = None, seed: int = 0) -> None:
    """Write a PNG comparing the styles on one digit of each class (from ``source``'s
    test set), each digit in its class's color."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from shortcutlab.data.sources import load_source
    from shortcutlab.data.styles import STYLES

    data = load_source(source, limit=200 if source == "synthetic" else None)
    labels, images = data["test_labels"], data["test_images"]
    first = [int(np.flatnonzero(labels == digit)[0]) for digit in range(NUM_COLORS)]
    canvas, names = style_sheet(images[first], params, seed)
    scale, margin_left, margin_top = 3.0, 3.6, 0.6
    width_in = canvas.shape[1] * scale / PIXEL_DPI + margin_left + 0.2
    height_in = canvas.shape[0] * scale / PIXEL_DPI + margin_top + 0.2
    figure = Figure(figsize=(width_in, height_in), dpi=PIXEL_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((margin_left / width_in, 0.2 / height_in,
                            1 - (margin_left + 0.2) / width_in,
                            1 - (margin_top + 0.4) / height_in))
    axes.imshow(canvas, interpolation="nearest")
    axes.set_axis_off()
    step = _SIZE + _GAP
    for row, name in enumerate(names):
        y = row * step + _SIZE / 2
        axes.text(-8, y - 5, name, ha="right", va="center", fontsize=12, weight="bold")
        axes.text(-8, y + 6, STYLES[name].summary, ha="right", va="center", fontsize=7,
                  wrap=True)
    params = params or StyleParams()
    figure.text(0.5, 1 - 0.15 / height_in,
                f"Styles: each digit in its class's color (noise_mix {params.noise_mix}, "
                f"alpha {params.alpha})", ha="center", va="top", fontsize=13)
    save_figure(figure, out, dpi=PIXEL_DPI, tight=False)
