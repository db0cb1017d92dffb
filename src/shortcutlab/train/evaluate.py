"""``shortcutlab evaluate``: how a trained model scores, and whether it reads color.

For a run (or any model directory) and a dataset it computes:

- accuracy on every split, per class, and on color-aligned vs color-conflicting images;
- confusion matrices on the hard set in both hard modes: "random" (each digit in a
  uniformly drawn other color) and "inverted" (digit d in the color of class d+1). The
  dataset ships one of them as ``test_hard``; the other is rendered from the same test
  digits with :func:`shortcutlab.data.recolor.recolor`;
- the color-swap test: the first N test digits, each rendered in each of the ten colors;
  ``follows_color[d][c]`` is the share of digits d in color c that the model calls c
  (the class that owns color c). A shape reader scores near 0 off the diagonal; a color
  reader near 1 ("feed it a red 1: does it predict 0?");
- ``color_following_rate``: on the hard set, the share of images predicted as the class
  that owns their color.

Everything goes to ``evaluate.json`` and PNG figures in the output directory.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shortcutlab import models
from shortcutlab.artifacts import load_npz, read_json, read_jsonl, write_bytes, write_json
from shortcutlab.data import COLOR_NAMES, SPLITS, load_meta, load_split
from shortcutlab.data.build import hard_colors
from shortcutlab.data.dataset import dataset_classes
from shortcutlab.errors import ShortcutlabError
from shortcutlab.figures import STABLE_METADATA, figure_bytes
from shortcutlab.progress import progress
from shortcutlab.runtime import resolve_device, set_threads
from shortcutlab.train.data import predict_logits
from shortcutlab.train.metrics import METRIC_NAMES
from shortcutlab.train.trainer import METRICS_FILE, PREDICTIONS_FILE

NUM_CLASSES = 10
EASY_SPLITS = ("train", "val", "test_easy")
HARD_MODES = ("random", "inverted")


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray,
                     classes: int = NUM_CLASSES) -> np.ndarray:
    """counts[true][predicted]."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def _share(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if mask.size else None


def split_report(labels: np.ndarray, colors: np.ndarray,
                 predictions: np.ndarray, classes: int = NUM_CLASSES) -> dict[str, Any]:
    """Accuracy overall, per class, aligned/conflicting, color following, confusion."""
    correct = predictions == labels
    aligned = colors == labels
    return {
        "n": int(labels.size),
        "accuracy": _share(correct),
        "per_class": [_share(correct[labels == c]) for c in range(classes)],
        "n_aligned": int(aligned.sum()),
        "aligned": _share(correct[aligned]),
        "n_conflicting": int((~aligned).sum()),
        "conflicting": _share(correct[~aligned]),
        "color_following": _share(predictions == colors),
        "confusion": confusion_matrix(labels, predictions, classes).tolist(),
    }


class _Predictor:
    """Batched argmax predictions of a model on uint8 NHWC images."""

    def __init__(self, model: torch.nn.Module, device: torch.device, batch_size: int = 1000):
        self.model = model.to(device=device, memory_format=torch.channels_last).eval()
        self.device, self.batch_size = device, batch_size

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if len(images) == 0:
            return np.zeros(0, dtype=np.int64)
        # uint8 images become float on the device 10 batches at a time (bounded memory)
        return models.batched_forward(self.model, images, 10 * self.batch_size,
                                      device=self.device, fn=self._predict,
                                      to_cpu=True).numpy()

    def _predict(self, model: torch.nn.Module, chunk: torch.Tensor) -> torch.Tensor:
        chunk = chunk.contiguous(memory_format=torch.channels_last)
        return predict_logits(model, chunk, self.batch_size).argmax(1)


@functools.lru_cache(maxsize=2)
def _split_digits(data_dir: str, dataset_id: str, split: str) -> np.ndarray:
    """The grayscale digits of a split (cached: rebuilding them means reloading the source)."""
    from shortcutlab.data.recolor import split_digits

    digits = split_digits(data_dir, split)
    digits.flags.writeable = False
    return digits


def hard_mode_colors(labels: np.ndarray, mode: str, seed: int,
                     classes: int = NUM_CLASSES) -> np.ndarray:
    return hard_colors(labels, mode, np.random.default_rng(np.random.SeedSequence([seed, 77])),
                       classes)





