"""Accuracy bookkeeping shared by the trainer and ``shortcutlab evaluate``.

``color_following_rate`` is the share of images predicted as the class that owns their
color (class ``c`` owns palette color ``c``). On the hard split, where no image carries
its own class color, it measures how much the model reads color instead of shape.
"""

from __future__ import annotations

import torch
from torch import Tensor

# metrics.json names of the dataset splits
METRIC_NAMES = {
    "train": "easy_train",
    "val": "easy_val",
    "test_easy": "test_easy",
    "test_hard": "hard",
    "test_unbiased": "unbiased",
}


def _mean(mask: Tensor) -> float | None:
    """The share of True values; None for an empty selection (JSON has no NaN)."""
    return float(mask.float().mean()) if mask.numel() else None


def accuracy(predictions: Tensor, labels: Tensor) -> float | None:
    return _mean(predictions == labels)


def color_following_rate(predictions: Tensor, colors: Tensor) -> float | None:
    return _mean(predictions == colors)


def split_scores(logits: Tensor, labels: Tensor, colors: Tensor) -> dict[str, float | None]:
    """Accuracy overall and on color-aligned / color-conflicting images, loss, color rate.

    On an easy split the conflicting images (about 5%) are drawn like the hard split's
    (a uniformly chosen other color), so their accuracy estimates hard-set accuracy
    without touching the hard set.
    """
    predictions = logits.argmax(1)
    correct = predictions == labels
    aligned = colors == labels
    loss = float(torch.nn.functional.cross_entropy(logits, labels)) if len(labels) else None
    return {
        "acc": _mean(correct),
        "aligned": _mean(correct[aligned]),
        "conflicting": _mean(correct[~aligned]),
        "loss": loss,
        "color_following": color_following_rate(predictions, colors),
    }
