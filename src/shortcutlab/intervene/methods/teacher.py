"""The shape teacher TEA distills from, trained with privileged information."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from shortcutlab.errors import ShortcutlabError
from shortcutlab.intervene.hparams import HParam, optimizer_hparams
from shortcutlab.intervene.registry import Intervention, register_method
from shortcutlab.train.algorithm import Batch, TrainContext


def recolored_training_images(data_dir: str | os.PathLike, seed: int) -> torch.Tensor:
    """The training split's own digits re-rendered in uniformly random palette colors.

    Same digits, same order, same rendering style as the dataset; only the color of
    each image is drawn afresh, independently of its label, so color predicts nothing.
    Returned as uint8 (N, 28, 28, 3), indexed like the training split.
    """
    from shortcutlab.data import load_meta
    from shortcutlab.data.dataset import dataset_classes
    from shortcutlab.data.recolor import recolor, split_digits

    digits = split_digits(data_dir, "train")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4242]))
    colors = rng.integers(0, dataset_classes(load_meta(data_dir)), size=len(digits))
    return torch.from_numpy(recolor(data_dir, digits, colors, seed=seed))


@register_method
class ShapeTeacher(Intervention):
    """A teacher that reads shape because, in its training data, color carries no signal.

    Hypothesis: with each training digit re-rendered in a color drawn independently of its
    label, the cheapest feature that predicts the label is the digit's shape, so plain
    cross-entropy learns shape. This is privileged information (the grayscale digits and
    the knowledge that color is the bias); it is used only to train the teacher that TEA
    distills from, never the student, which sees only the 95%-biased training set.
    """

    name = "teacher"
    uses = ("recolored-digits",)
    role = "teacher"
    hparam_space: ClassVar[dict[str, HParam]] = optimizer_hparams()

    def __init__(self, model: nn.Module, hparams: dict[str, Any]) -> None:
        super().__init__(model, hparams)
        self.recolored = torch.zeros(0, 28, 28, 3, dtype=torch.uint8)

    def setup(self, context: TrainContext) -> None:
        super().setup(context)
        if context.data_dir is None:
            raise ShortcutlabError("the teacher needs the dataset directory to re-render digits")
        self.recolored = recolored_training_images(context.data_dir, context.seed)
        if len(self.recolored) != context.num_train:
            raise ShortcutlabError(
                f"re-rendered {len(self.recolored)} digits for {context.num_train} training "
                "images; the dataset directory does not match its source"
            )

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        from shortcutlab.data.dataset import images_to_tensor

        index = batch.index.cpu()
        images = images_to_tensor(self.recolored[index].numpy(), batch.images.device)
        loss = F.cross_entropy(self.model(images), batch.labels)
        self.step_optimizer(loss)
        return {"loss": float(loss.detach())}