def evaluate_model(model: torch.nn.Module, data_dir: str | os.PathLike, *,
                   swap_images: int = 1000, device: torch.device | str = "cpu",
                   splits: tuple[str, ...] = SPLITS,
                   known: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Every number of ``evaluate.json`` for ``model`` on the dataset in ``data_dir``.

    ``known`` holds this model's predicted classes of whole splits (the trainer's, from
    :func:`run_predictions`); those splits are not predicted again.
    """
    known = known or {}
    from shortcutlab.data.recolor import recolor

    data_dir = Path(data_dir)
    meta = load_meta(data_dir)
    hard_mode = meta.get("config", {}).get("hard", "random")
    predict = _Predictor(model, resolve_device(device))
    classes = dataset_classes(meta)
    report: dict[str, Any] = {"dataset_id": meta.get("dataset_id"), "classes": classes,
                              "color_names": list(meta.get("color_names", COLOR_NAMES)),
                              "splits": {}}
    hard_labels = None
    for split in progress(splits, desc="evaluate", unit="split"):
        data = load_split(data_dir, split)
        predictions = known.get(split)
        if predictions is None or len(predictions) != len(data.labels):
            predictions = predict(data.images)
        entry = split_report(data.labels, data.colors, predictions.astype(np.int64), classes)
        report["splits"][split] = entry
        if split == "test_hard":
            hard_labels = data.labels
            report["hard_modes"] = {hard_mode: {**_mode_entry(entry), "source": "dataset"}}

    from shortcutlab.data.recolor import render_problem

    problem = render_problem(data_dir)
    if problem is not None:
        report["rendered"] = f"skipped: {problem} (no rendered hard modes, no color swap)"
        report["metrics"] = _flat_metrics(report)
        return report
    digits = None
    if hard_labels is not None:
        digits = _split_digits(str(data_dir.resolve()), str(meta.get("dataset_id")), "test_hard")
        for mode in HARD_MODES:
            if mode in report["hard_modes"]:
                continue
            colors = hard_mode_colors(hard_labels, mode, int(meta["config"].get("seed", 0)),
                                      classes)
            images = recolor(data_dir, digits, colors, seed=1)
            entry = split_report(hard_labels, colors, predict(images), classes)
            report["hard_modes"][mode] = {**_mode_entry(entry), "source": "rendered"}

    if swap_images > 0:
        test = load_split(data_dir, "test_easy")
        if digits is None:
            digits = _split_digits(str(data_dir.resolve()), str(meta.get("dataset_id")),
                                   "test_easy")
        report["color_swap"] = color_swap(predict, data_dir, digits[:swap_images],
                                          test.labels[:swap_images], recolor, classes)
    report["metrics"] = _flat_metrics(report)
    return report


def _mode_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: entry[key] for key in ("n", "accuracy", "per_class", "color_following",
                                        "confusion")}


def color_swap(predict: _Predictor, data_dir: Path, digits: np.ndarray, labels: np.ndarray,
               recolor: Any, classes: int = NUM_CLASSES) -> dict[str, Any]:
    """Render every digit in every color; how often is the prediction the color's class?"""
    n = len(digits)
    follows = np.zeros((classes, classes))
    correct = np.zeros((classes, classes))
    counts3 = np.zeros((classes, classes, classes), dtype=np.int64)
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    for color in range(classes):
        images = recolor(data_dir, digits, np.full(n, color, dtype=np.int64), seed=100 + color)
        predictions = predict(images)
        follows[:, color] = np.bincount(labels, weights=(predictions == color),
                                        minlength=classes)
        correct[:, color] = np.bincount(labels, weights=(predictions == labels),
                                        minlength=classes)
        np.add.at(counts3, (labels, color, predictions), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        follows /= counts[:, None]
        correct /= counts[:, None]
    off = ~np.eye(classes, dtype=bool)
    present = counts > 0
    return {
        "images": int(n),
        "per_class_images": counts.astype(int).tolist(),
        "follows_color": _nan_to_none(follows),
        "correct": _nan_to_none(correct),
        "prediction_counts": counts3.tolist(),  # [digit][color][predicted class]
        "off_diagonal_follows_color": float(np.nanmean(follows[present][off[present]])),
        "off_diagonal_accuracy": float(np.nanmean(correct[present][off[present]])),
    }


def _nan_to_none(matrix: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else float(v) for v in row] for row in matrix]


def _flat_metrics(report: dict[str, Any]) -> dict[str, Any]:
    splits = report["splits"]
    metrics = {METRIC_NAMES[s]: splits[s]["accuracy"] for s in splits}
    if "test_hard" in splits:
        metrics["color_following_rate"] = splits["test_hard"]["color_following"]
    for split in EASY_SPLITS:
        if split in splits:
            metrics[f"{METRIC_NAMES[split]}_aligned"] = splits[split]["aligned"]
            metrics[f"{METRIC_NAMES[split]}_conflicting"] = splits[split]["conflicting"]
    for mode, entry in report.get("hard_modes", {}).items():
        metrics[f"hard_{mode}"] = entry["accuracy"]
        metrics[f"color_following_{mode}"] = entry["color_following"]
    if "color_swap" in report:
        metrics["color_swap_follows_color"] = report["color_swap"]["off_diagonal_follows_color"]
    return metrics


