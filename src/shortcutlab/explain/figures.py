"""Figures of the explain stage: the "Aha" panel, background shares, examples, sanity check.

Every figure says in its title what it shows and labels each row and column; heatmaps
are drawn over the image's luminance so the digit's shape stays visible under them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from shortcutlab.artifacts import atomic_open
from shortcutlab.data.palette import COLOR_NAMES

MODEL_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")
CORRECT, WRONG = "#1a7f1a", "#c0392b"


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> None:
    """Write a PNG atomically and release the figure."""
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def luminance(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float (H, W) in [0, 1]."""
    return (image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])) / 255.0


def draw_overlay(ax: plt.Axes, image: np.ndarray, heat: np.ndarray, signed: bool) -> None:
    """The heatmap over the image's luminance, scaled per image.

    Signed maps (LRP, gradients): red for evidence for the class, blue against, opacity
    growing with magnitude. Non-negative maps (Grad-CAM): the usual jet overlay.
    """
    ax.imshow(luminance(image), cmap="gray", vmin=0, vmax=1)
    heat = np.asarray(heat, dtype=np.float64)
    if signed:
        scale = np.abs(heat).max()
        norm = heat / scale if scale > 0 else heat
        ax.imshow(norm, cmap="bwr", vmin=-1, vmax=1, alpha=np.clip(np.abs(norm) * 1.2, 0, 0.9))
    else:
        scale = heat.max()
        norm = heat / scale if scale > 0 else heat
        ax.imshow(norm, cmap="jet", vmin=0, vmax=1, alpha=0.5)
    _clean(ax)


def _clean(ax: plt.Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _legend_text(signed: bool) -> str:
    if signed:
        return "heatmaps: red = evidence for the explained class, blue = against (scaled per image)"
    return "heatmaps: red = most evidence for the explained class, blue = none (scaled per image)"


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
              models: Sequence[PanelModel], method_title: str, signed: bool) -> None:
    """One row per digit: the digit in its own color and in another class's color, each
    followed by every model's heatmap and prediction."""
    rows, per_side = len(digits), 1 + len(models)
    fig, axes = plt.subplots(rows, 2 * per_side, figsize=(1.55 * 2 * per_side, 1.6 * rows + 1.2),
                             squeeze=False)
    for row, digit in enumerate(digits):
        for side, (images, color_of) in enumerate(((biased, digits), (conflicting,
                                                                       conflict_colors))):
            column = side * per_side
            ax = axes[row, column]
            ax.imshow(images[row])
            _clean(ax)
            color = int(color_of[row])
            owner = "own color" if color == digit else f"color of {color}"
            ax.set_title(f"{COLOR_NAMES[color]} ({owner})", fontsize=7)
            for offset, model in enumerate(models, start=1):
                maps = model.maps_biased if side == 0 else model.maps_conflicting
                pred = (model.pred_biased if side == 0 else model.pred_conflicting)[row]
                prob = (model.prob_biased if side == 0 else model.prob_conflicting)[row]
                ax = axes[row, column + offset]
                draw_overlay(ax, images[row], maps[row], signed)
                ax.set_title(f"{model.label}: {int(pred)} ({prob:.0%})", fontsize=7,
                             color=CORRECT if pred == digit else WRONG)
        axes[row, 0].set_ylabel(f"digit {int(digit)}", fontsize=9)
    names = ", ".join(model.label for model in models)
    fig.suptitle(
        f"{method_title}: where does each model look? Left half: digits in their own class "
        f"color (as in training);\nright half: the same digits in another class's color. "
        f"Heatmap columns: {names} (title: predicted class and probability; green = correct)",
        fontsize=10,
    )
    fig.text(0.5, 0.005, _legend_text(signed), ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.015, 1, 0.95))
    save_figure(fig, path)


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
    left.set_title("background share (lower = on the digit)")
    right.set_ylabel("fraction of images whose peak is on the digit")
    right.set_title("pointing game (higher = on the digit)")
    for ax in (left, right):
        ax.set_xticks(x, splits)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    left.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{method_title}: does the evidence sit on the digit or on the colored "
                 "background?")
    fig.tight_layout()
    save_figure(fig, path)


