"""Numbers that say where a heatmap looks, measured against the digit's mask.

* :func:`background_share`: the share of positive attribution that falls outside the
  digit. A map spread uniformly over the image scores the background's share of the
  area (:func:`background_area`, the chance level); a model that reads the colored
  background scores above it, one that reads the stroke far below.
* :func:`pointing_game` (Zhang et al., 2016): does the map's peak fall on the digit?
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain._common import to_map


def _as_tensor(array: Tensor | np.ndarray) -> Tensor:
    return array if isinstance(array, Tensor) else torch.from_numpy(np.asarray(array))


def _check(heatmap: Tensor | np.ndarray, masks: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    heatmap = to_map(_as_tensor(heatmap)).detach()
    masks = _as_tensor(masks).to(device=heatmap.device)
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.shape != heatmap.shape:
        raise ShortcutlabError(
            f"heatmaps {tuple(heatmap.shape)} and masks {tuple(masks.shape)} differ in shape; "
            "upsample the heatmaps to the image size first"
        )
    return heatmap.double(), masks.bool()


def background_share(heatmap: Tensor | np.ndarray, masks: Tensor | np.ndarray) -> Tensor:
    """Per image, positive attribution outside the mask / all positive attribution.

    ``heatmap`` is (N, H, W), or (N, C, H, W) attributions (summed over channels first);
    ``masks`` (N, H, W) is True on the digit. Images whose map has no positive value get
    NaN (there is nothing to share out).
    """
    heatmap, masks = _check(heatmap, masks)
    positive = heatmap.clamp(min=0)
    total = positive.sum(dim=(1, 2))
    outside = (positive * ~masks).sum(dim=(1, 2))
    return torch.where(total > 0, outside / total.clamp(min=torch.finfo(total.dtype).tiny),
                       torch.full_like(total, math.nan))


def background_area(masks: Tensor | np.ndarray) -> Tensor:
    """Per image, the fraction of pixels outside the mask: a uniform map's background share."""
    masks = _as_tensor(masks).bool()
    return (~masks).double().flatten(1).mean(dim=1)


def pointing_game(heatmap: Tensor | np.ndarray, masks: Tensor | np.ndarray,
                  tolerance: int = 0) -> Tensor:
    """Per image, True when the heatmap's maximum lies on the mask.

    ``tolerance`` grows the mask by that many pixels (the original game allows 15 pixels
    on large images; on 28x28 digits we default to none). A map with no positive value has
    no peak and misses. Ties go to the first maximum in row-major order.
    """
    if tolerance < 0:
        raise ShortcutlabError(f"tolerance must be non-negative, got {tolerance}")
    heatmap, masks = _check(heatmap, masks)
    if tolerance:
        size = 2 * tolerance + 1
        masks = F.max_pool2d(masks[:, None].float(), size, stride=1, padding=tolerance)[:, 0] > 0
    peak = heatmap.flatten(1).argmax(dim=1)
    hit = masks.flatten(1).gather(1, peak[:, None])[:, 0]
    return hit & (heatmap.flatten(1).amax(dim=1) > 0)


def summarize(values: Tensor | np.ndarray) -> dict[str, Any]:
    """Mean, std, median and count of the finite values, plus how many were undefined."""
    array = _as_tensor(values).double().cpu().numpy()
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return {"mean": None, "std": None, "median": None, "n": 0, "undefined": int(array.size)}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "median": float(np.median(finite)),
        "n": int(finite.size),
        "undefined": int(array.size - finite.size),
    }