# --- figures ------------------------------------------------------------------------

def _class_ticks(with_colors: bool, names: tuple[str, ...] | list[str] = COLOR_NAMES
                 ) -> list[str]:
    return [f"{c} ({names[c]})" if with_colors else str(c) for c in range(len(names))]


def plot_confusion(matrix: list[list[int]], title: str, row_colors: list[int] | None = None,
                   names: tuple[str, ...] | list[str] = COLOR_NAMES) -> bytes:
    """Row-normalized confusion matrix with counts' shares written in the cells."""
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix, dtype=np.float64)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.2, 6))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    classes = len(counts)
    names = list(names)[:classes]
    for i in range(classes):
        for j in range(classes):
            if shares[i, j] >= 0.005:
                ax.text(j, i, f"{shares[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(classes), _class_ticks(True, names), rotation=45, ha="right")
    if row_colors is None:
        ax.set_yticks(range(classes), _class_ticks(False, names))
        ax.set_ylabel("true digit")
    else:
        ax.set_yticks(range(classes),
                      [f"{c} in {names[row_colors[c]]}" for c in range(classes)])
        ax.set_ylabel("true digit (and the color it wears)")
    ax.set_xlabel("predicted class (and the color it owns)")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of the true digit's images")
    return figure_bytes(fig, metadata=STABLE_METADATA)


def plot_color_swap(swap: dict[str, Any], title: str,
                    names: tuple[str, ...] | list[str] = COLOR_NAMES) -> bytes:
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6))
    panels = (("follows_color", "prediction = class owning the color", "Reds"),
              ("correct", "prediction = true digit", "Greens"))
    for ax, (key, label, cmap) in zip(axes, panels, strict=True):
        values = np.array([[np.nan if v is None else v for v in row] for row in swap[key]])
        image = ax.imshow(values, cmap=cmap, vmin=0, vmax=1)
        classes = len(values)
        shown = list(names)[:classes]
        for i in range(classes):
            for j in range(classes):
                if not np.isnan(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if values[i, j] > 0.6 else "black")
        ax.set_xticks(range(classes), _class_ticks(True, shown), rotation=45, ha="right")
        ax.set_yticks(range(classes), _class_ticks(False, shown))
        ax.set_xlabel("color the digit is rendered in (class that owns it)")
        ax.set_ylabel("true digit")
        ax.set_title(label)
        fig.colorbar(image, ax=ax, label="share of the digit's images", shrink=0.85)
    fig.suptitle(title)
    return figure_bytes(fig, metadata=STABLE_METADATA)


def plot_per_class(report: dict[str, Any], title: str) -> bytes:
    names = list(report.get("color_names") or COLOR_NAMES)
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt

    splits = [s for s in SPLITS if s in report["splits"]]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(len(splits), 1)
    for index, split in enumerate(splits):
        values = [np.nan if v is None else v for v in report["splits"][split]["per_class"]]
        ax.bar(np.arange(len(values)) + (index - (len(splits) - 1) / 2) * width, values,
               width, label=f"{METRIC_NAMES[split]} ({report['splits'][split]['accuracy']:.3f})")
    classes = len(report["splits"][splits[0]]["per_class"])
    ax.set_xticks(range(classes), [f"{c}\n({names[c]})" for c in range(classes)])
    ax.set_xlabel("class (and the color it owns)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.axhline(1.0 / classes, color="gray", lw=0.8, ls=":", label="chance")
    ax.legend(fontsize=8, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.set_title(title, pad=36)
    return figure_bytes(fig, metadata=STABLE_METADATA)


def plot_training(log: list[dict[str, Any]], selected_step: int | None, title: str) -> bytes:
    """Easy-val accuracy on color-aligned and color-conflicting images over training."""
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in log]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [1, 1]})
    top.plot(steps, [r["easy_val"] for r in log], marker=".", label="easy val (all)")
    top.plot(steps, [r["easy_val_aligned"] for r in log], marker=".",
             label="easy val, color-aligned images")
    top.axhline(0.95, color="gray", ls=":", lw=1, label="95% (what color alone scores)")
    top.set_ylim(0.9, 1.0)
    top.set_ylabel("accuracy")
    top.legend(fontsize=8, loc="lower right")
    bottom.plot(steps, [r["easy_val_conflicting"] for r in log], marker=".", color="C3",
                label="easy val, color-conflicting images (needs shape)")
    if any("easy_train" in r for r in log):
        checked = [r for r in log if "easy_train" in r]
        top.plot([r["step"] for r in checked], [r["easy_train"] for r in checked], "s",
                 color="C2", ms=5, label="easy train (checked)")
        top.legend(fontsize=8, loc="lower right")
    bottom.set_ylim(0, 1)
    bottom.set_xlabel("training step")
    bottom.set_ylabel("accuracy")
    bottom.legend(fontsize=8, loc="upper right")
    for ax in (top, bottom):
        if selected_step is not None:
            ax.axvline(selected_step, color="k", lw=1, ls="--")
    if selected_step is not None:
        bottom.text(selected_step, 0.95, f" selected step {selected_step}", va="top", fontsize=8)
    fig.suptitle(title)
    return figure_bytes(fig, metadata=STABLE_METADATA)


