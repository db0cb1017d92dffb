"""Figures of the explain stage: the "Aha" panel, background shares, examples, sanity check.

Every figure says in its title what it shows and labels each row and column. Heatmaps
are drawn over the image's luminance so the digit's shape stays visible under them.
Image grids are composed in numpy and drawn as one picture with text labels, which is
many times faster than one matplotlib axes per cell.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import colormaps

from shortcutlab import figures
from shortcutlab.data.palette import COLOR_NAMES

figures.headless()
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

MODEL_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")
CORRECT, WRONG, TEXT = "#1a7f1a", "#c0392b", "#222222"
SCALE = 4          # each image pixel becomes SCALE x SCALE pixels in grids
GAP = 6            # pixels between cells
TITLE_ROOM = 34    # pixels above each row of cells for cell titles
LABEL_ROOM = 150   # pixels left of the grid for row labels
SIGNED_PERCENTILE = 97
PIXEL_DPI = 100    # at this dpi one canvas pixel is one figure pixel (not the house dpi)


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> None:
    """Write a PNG atomically and release the figure.

    At :data:`PIXEL_DPI`, not the house :data:`shortcutlab.figures.DPI`: the grids are
    composed in numpy and sized so that one canvas pixel is one figure pixel at that dpi.
    """
    figures.save_figure(fig, path, dpi=PIXEL_DPI)


def luminance(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float (H, W) in [0, 1]."""
    return (image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])) / 255.0


def overlay(image: np.ndarray, heat: np.ndarray, signed: bool) -> np.ndarray:
    """float (H, W, 3): the heatmap blended over the image's luminance, scaled per image.

    Signed maps (LRP, gradients): red for evidence for the class, blue against, opacity
    growing with magnitude, saturating at the 97th percentile of the magnitudes so that
    evidence spread thinly over many pixels stays visible next to a few strong ones.
    Non-negative maps (Grad-CAM): the usual jet overlay, scaled to the maximum.
    """
    gray = np.repeat(luminance(image)[..., None], 3, axis=2)
    heat = np.asarray(heat, dtype=np.float64)
    if signed:
        scale = np.percentile(np.abs(heat), SIGNED_PERCENTILE)
        norm = np.clip(heat / scale, -1, 1) if scale > 0 else heat
        color = colormaps["bwr"]((norm + 1) / 2)[..., :3]
        alpha = np.clip(np.abs(norm) * 1.2, 0, 0.9)[..., None]
    else:
        scale = heat.max()
        norm = heat / scale if scale > 0 else heat
        color = colormaps["jet"](norm)[..., :3]
        alpha = np.full((*norm.shape, 1), 0.5)
    return (1 - alpha) * gray + alpha * color


def as_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image


@dataclass
class Cell:
    picture: np.ndarray  # float (H, W, 3) in [0, 1]
    title: str = ""
    color: str = TEXT


class Grid:
    """Cells in rows and columns, drawn as one image with titles and row labels."""

    def __init__(self, rows: int, columns: int, size: int = 28) -> None:
        self.rows, self.columns, self.size = rows, columns, size
        self.cells: dict[tuple[int, int], Cell] = {}
        self.row_labels: dict[int, str] = {}
        self.column_labels: dict[int, str] = {}

    def put(self, row: int, column: int, picture: np.ndarray, title: str = "",
            color: str = TEXT) -> None:
        self.cells[(row, column)] = Cell(as_float(picture), title, color)

    def _origin(self, row: int, column: int) -> tuple[int, int]:
        side = self.size * SCALE
        top = TITLE_ROOM + row * (side + GAP + TITLE_ROOM)
        left = LABEL_ROOM + column * (side + GAP)
        return top, left

    def draw(self, fig: plt.Figure, ax: plt.Axes) -> None:
        side = self.size * SCALE
        height = self.rows * (side + GAP + TITLE_ROOM) + TITLE_ROOM
        width = LABEL_ROOM + self.columns * (side + GAP)
        canvas = np.ones((height, width, 3))
        for (row, column), cell in self.cells.items():
            top, left = self._origin(row, column)
            big = np.kron(cell.picture, np.ones((SCALE, SCALE, 1)))
            canvas[top:top + side, left:left + side] = np.clip(big, 0, 1)
        ax.imshow(canvas, interpolation="nearest")
        ax.set_axis_off()
        for (row, column), cell in self.cells.items():
            top, left = self._origin(row, column)
            if cell.title:
                ax.text(left + side / 2, top - 4, cell.title, ha="center", va="bottom",
                        fontsize=7, color=cell.color)
        for row, label in self.row_labels.items():
            top, _ = self._origin(row, 0)
            ax.text(LABEL_ROOM - 10, top + side / 2, label, ha="right", va="center", fontsize=8)
        for column, label in self.column_labels.items():
            _, left = self._origin(0, column)
            ax.text(left + side / 2, -4, label, ha="center", va="bottom", fontsize=8,
                    fontweight="bold")

    def figure_size(self) -> tuple[float, float]:
        """Inches at :data:`PIXEL_DPI`, so that one canvas pixel is one figure pixel."""
        side = self.size * SCALE
        width = LABEL_ROOM + self.columns * (side + GAP)
        height = self.rows * (side + GAP + TITLE_ROOM) + TITLE_ROOM
        return width / PIXEL_DPI, height / PIXEL_DPI


