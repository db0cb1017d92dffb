"""Saliency guidance: the share of attribution outside the digit is a loss."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from shortcutlab.intervene.hparams import HParam, optimizer_hparams
from shortcutlab.intervene.methods.rrr import erode, region_shares
from shortcutlab.intervene.registry import Intervention, register_method
from shortcutlab.train.algorithm import Batch


def trainable_grad_cam(model: torch.nn.Module, images: Tensor, targets: Tensor
                       ) -> tuple[Tensor, Tensor]:
    """Grad-CAM at the last Conv2d with its graph kept, and the logits of the same pass.

    ``shortcutlab.explain.grad_cam`` explains a trained model, so it detaches the layer's
    activation and gradient; a training loss needs both with their graph
    (``create_graph``), which is all this adds. Returns (N, h, w) maps and (N, K) logits.
    """
    from shortcutlab.models import last_conv

    _, layer = last_conv(model)
    captured: list[Tensor] = []
    handle = layer.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        logits = model(images)
    finally:
        handle.remove()
    (activation,) = captured
    score = logits.gather(1, targets[:, None]).sum()
    (gradient,) = torch.autograd.grad(score, activation, create_graph=True)
    cam = torch.relu((gradient.mean(dim=(2, 3), keepdim=True) * activation).sum(dim=1))
    return cam, logits


def outside_share(heatmap: Tensor, masks: Tensor, eps: float = 1e-8) -> Tensor:
    """Per-image share of positive attribution on background pixels, differentiably.

    ``heatmap`` (N, H, W) or (N, C, H, W) (channels summed); ``masks`` (N, H, W), True on
    the digit. The same quantity as ``shortcutlab.explain.background_share``, kept as a
    tensor with its graph so that it can be minimized.
    """
    if heatmap.dim() == 4:
        heatmap = heatmap.sum(1)
    if heatmap.shape[-2:] != masks.shape[-2:]:
        heatmap = F.interpolate(heatmap[:, None], size=masks.shape[-2:], mode="bilinear",
                                align_corners=False)[:, 0]
    positive = heatmap.clamp_min(0).flatten(1)
    background = (~masks.bool()).flatten(1).to(positive.dtype)
    return (positive * background).sum(1) / (positive.sum(1) + eps)


@register_method
class SaliencyGuide(Intervention):
    """Saliency guidance: cross-entropy plus the share of the true class's attribution
    (LRP or Grad-CAM) that falls outside the digit.

    Hypothesis: a model that reads the background color puts its attribution on the
    background; if that share is itself penalized while the model learns to classify,
    the only way to stay accurate and keep attribution on the digit is to decide from
    the digit's shape. With LRP, relevance is traced to input pixels and the penalty is
    tight; with Grad-CAM (7x7 at the last convolution of cnn3) a deep unit over the digit
    can still encode the background's color through its receptive field, so we expect
    Grad-CAM guidance to cure less. Uses the digit's foreground mask of every training
    image (optionally eroded, as in ``rrr``: the stroke's rim shows the color).
    """

    name = "saliency-guide"
    uses = ("masks",)
    hparam_space: ClassVar[dict[str, HParam]] = {
        **optimizer_hparams(),
        "penalty": HParam(1.0, "weight of the outside-the-digit attribution share",
                          0.1, 100.0, log=True),
        "attribution": HParam("lrp", "lrp | gradcam", choices=("lrp", "gradcam")),
        "epsilon": HParam(0.05, "LRP epsilon", 0.01, 0.1, log=True),
        "erode": HParam(0, "shrink the digit mask by this many pixels first", choices=(0, 1)),
    }

    @classmethod
    def check_model(cls, model: nn.Module, hparams: dict[str, Any], example: Tensor) -> None:
        if hparams.get("attribution", "lrp") == "lrp":
            from shortcutlab.explain import check_model

            check_model(model, example)

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        if self.hparams["attribution"] == "gradcam":
            heatmap, logits = trainable_grad_cam(self.model, batch.images, batch.labels)
        else:
            from shortcutlab.explain import lrp

            logits = self.model(batch.images)
            heatmap = lrp(self.model, batch.images, batch.labels, rule="epsilon",
                          epsilon=float(self.hparams["epsilon"]), create_graph=True)
        ce = F.cross_entropy(logits, batch.labels)
        masks = erode(batch.masks, int(self.hparams["erode"]))
        share = outside_share(heatmap, masks).mean()
        loss = ce + self.hparams["penalty"] * share
        self.step_optimizer(loss)
        positive = heatmap.detach()
        positive = (positive.sum(1) if positive.dim() == 4 else positive).clamp_min(0)
        shares = {}
        if positive.shape[-2:] == batch.masks.shape[-2:]:
            shares = region_shares(positive, batch.masks, "relevance")
        return {"loss": float(loss.detach()), "ce": float(ce.detach()),
                "outside_share": float(share.detach()), **shares}
