"""ReBias (Bahng et al. 2020): the model's features made independent of a color-only network's.

The bias-only network is the one of ReBias' Biased-MNIST experiments, a network whose
receptive field is one pixel (their SimpleConvNet with kernel size 1): here RUBi's
:class:`~shortcutlab.intervene.methods.rubi.ColorOnlyNet`, whose features are the image
mean of per-pixel 1x1 convolutions. The dependence measure is the unbiased HSIC
estimator (Song et al. 2012) with RBF kernels, as in the official code, on the features
that feed each network's last Linear layer (the official ``feature_pos='post'``); the
kernel radius is the batch's median distance by default (the official default, 1, is
``kernel_radius=1``, which the ``rebias-biased-mnist`` protocol sets).

Written here rather than taken from the official code: that code is a training script
(its own trainer, loaders and DataParallel wrappers), not a library.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from shortcutlab.errors import ShortcutlabError
from shortcutlab.intervene.hparams import HParam, optimizer_hparams
from shortcutlab.intervene.methods.rubi import ColorBranchIntervention
from shortcutlab.intervene.registry import register_method
from shortcutlab.train.algorithm import Batch


def rbf_kernel(features: Tensor, radius: float) -> Tensor:
    """The (N, N) Gaussian kernel matrix exp(-||x_i - x_j||^2 / (2 radius^2)) of (N, ...)
    features; ``radius <= 0`` takes the median pairwise distance of the batch (detached)."""
    flat = features.flatten(1)
    squared = torch.cdist(flat, flat).pow(2)
    if radius <= 0:
        off_diagonal = squared.detach()[~torch.eye(len(flat), dtype=torch.bool,
                                                   device=flat.device)]
        radius_squared = off_diagonal.median().clamp_min(1e-12)
    else:
        radius_squared = torch.tensor(radius * radius, device=flat.device)
    return torch.exp(-squared / (2 * radius_squared))


def unbiased_hsic(kernel_x: Tensor, kernel_y: Tensor) -> Tensor:
    """Song et al.'s unbiased estimator of HSIC from two (N, N) kernel matrices, N >= 4:
    [tr(K~ L~) + 1'K~1 1'L~1 / ((N-1)(N-2)) - 2/(N-2) 1'K~L~1] / (N (N-3)), where K~ and
    L~ are K and L with their diagonals set to zero."""
    n = kernel_x.shape[0]
    if n < 4:
        raise ShortcutlabError(f"the unbiased HSIC needs at least 4 images per batch, got {n}")
    k = kernel_x - torch.diag_embed(torch.diagonal(kernel_x))
    l_ = kernel_y - torch.diag_embed(torch.diagonal(kernel_y))
    trace = (k * l_).sum()  # tr(K L) for symmetric matrices
    totals = k.sum() * l_.sum() / ((n - 1) * (n - 2))
    cross = 2.0 * (k.sum(0) @ l_.sum(0)) / (n - 2)
    return (trace + totals - cross) / (n * (n - 3))


@contextmanager
def last_linear_input(model: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Within the block, ``store["features"]`` holds what the model's last Linear layer
    received on the latest forward pass; the hook is removed on exit, even after an error."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ShortcutlabError(f"rebias needs a model ending in a Linear layer; "
                               f"{type(model).__name__} has none")
    store: dict[str, Tensor] = {}

    def hook(module: nn.Module, inputs: tuple) -> None:
        store["features"] = inputs[0]

    handle = linears[-1].register_forward_pre_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@register_method
class ReBias(ColorBranchIntervention):
    """ReBias: the model learns features that a color-only network cannot predict.

    Hypothesis: a network that sees one pixel at a time learns the color shortcut and
    nothing else. If the model's features are pushed to be statistically independent of
    that network's features (HSIC near zero), while the color-only network is pushed to
    stay as dependent on them as it can (the min-max of ReBias), the model cannot encode
    color as what decides its class and has to use the digit's shape. Uses the knowledge
    that color is the bias (built into the color-only network), no per-image labels.

    Both networks step on every batch, from one Adam optimizer over both parameter sets
    (equal to two with the same settings, as the official code has): the model's loss is
    its cross-entropy + ``independence_weight`` * HSIC(model features, color features);
    the color-only network's is its cross-entropy - ``dependence_weight`` * HSIC. Each
    sees the other's features as constants. Deviation: the official code steps the
    color-only network first and then the model with the updated network's features (one
    more forward pass of each); here both step from the same forward pass.
    """

    name = "rebias"
    uses = ("bias-knowledge",)
    hparam_space: ClassVar[dict[str, HParam]] = {
        **optimizer_hparams(),
        "independence_weight": HParam(1.0, "weight of HSIC(model, color-only features) in "
                                           "the model's loss (lambda_f)", 0.1, 10.0, log=True),
        "dependence_weight": HParam(1.0, "weight of -HSIC in the color-only network's loss "
                                         "(lambda_g)", 0.1, 10.0, log=True),
        # The official code's default radius is 1 (their features are BatchNorm'd); on
        # the study CNN's features the squared distances are in the hundreds, so a radius
        # of 1 leaves every off-diagonal kernel entry near 0 and HSIC near 2e-6: the term
        # does nothing (docs/results.md#intervene). The batch's median distance (the
        # official code's sigma_x_type='median', per batch here) scales with the features.
        "kernel_radius": HParam(0.0, "RBF kernel radius of both features (0: the batch's "
                                     "median distance; the official default is 1)", 0.0, 10.0),
        "bias_width": HParam(32, "channels of the color-only network"),
    }

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        radius = float(self.hparams["kernel_radius"])
        with last_linear_input(self.model) as model_store, \
                last_linear_input(self.bias_branch) as bias_store:
            logits = self.model(batch.images)
            bias_logits = self.bias_branch(batch.images)
        features, bias_features = model_store["features"], bias_store["features"]
        ce = F.cross_entropy(logits, batch.labels)
        bias_ce = F.cross_entropy(bias_logits, batch.labels)
        model_kernel = rbf_kernel(features, radius)
        bias_kernel = rbf_kernel(bias_features, radius)
        independence = unbiased_hsic(model_kernel, bias_kernel.detach())
        dependence = unbiased_hsic(model_kernel.detach(), bias_kernel)
        loss = (ce + float(self.hparams["independence_weight"]) * independence
                + bias_ce - float(self.hparams["dependence_weight"]) * dependence)
        self.step_optimizer(loss)
        return {"loss": float(loss.detach()), "ce": float(ce.detach()),
                "bias_ce": float(bias_ce.detach()), "hsic": float(independence.detach())}