def _legend_text(signed: bool) -> str:
    if signed:
        return ("heatmaps: red = evidence for the explained class, blue = against; "
                "scaled per image, drawn over the image's brightness")
    return ("heatmaps: red = most evidence for the explained class, blue = none; "
            "scaled per image, drawn over the image's brightness")


def _grid_figure(grid: Grid, title: str, legend: str, path: str | os.PathLike) -> None:
    fig = plt.figure(figsize=grid.figure_size())
    ax = fig.add_axes((0, 0, 1, 1))
    grid.draw(fig, ax)
    top = 1 + (0.55 if grid.column_labels else 0.1) / fig.get_figheight()
    fig.text(0.5, top, title, ha="center", va="bottom", fontsize=10)
    fig.text(0.5, -0.1 / fig.get_figheight(), legend, ha="center", va="top", fontsize=8)
    save_figure(fig, path)


@dataclass
class PanelModel:
    """One model's side of the Aha panel: maps and predictions for both image sets."""

    label: str
    maps_biased: np.ndarray
    maps_conflicting: np.ndarray
    pred_biased: np.ndarray
    prob_biased: np.ndarray
    pred_conflicting: np.ndarray
    prob_conflicting: np.ndarray


def aha_panel(path: str | os.PathLike, digits: np.ndarray, biased: np.ndarray,
              conflicting: np.ndarray, conflict_colors: np.ndarray,
              models: Sequence[PanelModel], method_title: str, signed: bool,
              color_names: Sequence[str] = COLOR_NAMES) -> None:
    """One row per digit: the digit in its own color and in another class's color, each
    followed by every model's heatmap and prediction."""
    per_side = 1 + len(models)
    grid = Grid(len(digits), 2 * per_side)
    for side, name in enumerate(("its own color", "another class's\ncolor")):
        grid.column_labels[side * per_side] = f"digit in\n{name}"
        for offset, model in enumerate(models, start=1):
            grid.column_labels[side * per_side + offset] = model.label
    for row, digit in enumerate(digits):
        grid.row_labels[row] = f"digit {int(digit)}"
        for side, (images, colors) in enumerate(((biased, digits),
                                                 (conflicting, conflict_colors))):
            column = side * per_side
            color = int(colors[row])
            owner = "own" if color == digit else f"{color}'s"
            grid.put(row, column, images[row], f"{color_names[color]} ({owner})")
            for offset, model in enumerate(models, start=1):
                maps = model.maps_biased if side == 0 else model.maps_conflicting
                pred = int((model.pred_biased if side == 0 else model.pred_conflicting)[row])
                prob = (model.prob_biased if side == 0 else model.prob_conflicting)[row]
                grid.put(row, column + offset, overlay(images[row], maps[row], signed),
                         f"says {pred} ({prob:.0%})", CORRECT if pred == digit else WRONG)
    names = " and ".join(model.label for model in models)
    title = (f"{method_title}: where do {names} look? Each digit in its own class color (as in "
             "training), then in another class's color.\nCell titles: the model's answer and "
             "its probability (green = correct, red = wrong).")
    _grid_figure(grid, title, _legend_text(signed), path)


def examples_figure(path: str | os.PathLike, blocks: Sequence[dict[str, Any]],
                    labels: Sequence[str], method_title: str, signed: bool,
                    color_names: Sequence[str] = COLOR_NAMES) -> None:
    """For each split a block: a row of images, then one row of heatmaps per model."""
    columns = max(len(block["images"]) for block in blocks)
    per_block = 1 + len(labels)
    grid = Grid(len(blocks) * per_block, columns)
    for b, block in enumerate(blocks):
        top = b * per_block
        grid.row_labels[top] = block["split"]
        for m, name in enumerate(labels, start=1):
            grid.row_labels[top + m] = name
        for c, image in enumerate(block["images"]):
            label, color = block["labels"][c], block["colors"][c]
            grid.put(top, c, image, f"digit {label}, {color_names[color]}")
            for m, name in enumerate(labels, start=1):
                pred = block["preds"][name][c]
                grid.put(top + m, c, overlay(image, block["maps"][name][c], signed),
                         f"says {pred}", CORRECT if pred == label else WRONG)
    title = (f"{method_title} on sample images of each split: the image row, then one row "
             "per model (cell title: its answer, green = correct)")
    _grid_figure(grid, title, _legend_text(signed), path)


