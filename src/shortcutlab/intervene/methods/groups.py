"""Group robustness over (label, color) groups: GroupDRO and importance reweighting."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from shortcutlab.data.palette import NUM_COLORS
from shortcutlab.errors import ShortcutlabError
from shortcutlab.intervene.hparams import HParam, optimizer_hparams
from shortcutlab.intervene.registry import Intervention, register_method
from shortcutlab.train.algorithm import Batch, TrainContext


def group_of(labels: torch.Tensor, colors: torch.Tensor,
             classes: int = NUM_COLORS) -> torch.Tensor:
    """The (label, color) group index, label-major: ``label * classes + color``."""
    return labels * classes + colors


def context_classes(context: TrainContext) -> int:
    """The class count of the run's dataset (ten unless its meta.json says otherwise)."""
    if context.data_dir is None:
        return NUM_COLORS
    from shortcutlab.data import load_meta
    from shortcutlab.data.dataset import dataset_classes

    return dataset_classes(load_meta(context.data_dir))


@register_method
class GroupDRO(Intervention):
    """GroupDRO (Sagawa et al. 2020): minimize the loss of the worst (label, color) group.

    Hypothesis: a color-reading model fails on the small groups whose color is not their
    label's (about 28 training images each); weighting the groups by an online estimate of
    their loss (exponentiated gradient ascent on the group weights) makes those failures
    dominate the objective, so the model has to read shape to lower them. Uses the color
    of every training image.
    """

    name = "groupdro"
    uses = ("color-labels",)
    hparam_space: ClassVar[dict[str, HParam]] = {
        **optimizer_hparams(),
        "eta": HParam(0.01, "step size of the group weights", 1e-3, 1.0, log=True),
    }

    def __init__(self, model: nn.Module, hparams: dict[str, Any]) -> None:
        super().__init__(model, hparams)
        groups = NUM_COLORS * NUM_COLORS
        self.classes = NUM_COLORS
        self.register_buffer("group_weights", torch.full((groups,), 1.0 / groups))

    def setup(self, context: TrainContext) -> None:
        super().setup(context)
        self.classes = context_classes(context)
        groups = self.classes * self.classes
        if self.group_weights.numel() != groups:  # another class count than ten
            self.group_weights = torch.full((groups,), 1.0 / groups,
                                            device=self.group_weights.device)

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        groups = group_of(batch.labels, batch.colors, self.classes)
        losses = F.cross_entropy(self.model(batch.images), batch.labels, reduction="none")
        count = torch.zeros_like(self.group_weights).index_add_(0, groups, torch.ones_like(losses))
        total = torch.zeros_like(self.group_weights).index_add_(0, groups, losses)
        present = count > 0
        group_loss = total / count.clamp_min(1)
        with torch.no_grad():
            self.group_weights[present] *= torch.exp(self.hparams["eta"] * group_loss[present])
            self.group_weights /= self.group_weights.sum()
        loss = (self.group_weights * group_loss).sum()
        self.step_optimizer(loss)
        worst = float(group_loss[present].max().detach())
        return {"loss": float(loss.detach()), "ce": float(losses.mean().detach()),
                "worst_group_loss": worst}

    def training_state(self) -> dict[str, Any]:
        return {**super().training_state(), "group_weights": self.group_weights.clone()}

    def load_training_state(self, state: dict[str, Any]) -> None:
        super().load_training_state(state)
        self.group_weights.copy_(state["group_weights"])


@register_method
class Reweight(Intervention):
    """Importance reweighting: each (label, color) group weighs as much as any other.

    Hypothesis: the bias lives only in the joint distribution of labels and colors;
    weighting each image by the inverse frequency of its (label, color) group makes color
    and label independent in the weighted training risk, so color stops predicting the
    label and the minimizer must read shape. Uses the color of every training image.
    """

    name = "reweight"
    uses = ("color-labels",)
    hparam_space: ClassVar[dict[str, HParam]] = {
        **optimizer_hparams(),
        "power": HParam(1.0, "weight = count(label, color)^-power (1: groups balanced)",
                        0.25, 1.0),
    }

    def __init__(self, model: nn.Module, hparams: dict[str, Any]) -> None:
        super().__init__(model, hparams)
        self.classes = NUM_COLORS
        self.register_buffer("weights", torch.ones(NUM_COLORS * NUM_COLORS))

    def setup(self, context: TrainContext) -> None:
        super().setup(context)
        if context.train is None:
            raise ShortcutlabError("reweight needs the training split's labels and colors")
        self.classes = context_classes(context)
        if self.weights.numel() != self.classes ** 2:
            self.weights = torch.ones(self.classes ** 2, device=self.weights.device)
        groups = group_of(context.train["labels"], context.train["colors"], self.classes).cpu()
        counts = torch.bincount(groups, minlength=self.classes ** 2).double()
        weights = counts.clamp_min(1).pow(-float(self.hparams["power"]))
        # Normalized so that the average image weighs 1, as in plain cross-entropy.
        weights = weights / (weights[groups].mean())
        self.weights.copy_(weights.to(self.weights))

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        losses = F.cross_entropy(self.model(batch.images), batch.labels, reduction="none")
        weights = self.weights[group_of(batch.labels, batch.colors, self.classes)]
        # Self-normalized within the batch: a batch without rare groups still trains at the
        # usual scale, and one with a rare image is not a 100x gradient spike.
        loss = (weights * losses).sum() / weights.sum()
        self.step_optimizer(loss)
        return {"loss": float(loss.detach()), "ce": float(losses.mean().detach())}