def examples_figure(path: str | os.PathLike, blocks: Sequence[dict[str, Any]],
                    labels: Sequence[str], method_title: str, signed: bool) -> None:
    """For each split a block: a row of images, then one row of heatmaps per model."""
    columns = max(len(block["images"]) for block in blocks)
    rows_per_block = 1 + len(labels)
    fig, axes = plt.subplots(len(blocks) * rows_per_block, columns,
                             figsize=(1.5 * columns, 1.55 * len(blocks) * rows_per_block + 0.8),
                             squeeze=False)
    for b, block in enumerate(blocks):
        top = b * rows_per_block
        for c in range(columns):
            for r in range(rows_per_block):
                _clean(axes[top + r, c])
            if c >= len(block["images"]):
                continue
            image, label, color = block["images"][c], block["labels"][c], block["colors"][c]
            axes[top, c].imshow(image)
            axes[top, c].set_title(f"{label}, {COLOR_NAMES[color]}", fontsize=7)
            for m, name in enumerate(labels, start=1):
                ax = axes[top + m, c]
                draw_overlay(ax, image, block["maps"][name][c], signed)
                pred = block["preds"][name][c]
                ax.set_title(f"-> {pred}", fontsize=7, color=CORRECT if pred == label else WRONG)
        axes[top, 0].set_ylabel(block["split"], fontsize=9)
        for m, name in enumerate(labels, start=1):
            axes[top + m, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(f"{method_title} on the first images of each split (image title: digit and "
                 "color; heatmap title: prediction, green = correct)", fontsize=10)
    fig.text(0.5, 0.003, _legend_text(signed), ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.015, 1, 0.97))
    save_figure(fig, path)


def sanity_figure(path: str | os.PathLike, results: dict[str, Any], images: np.ndarray,
                  method_title: str, signed: bool) -> None:
    """Rank correlation to the trained model's maps as layers are randomized from the top
    (one line per model), and the first model's maps at every stage."""
    first = next(iter(results.values()))
    stages = first.stages
    shown = min(4, len(images))
    fig = plt.figure(figsize=(max(8.0, 1.3 * len(stages)), 3.6 + 1.35 * shown))
    top, bottom = fig.subfigures(2, 1, height_ratios=(3.2, 1.35 * shown))
    ax = top.subplots()
    x = np.arange(len(stages))
    for index, (label, result) in enumerate(results.items()):
        color = MODEL_COLORS[index % len(MODEL_COLORS)]
        mean = [entry["mean"] if entry["mean"] is not None else np.nan
                for entry in result.spearman]
        ax.plot(x, mean, "o-", color=color, label=f"{label}")
        if signed:
            mean_abs = [entry["mean"] if entry["mean"] is not None else np.nan
                        for entry in result.spearman_abs]
            ax.plot(x, mean_abs, "o--", color=color, alpha=0.6, label=f"{label} (|map|)")
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xticks(x, ["trained"] + [f"+{name}" for name in stages[1:]], rotation=30,
                  ha="right", fontsize=8)
    ax.set_ylabel("Spearman rank correlation\nwith the trained model's map")
    ax.set_ylim(-0.3, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{method_title} sanity check (Adebayo et al.): layers re-initialized "
                 "cumulatively from the output down.\nA faithful explanation decorrelates; "
                 "one that stays high ignores what the model learned.", fontsize=10)
    label = next(iter(results))
    axes = bottom.subplots(shown, len(stages), squeeze=False)
    for r in range(shown):
        for c in range(len(stages)):
            draw_overlay(axes[r, c], images[r], first.maps[c][r].numpy(), signed)
            if r == 0:
                axes[r, c].set_title("trained" if c == 0 else f"+{stages[c]}", fontsize=7)
        axes[r, 0].set_ylabel(f"image {r}", fontsize=8)
    bottom.suptitle(f"{label}: maps of the first images at each stage", fontsize=9)
    save_figure(fig, path)
