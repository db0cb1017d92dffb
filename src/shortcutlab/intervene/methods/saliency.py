"""Saliency guidance: the share of attribution outside the digit is a loss."""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F

from shortcutlab.intervene.registry import Intervention, register_method
from shortcutlab.train.algorithm import Batch


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
    image.
    """

    name = "saliency-guide"
    uses = ("masks",)

    def attribution(self, images: Tensor, labels: Tensor) -> Tensor:
        if self.hparams["attribution"] == "gradcam":
            from shortcutlab.explain import grad_cam

            return grad_cam(self.model, images, labels, create_graph=True)
        from shortcutlab.explain import lrp

        epsilon = float(self.hparams.get("epsilon", 0.05))
        return lrp(self.model, images, labels, rule="epsilon", epsilon=epsilon,
                   create_graph=True)

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        ce = F.cross_entropy(self.model(batch.images), batch.labels)
        share = outside_share(self.attribution(batch.images, batch.labels), batch.masks).mean()
        loss = ce + self.hparams["penalty"] * share
        self.step_optimizer(loss)
        return {"loss": float(loss.detach()), "ce": float(ce.detach()),
                "outside_share": float(share.detach())}
