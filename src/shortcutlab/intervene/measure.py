"""What the results table measures beyond the trainer's metrics.

- ``hard_inverted``: accuracy on the test digits re-rendered with digit d in the color
  of d + 1 (the write-up's "inverted" hard set), whatever mode the dataset's own hard
  split was built in. A color reader predicts d + 1 for every digit d.
- ``background_share``: the mean share of positive Grad-CAM attribution (for the
  predicted class) that falls outside the digit's mask, on the first
  :data:`SHARE_IMAGES` images of the hard split; a shape reader keeps it low.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch

SHARE_IMAGES = 1000
_CHUNK = 1000


@functools.lru_cache(maxsize=4)
def inverted_hard_set(data_dir: str, dataset_id: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The test digits with digit d rendered in the color of d + 1: images and labels.

    Cached per dataset (``dataset_id`` is part of the key so a rebuilt directory is not
    served stale images).
    """
    from shortcutlab.data import images_to_tensor, load_meta, load_split
    from shortcutlab.data.dataset import dataset_classes
    from shortcutlab.data.recolor import recolor, split_digits

    labels = load_split(data_dir, "test_hard").labels
    digits = split_digits(data_dir, "test_hard")
    colors = (labels + 1) % dataset_classes(load_meta(data_dir))
    images = recolor(data_dir, digits, colors, seed=1)
    return images_to_tensor(images), torch.from_numpy(labels)


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    from shortcutlab.models import batched_forward

    predicted = batched_forward(model, images, _CHUNK, fn=_predicted_class, to_cpu=True)
    return int((predicted == labels).sum()) / max(1, len(labels))


def _predicted_class(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return model(images).argmax(1)


def gradcam_background_share(model: torch.nn.Module, images: torch.Tensor,
                             masks: torch.Tensor) -> float:
    """Mean share of positive Grad-CAM (predicted class) outside the digit, over the images
    whose map has any positive attribution."""
    from shortcutlab.explain import background_share, grad_cam

    device = next(model.parameters()).device
    shares = []
    for start in range(0, len(images), 250):
        x = images[start:start + 250].to(device)
        cam = grad_cam(model, x).detach().cpu()
        shares.append(torch.as_tensor(background_share(cam, masks[start:start + 250])))
    # an image whose map has no positive attribution has no share (NaN): leave it out
    return float(torch.nanmean(torch.cat([s.reshape(-1) for s in shares]).float()))


def extra_metrics(run_dir: str | os.PathLike, data_dir: str | os.PathLike,
                  device: torch.device | str = "auto") -> dict[str, Any]:
    """``hard_inverted`` and ``background_share`` of the model saved in ``run_dir``."""
    from shortcutlab import models
    from shortcutlab.data import load_meta, load_split
    from shortcutlab.data.recolor import renderable
    from shortcutlab.runtime import resolve_device

    model = models.load(run_dir, resolve_device(device))
    data_dir = str(Path(data_dir).resolve())
    meta = load_meta(data_dir)
    inverted = None  # an imported dataset cannot be rendered again in other colors
    if renderable(data_dir):
        images, labels = inverted_hard_set(data_dir, meta["dataset_id"])
        inverted = accuracy(model, images, labels)
    share = None  # without digit masks there is no background to measure
    if meta.get("masks", True):
        hard = load_split(data_dir, "test_hard").subset(slice(0, SHARE_IMAGES))
        share = gradcam_background_share(model, hard.image_tensor(),
                                         torch.from_numpy(hard.masks))
    return {"hard_inverted": inverted, "background_share": share}