def write_figures(report: dict[str, Any], out_dir: Path, name: str) -> list[str]:
    written = []
    names = list(report.get("color_names") or COLOR_NAMES)
    classes = int(report.get("classes") or NUM_CLASSES)
    for mode, entry in report.get("hard_modes", {}).items():
        row_colors = [(c + 1) % classes for c in range(classes)] \
            if mode == "inverted" else None
        title = (f"{name}: hard set, {mode} colors ({entry['source']})\n"
                 f"accuracy {entry['accuracy']:.3f}, predicted as the color's class "
                 f"{entry['color_following']:.3f}")
        write_bytes(out_dir / f"confusion_{mode}.png",
                    plot_confusion(entry["confusion"], title, row_colors, names))
        written.append(f"confusion_{mode}.png")
    if "color_swap" in report:
        swap = report["color_swap"]
        title = (f"{name}: color-swap test, {swap['images']} test digits in each of "
                 f"{classes} colors (off-diagonal color following "
                 f"{swap['off_diagonal_follows_color']:.3f})")
        write_bytes(out_dir / "color_swap.png", plot_color_swap(swap, title, names))
        written.append("color_swap.png")
    write_bytes(out_dir / "per_class.png",
                plot_per_class(report, f"{name}: accuracy per class and split"))
    written.append("per_class.png")
    log = report.get("training_log")
    if log:
        write_bytes(out_dir / "training.png", plot_training(
            log, report.get("selected_step"), f"{name}: learning color first, shape later"))
        written.append("training.png")
    return written


def run_predictions(run_dir: str | os.PathLike, data_dir: str | os.PathLike
                    ) -> dict[str, np.ndarray]:
    """The trainer's predicted classes per split (``predictions.npz``, checksum verified)
    when they belong to the model now in ``run_dir`` and to the dataset in ``data_dir``;
    empty otherwise (a run trained before the file existed, another model, other data)."""
    run_dir = Path(run_dir)
    metrics_path, model_path = run_dir / METRICS_FILE, run_dir / models.registry.MODEL_META
    if not (metrics_path.is_file() and model_path.is_file()):
        return {}
    record = read_json(metrics_path).get("predictions")
    if not isinstance(record, dict) or not record.get("dataset_id"):
        return {}
    if record.get("model_sha256") != read_json(model_path).get("sha256") or \
            record["dataset_id"] != load_meta(data_dir).get("dataset_id"):
        return {}
    file = (run_dir / str(record.get("file", PREDICTIONS_FILE))).resolve()
    if file.parent != run_dir.resolve() or not file.is_file():
        return {}
    return load_npz(file, expected_sha256=record.get("sha256"))


def evaluate_run(run_dir: str | os.PathLike, data_dir: str | os.PathLike,
                 out_dir: str | os.PathLike | None = None, *, swap_images: int = 1000,
                 device: str = "auto", threads: int | None = None) -> dict[str, Any]:
    """Evaluate the model in ``run_dir``; write ``evaluate.json`` and figures to ``out_dir``."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "evaluate"
    if swap_images < 0:
        raise ShortcutlabError(f"--swap-images must be at least 0, got {swap_images}")
    previous = torch.get_num_threads()
    set_threads(threads)
    try:
        model = models.load(run_dir)
        report = evaluate_model(model, data_dir, swap_images=swap_images, device=device,
                                known=run_predictions(run_dir, data_dir))
    finally:
        torch.set_num_threads(previous)
    report["run"] = str(run_dir)
    report["data_dir"] = str(Path(data_dir).resolve())
    report["model"] = getattr(model, "spec", None)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "log.jsonl").is_file():
        report["training_log"] = [r for r in read_jsonl(run_dir / "log.jsonl")
                                  if "easy_val_aligned" in r]
    if (run_dir / "metrics.json").is_file():
        report["selected_step"] = read_json(run_dir / "metrics.json").get("selected_step")
    report["figures"] = write_figures(report, out_dir, run_dir.resolve().name)
    write_json(out_dir / "evaluate.json", report)
    return report
