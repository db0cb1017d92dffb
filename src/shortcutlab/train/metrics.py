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


# An accuracy counts as below chance under (1 - CHANCE_MARGIN) times the chance floor of
# the split (chance_floor): 1/classes, or less where the rarest class is rarer, since a
# model that answers one class for every image scores that class's share (on the 133
# images of a tiny validation split, as little as 6%). Under the margin a model is not
# stuck but anti-correlated with the labels.
CHANCE_MARGIN = 0.25


def chance_level(num_classes: int) -> float:
    """The accuracy of guessing uniformly among ``num_classes`` classes."""
    return 1.0 / max(1, int(num_classes))


def chance_floor(labels: Tensor, num_classes: int) -> float:
    """The lower of 1/classes and the worst constant answer's accuracy (the smallest
    class share of ``labels``; absent classes do not count)."""
    counts = torch.bincount(labels.reshape(-1).cpu(), minlength=num_classes).float()
    present = counts[counts > 0]
    if not len(present):
        return chance_level(num_classes)
    return min(chance_level(num_classes), float(present.min() / counts.sum()))


def below_chance(acc: float | None, floor: float, margin: float = CHANCE_MARGIN) -> bool:
    """Whether ``acc`` is clearly worse than chance: under ``(1 - margin) * floor``."""
    return acc is not None and acc < (1.0 - margin) * floor


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
        "cell_mean": cell_mean_accuracy(correct, labels, colors),
        "loss": loss,
        "color_following": color_following_rate(predictions, colors),
    }


def cell_mean_accuracy(correct: Tensor, labels: Tensor, colors: Tensor) -> float | None:
    """The mean over the (label, color) cells that hold images of each cell's accuracy:
    LfF's "unbiased" metric, which weighs every digit-color pair alike however many
    images it has."""
    if not len(labels):
        return None
    cells = labels.long() * (int(colors.max()) + 1) + colors.long()
    _, index = torch.unique(cells, return_inverse=True)
    hits = torch.zeros(int(index.max()) + 1).index_add_(0, index, correct.float())
    sizes = torch.zeros_like(hits).index_add_(0, index, torch.ones_like(correct, dtype=torch.float))
    return float((hits / sizes).mean())
