"""Right for the Right Reasons (Ross et al. 2017): no input gradient on the background."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch.nn import functional as F

from shortcutlab.intervene.hparams import HParam, optimizer_hparams
from shortcutlab.intervene.registry import Intervention, register_method
from shortcutlab.train.algorithm import Batch


def erode(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Shrink boolean masks (N, H, W) by ``pixels`` with a square structuring element."""
    if pixels <= 0:
        return masks.bool()
    outside = (~masks.bool()).float()[:, None]
    grown = F.max_pool2d(outside, 2 * pixels + 1, stride=1, padding=pixels)
    return grown[:, 0] == 0


def region_shares(mass: torch.Tensor, masks: torch.Tensor, prefix: str) -> dict[str, float]:
    """Shares of a non-negative per-pixel ``mass`` (N, H, W) on the background, on the
    digit's rim (the mask's outer pixel, where the stroke blends with the background
    color) and on the stroke's core (the mask eroded by one pixel), pooled over the batch.

    Logged during training, they show where a penalized model moves its evidence: a
    penalty on the background alone leaves the rim, which still shows the color.
    """
    mass = mass.detach()
    digit = masks.bool()
    core = erode(digit, 1)
    total = mass.sum().clamp_min(1e-30)
    return {f"{prefix}_background": float(mass[~digit].sum() / total),
            f"{prefix}_rim": float(mass[digit & ~core].sum() / total),
            f"{prefix}_core": float(mass[core].sum() / total)}


def background_gradient_penalty(model: torch.nn.Module, images: torch.Tensor,
                                labels: torch.Tensor, masks: torch.Tensor, norm: str = "l2"
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy and Ross et al.'s penalty: the input gradient of the summed
    log-probabilities on background pixels, squared (``l2``, theirs) or absolute
    (``l1``), summed over pixels and channels, averaged over images. Built with
    ``create_graph`` so that it trains the parameters. Also returns the input gradient,
    detached, for :func:`region_shares`.

    Why ``l1``: a feature that reads the background's mean color spreads its gradient
    thinly over every background pixel, ``g = G / n`` each, so the squared penalty is
    only ``G^2 / n``; the absolute one is ``|G|`` whatever the spread.
    """
    images = images.detach().requires_grad_(True)
    log_probs = F.log_softmax(model(images), dim=1)
    ce = F.nll_loss(log_probs, labels)
    (gradient,) = torch.autograd.grad(log_probs.sum(), images, create_graph=True)
    background = (~masks.bool()).unsqueeze(1).to(gradient.dtype)
    outside = gradient * background
    per_image = outside.abs() if norm == "l1" else outside.pow(2)
    penalty = per_image.sum(dim=(1, 2, 3)).mean()
    return ce, penalty, gradient.detach()


@register_method
class RightForRightReasons(Intervention):
    """RRR: cross-entropy plus a penalty on input gradients of the log-probabilities
    outside the digit.

    Hypothesis: on this data the color lives in the background texture, away from the
    white digit. If the prediction may not be sensitive to any background pixel (its
    input gradient there is pushed to zero), the background color cannot be read and the
    model must classify from the pixels of the digit, that is from its shape. Uses the
    digit's foreground mask of every training image. The shipped mask (source gray level
    at least 64) includes the anti-aliased rim of each stroke, whose pixels are a blend
    of white and the background color and so still show the color; ``erode`` shrinks
    the mask by that many pixels so that only the white core of the stroke is allowed.
    """

    name = "rrr"
    uses = ("masks",)
    hparam_space: ClassVar[dict[str, HParam]] = {
        **optimizer_hparams(),
        "penalty": HParam(10.0, "weight of the background input-gradient penalty",
                          0.1, 1000.0, log=True),
        "erode": HParam(0, "shrink the digit mask by this many pixels first", choices=(0, 1)),
        "norm": HParam("l2", "l2 (squared gradients, as Ross et al.) | l1 (absolute)",
                       choices=("l2", "l1")),
    }

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        masks = erode(batch.masks, int(self.hparams["erode"]))
        ce, penalty, gradient = background_gradient_penalty(
            self.model, batch.images, batch.labels, masks, self.hparams["norm"])
        loss = ce + self.hparams["penalty"] * penalty
        self.step_optimizer(loss)
        # Where the evidence sits, against the shipped mask whatever ``erode``.
        shares = region_shares(gradient.pow(2).sum(1), batch.masks, "grad")
        return {"loss": float(loss.detach()), "ce": float(ce.detach()),
                "penalty": float(penalty.detach()), **shares}
