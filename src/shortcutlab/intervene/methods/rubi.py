"""RUBi (Cadene et al. 2019): a bias-only branch masks the main model's logits in training.

One of the baselines of ReBias' own comparison (Bahng et al. 2020), where the bias-only
model is a network that cannot see shape. Here that network is :class:`ColorOnlyNet`:
1x1 convolutions (each pixel on its own) averaged over the image, so it reads colors and
their proportions, never a stroke.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from shortcutlab.errors import ShortcutlabError
from shortcutlab.intervene.hparams import HParam, optimizer_hparams
from shortcutlab.intervene.registry import Intervention, register_method
from shortcutlab.train.algorithm import Batch, make_optimizer


class ColorOnlyNet(nn.Module):
    """Logits from colors alone: per-pixel 1x1 convolutions, then the mean over the image.

    Moving pixels around does not change its output, so whatever it predicts it predicts
    from the image's colors.
    """

    def __init__(self, num_classes: int, width: int = 32, channels: int = 3) -> None:
        super().__init__()
        self.pixels = nn.Sequential(nn.Conv2d(channels, width, 1), nn.ReLU(),
                                    nn.Conv2d(width, width, 1), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pixels(x).mean(dim=(2, 3)))


def output_classes(model: nn.Module) -> int:
    """The number of classes of ``model``: its last Linear layer's outputs."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ShortcutlabError(f"rubi needs a model ending in a Linear layer; "
                               f"{type(model).__name__} has none")
    return linears[-1].out_features


class ColorBranchIntervention(Intervention):
    """A method that trains a :class:`ColorOnlyNet` beside the model, both from one
    optimizer (``bias_width`` sets its channels); it checkpoints and resumes with it."""

    def __init__(self, model: nn.Module, hparams: dict[str, Any]) -> None:
        bias_branch = ColorOnlyNet(output_classes(model), int(hparams.get("bias_width", 32)))
        super().__init__(model, hparams)
        self.bias_branch = bias_branch
        self.optimizer = make_optimizer(self.trainable_parameters(), self.hparams)

    def trainable_parameters(self) -> list[nn.Parameter]:
        # absent while the base class builds its optimizer
        branch = self._modules.get("bias_branch")
        modules = [self.model] + ([branch] if branch is not None else [])
        return [p for module in modules for p in module.parameters() if p.requires_grad]

    def training_state(self) -> dict[str, Any]:
        return {**super().training_state(), "bias_branch": self.bias_branch.state_dict()}

    def load_training_state(self, state: dict[str, Any]) -> None:
        super().load_training_state(state)
        self.bias_branch.load_state_dict(state["bias_branch"])


@register_method
class ReducingUnimodalBias(ColorBranchIntervention):
    """RUBi: train the model through a mask computed by a color-only branch.

    Hypothesis: during training the model's logits are multiplied by the sigmoid of a
    color-only network's logits. On the 95% of images whose color is their label's, that
    mask already points at the right class, so the fused prediction is right with little
    help from the model and those images' loss (and gradient) is small; on the
    conflicting images the mask points at the wrong class and the model must overcome it.
    Its gradient comes mostly from the images color cannot explain, so it learns shape. At
    test time the model is used alone. Uses the knowledge that color is the bias (built
    into the color-only branch), no per-image labels.
    """

    name = "rubi"
    uses = ("bias-knowledge",)
    hparam_space: ClassVar[dict[str, HParam]] = {
        **optimizer_hparams(),
        "bias_weight": HParam(1.0, "weight of the color-only branch's own cross-entropy",
                              0.1, 10.0, log=True),
        "bias_width": HParam(32, "channels of the color-only branch"),
        # Not in RUBi: the model's own, unmasked cross-entropy, which keeps the aligned
        # images' shape signal that the mask removes with their color signal
        # (docs/results.md#intervene). 0 is RUBi as published.
        "main_weight": HParam(0.0, "weight of the model's own unmasked cross-entropy "
                                   "(0: RUBi as published)", 0.0, 2.0),
    }

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        logits = self.model(batch.images)
        bias_logits = self.bias_branch(batch.images)
        fused = logits * torch.sigmoid(bias_logits)
        fused_loss = F.cross_entropy(fused, batch.labels)
        bias_loss = F.cross_entropy(bias_logits, batch.labels)
        loss = fused_loss + float(self.hparams["bias_weight"]) * bias_loss
        main_weight = float(self.hparams.get("main_weight", 0.0))
        ce = F.cross_entropy(logits, batch.labels)
        if main_weight:
            loss = loss + main_weight * ce
        self.step_optimizer(loss)
        return {"loss": float(loss.detach()), "ce": float(ce.detach()),
                "fused_ce": float(fused_loss.detach()), "bias_ce": float(bias_loss.detach())}
