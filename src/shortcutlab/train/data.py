"""Splits held as tensors in memory, their batch order, and batched prediction.

Colored MNIST fits in memory many times over, so the trainer indexes tensors directly
instead of going through a per-item ``DataLoader``: that keeps the loop's bookkeeping
negligible next to the model's own work (see ``benchmarks/bench_train.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from shortcutlab.data import load_split
from shortcutlab.models import batched_forward
from shortcutlab.train.algorithm import Batch


@dataclass
class TensorSplit:
    """One split on a device: images float (N,3,28,28) in [0,1], labels, colors, masks."""

    name: str
    images: Tensor
    labels: Tensor
    colors: Tensor
    masks: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def aligned(self) -> Tensor:
        return self.colors == self.labels

    def batch(self, index: Tensor) -> Batch:
        return Batch(self.images[index], self.labels[index], self.colors[index],
                     self.masks[index], index)

    def as_dict(self) -> dict[str, Tensor]:
        return {"images": self.images, "labels": self.labels, "colors": self.colors,
                "masks": self.masks}


def load_tensor_split(data_dir: str | os.PathLike, split: str,
                      device: torch.device | str = "cpu",
                      channels_last: bool = False) -> TensorSplit:
    """Load a split (checksum verified) straight into tensors on ``device``.

    The stored NHWC bytes already are the channels-last layout, so with ``channels_last``
    the float images are made without an intermediate copy (half the peak memory).
    """
    arrays = load_split(data_dir, split)
    if channels_last:
        nchw_view = torch.from_numpy(arrays.images).to(device).permute(0, 3, 1, 2)
        images = nchw_view.to(torch.float32, memory_format=torch.channels_last).div_(255.0)
    else:
        images = arrays.image_tensor(device)
    return TensorSplit(
        split, images,
        torch.from_numpy(arrays.labels).to(device),
        torch.from_numpy(arrays.colors).to(device),
        torch.from_numpy(arrays.masks).to(device),
    )


def epoch_seed(seed: int, epoch: int) -> int:
    """An independent, reproducible seed for each epoch's shuffle."""
    return int(np.random.SeedSequence([seed, epoch, 0x5EED]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


def epoch_order(seed: int, epoch: int, num_items: int) -> Tensor:
    """The permutation used in ``epoch``: a pure function of (seed, epoch), so a resumed
    run needs no sampler state to continue with exactly the same batches."""
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(num_items, generator=generator)


class BatchOrder:
    """Maps a global 0-based step to the indices of its batch (full batches only)."""

    def __init__(self, seed: int, num_items: int, batch_size: int) -> None:
        self.seed, self.num_items, self.batch_size = seed, num_items, batch_size
        self.steps_per_epoch = num_items // batch_size
        self._epoch = -1
        self._order: Tensor | None = None

    def indices(self, step: int) -> Tensor:
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._order = epoch_order(self.seed, epoch, self.num_items)
            self._epoch = epoch
        start = position * self.batch_size
        return self._order[start:start + self.batch_size]


@torch.inference_mode()
def predict_logits(predict: Callable[[Tensor], Tensor], images: Tensor,
                   batch_size: int = 1000) -> Tensor:
    """Logits for every image, in chunks (the caller puts the model in eval mode)."""
    return batched_forward(predict, images, batch_size, fn=_float_logits)


def _float_logits(predict: Callable[[Tensor], Tensor], images: Tensor) -> Tensor:
    return predict(images).float()