def share_chart(path: str | os.PathLike, splits: Sequence[str], labels: Sequence[str],
                results: dict[str, dict[str, Any]], method_title: str) -> None:
    """Mean background share (+- std) and pointing-game hit rate per split and model,
    with the uniform map's background share as the chance level."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(1, len(labels))
    x = np.arange(len(splits))
    for index, label in enumerate(labels):
        per_split = results[label]
        share = [per_split[s]["background_share"]["mean"] or 0.0 for s in splits]
        std = [per_split[s]["background_share"]["std"] or 0.0 for s in splits]
        hits = [per_split[s]["pointing_game"] for s in splits]
        offset = (index - (len(labels) - 1) / 2) * width
        color = MODEL_COLORS[index % len(MODEL_COLORS)]
        left.bar(x + offset, share, width, yerr=std, capsize=3, color=color, label=label)
        right.bar(x + offset, hits, width, color=color, label=label)
    chance = [results[labels[0]][s]["background_area"] for s in splits]
    left.scatter(x, chance, marker="_", s=900, color="black", zorder=3,
                 label="uniform map (chance level)")
    left.set_ylabel("share of positive attribution outside the digit")
    left.set_title("background share (mean +- std; lower = on the digit)", fontsize=10)
    right.set_ylabel("fraction of images whose peak is on the digit")
    right.set_title("pointing game (higher = on the digit)", fontsize=10)
    for ax in (left, right):
        ax.set_xticks(x, splits)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    handles, names = left.get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=9,
               bbox_to_anchor=(0.5, -0.02), frameon=False)
    fig.suptitle(f"{method_title}: does the evidence sit on the digit or on the colored "
                 "background?")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(fig, path)


ORDER_STYLES = {"map": ("the map's most relevant first", "-"),
                "random": ("random order", ":"),
                "background-first": ("background first", "--"),
                "digit-first": ("digit first", "-.")}


def deletion_figure(path: str | os.PathLike, results: dict[str, dict[str, Any]],
                    method_title: str) -> None:
    """Per model, the mean deletion curves (probability of the explained class against the
    share of pixels removed), one line per order, the area under each in the legend."""
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.2),
                             squeeze=False, sharey=True)
    for ax, (label, entry) in zip(axes[0], results.items(), strict=True):
        for order, curve in entry["curve"].items():
            name, style = ORDER_STYLES.get(order, (order, "-"))
            ax.plot(entry["fractions"], curve, style, linewidth=1.8,
                    label=f"{name} (AUC {entry['auc'][order]:.2f})")
        if "only_background_removed" in entry:
            ax.set_title(f"{label}: removing only the background leaves "
                         f"{entry['only_background_removed']:.2f}, only the digit "
                         f"{entry['only_digit_removed']:.2f}", fontsize=9)
        else:
            ax.set_title(label, fontsize=10)
        ax.set_xlabel("share of the pixels removed")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[0, 0].set_ylabel("probability of the explained class")
    first = next(iter(results.values()))
    fig.suptitle(f"{method_title}: deletion curves on {first['n']} {first.get('split', '')} "
                 f"images (removed pixels: {first['fill']})", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)


def sanity_figure(path: str | os.PathLike, maps_path: str | os.PathLike,
                  results: dict[str, Any], images: np.ndarray, method_title: str,
                  signed: bool) -> None:
    """Rank correlation to the trained model's maps as layers are randomized from the top
    (one line per model), and each model's maps of the first images at every stage."""
    first = next(iter(results.values()))
    stages = first.stages
    names = ["trained"] + [f"+{name}" for name in stages[1:]]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(stages)), 3.4))
    x = np.arange(len(stages))
    for index, (label, result) in enumerate(results.items()):
        color = MODEL_COLORS[index % len(MODEL_COLORS)]
        for series, style, suffix in ((result.spearman, "o-", ""),
                                      (result.spearman_abs, "o--", " (|map|)")):
            if suffix and not signed:
                continue
            mean = [e["mean"] if e["mean"] is not None else np.nan for e in series]
            ax.plot(x, mean, style, color=color, alpha=1.0 if not suffix else 0.6,
                    label=label + suffix)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("layers re-initialized so far (cumulative, from the output down)")
    ax.set_ylabel("Spearman correlation with\nthe trained model's map")
    ax.set_ylim(-0.3, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{method_title} sanity check (Adebayo et al. 2018): a faithful explanation "
                 "decorrelates as the model is randomized;\none that stays high ignores what "
                 "the model learned (mean over images)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)

    shown = min(4, len(images))
    grid = Grid(shown * len(results), len(stages))
    for m, (label, result) in enumerate(results.items()):
        for r in range(shown):
            row = m * shown + r
            grid.row_labels[row] = f"{label}, image {r}"
            for c, maps in enumerate(result.maps):
                grid.put(row, c, overlay(images[r], maps[r].numpy(), signed),
                         names[c] if r == 0 else "")
    _grid_figure(grid, f"{method_title} maps while the model is randomized from the output "
                       "down (columns: layers re-initialized so far)",
                 _legend_text(signed), maps_path)
