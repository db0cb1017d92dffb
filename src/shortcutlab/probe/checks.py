"""Measured checks on class-logit visualizations: which color dominates, which digit shows.

* Dominant color: every pixel votes for the palette color its RGB direction is closest to
  (cosine similarity, so a dark red still votes red). Near-white pixels, which are how the
  datasets draw the digit, and near-black pixels, which carry no hue, abstain. For a model
  that reads color, the visualization of class ``c`` should be dominated by color ``c``.
* Digit: the grayscale judge of :mod:`shortcutlab.probe.grayscale` names the digit
  it sees. For a model that reads shape, the visualization of class ``c`` should look
  like a ``c``. (A color reader's logits may still respond to its class's strokes where
  no color contradicts them, so its pictures can show the digit too.)
* Recoloring: the model itself is shown its class-``c`` picture with the color channels
  rotated (R, G, B -> G, B, R and B, R, G: the same pattern in other hues). A model whose
  logit wanted the color no longer calls the picture ``c``; one that wanted the shape
  still does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from shortcutlab.data.palette import COLOR_NAMES, NUM_COLORS, palette_array
from shortcutlab.probe.grayscale import judge

WHITE_LEVEL = 0.75  # a pixel whose every channel exceeds this is "digit white"
DARK_LEVEL = 0.15   # a pixel whose brightest channel is below this has no usable hue


def color_votes(images: Tensor, palette: np.ndarray | None = None) -> np.ndarray:
    """Votes (N, K): how many pixels of each image are closest in hue to each palette color
    (``palette`` (K, 3) in [0, 1]; default the study's ten)."""
    pixels = images.detach().cpu().permute(0, 2, 3, 1).reshape(images.shape[0], -1, 3)
    palette = torch.from_numpy(np.asarray(palette_array(np.float32) if palette is None
                                          else palette, dtype=np.float32))
    similarity = torch.nn.functional.normalize(pixels, dim=2) @ \
        torch.nn.functional.normalize(palette, dim=1).T
    nearest = similarity.argmax(dim=2)
    voting = (pixels.amax(dim=2) > DARK_LEVEL) & ~(pixels.amin(dim=2) > WHITE_LEVEL)
    votes = torch.zeros(images.shape[0], len(palette), dtype=torch.long)
    votes.scatter_add_(1, nearest * voting, voting.long())
    return votes.numpy()


def dominant_colors(images: Tensor, palette: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The dominant palette color of each image and the share of votes it got."""
    votes = color_votes(images, palette)
    totals = np.maximum(votes.sum(axis=1), 1)
    dominant = votes.argmax(axis=1)
    return dominant, votes[np.arange(len(votes)), dominant] / totals


@torch.no_grad()
def recolored_kept(model: nn.Module, images: Tensor, classes: np.ndarray) -> np.ndarray:
    """Per image, the share of the two channel rotations after which ``model`` still
    predicts the image's class."""
    target = torch.as_tensor(np.asarray(classes), dtype=torch.long)
    model = model.eval()
    device = next(model.parameters()).device
    kept = [(model(images.roll(shift, dims=1).to(device)).argmax(1).cpu() == target).float()
            for shift in (1, 2)]
    return torch.stack(kept).mean(0).numpy()


def class_logit_checks(images: Tensor, classes: np.ndarray,
                       judge_model: nn.Module | None = None,
                       model: nn.Module | None = None, palette: np.ndarray | None = None,
                       color_names: Sequence[str] = COLOR_NAMES) -> dict[str, Any]:
    """The checks on class-logit visualizations ``images`` (N, 3, H, W) of ``classes``
    (N,); the recoloring check needs the visualized ``model``; ``palette`` and
    ``color_names`` are the dataset's (default the study's ten colors)."""
    classes = np.asarray(classes)
    dominant, share = dominant_colors(images, palette)
    report: dict[str, Any] = {
        "count": len(classes),
        "dominant_color_match": float((dominant == classes).mean()),
        "chance": 1.0 / (NUM_COLORS if palette is None else len(palette)),
        "per_image": [
            {"class": int(c), "dominant_color": color_names[int(d)], "dominant_share": float(s)}
            for c, d, s in zip(classes, dominant, share, strict=True)
        ],
    }
    if model is not None:
        kept = recolored_kept(model, images.detach(), classes)
        report["recolored_kept"] = float(kept.mean())
        for row, value in zip(report["per_image"], kept, strict=True):
            row["recolored_kept"] = float(value)
    if judge_model is not None:
        digits, confidence = judge(judge_model, images.detach().cpu())
        report["gray_judge_match"] = float((digits == classes).mean())
        for row, digit, conf in zip(report["per_image"], digits, confidence, strict=True):
            row["judge_digit"] = int(digit)
            row["judge_confidence"] = float(conf)
    return report
