"""Grad-CAM and Grad-CAM++, written from scratch (the study's rule: no Grad-CAM library).

One forward pass and one backward pass that stops at the explained layer. The forward
pass runs without autograd bookkeeping up to that layer (nothing below it is ever
differentiated), which is where we save time over libraries that record the whole graph.
Captum's ``LayerGradCam`` is our test oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain._common import (
    Layer,
    Target,
    check_input,
    forward_hooks,
    grad_enabled_restored,
    resolve_layer,
    resolve_target,
    target_score,
)

# Grad-CAM++'s stabilizer, as in the reference implementation (pytorch-grad-cam).
GRAD_CAM_PP_EPS = 1e-6


def layer_activation_and_gradient(model: nn.Module, x: Tensor, target: Target,
                                  layer: Layer) -> tuple[Tensor, Tensor, Tensor]:
    """The explained layer's output ``A`` (N, K, h, w), d(target logit)/dA, and the logits.

    Autograd is off from the input to the layer and on after it; the caller's grad mode is
    restored whatever happens.
    """
    check_input(x)
    name, module = resolve_layer(model, layer)
    captured: list[Tensor] = []

    def start_recording(module: nn.Module, args: Any) -> None:
        torch.set_grad_enabled(False)

    def capture(module: nn.Module, args: Any, output: Any) -> Tensor:
        if not isinstance(output, Tensor):
            raise ShortcutlabError(f"layer {name!r} returns {type(output).__name__}, not a tensor")
        if captured:
            raise ShortcutlabError(f"layer {name!r} is called more than once in a forward pass; "
                                   "explain a layer that is used once")
        torch.set_grad_enabled(True)
        activation = output.detach().requires_grad_(True)
        captured.append(activation)
        return activation.clone()  # the model may change its copy in place (ReLU(inplace))

    with grad_enabled_restored(), forward_hooks([(module, capture)], [(model, start_recording)]):
        logits = model(x)
    if not captured:
        raise ShortcutlabError(f"layer {name!r} is not used in the model's forward pass")
    activation = captured[0]
    if activation.dim() != 4:
        raise ShortcutlabError(
            f"Grad-CAM needs a convolutional layer with (N, K, h, w) outputs; {name!r} gives "
            f"{tuple(activation.shape)}"
        )
    classes = resolve_target(target, logits)
    with torch.enable_grad():
        (gradient,) = torch.autograd.grad(target_score(logits, classes), activation)
    return activation.detach(), gradient, logits.detach()


def _upsample(cam: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(cam.shape[-2:]) == tuple(size):
        return cam
    return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _cam(weights_fn: Callable[[Tensor, Tensor], Tensor], model: nn.Module, x: Tensor,
         target: Target, layer: Layer, upsample: bool) -> Tensor:
    activation, gradient, _ = layer_activation_and_gradient(model, x, target, layer)
    weights = weights_fn(activation, gradient)
    cam = torch.relu((weights[:, :, None, None] * activation).sum(dim=1))
    return _upsample(cam, tuple(x.shape[-2:])) if upsample else cam


def _grad_cam_weights(activation: Tensor, gradient: Tensor) -> Tensor:
    return gradient.mean(dim=(2, 3))


def _grad_cam_pp_weights(activation: Tensor, gradient: Tensor) -> Tensor:
    # Chattopadhyay et al. (2018), eq. 19, with the exponential-score closed form.
    g2 = gradient.pow(2)
    g3 = g2 * gradient
    total = activation.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + total * g3 + GRAD_CAM_PP_EPS)
    alpha = torch.where(gradient != 0, alpha, torch.zeros_like(alpha))
    return (alpha * gradient.clamp(min=0)).sum(dim=(2, 3))


def grad_cam(model: nn.Module, x: Tensor, target: Target = None, layer: Layer = None,
             upsample: bool = True) -> Tensor:
    """Grad-CAM heatmaps (Selvaraju et al., 2017) for a batch.

    ``ReLU(sum_k w_k A_k)`` with ``w_k`` the spatial mean of d(target logit)/dA_k, where
    ``A`` is the output of ``layer`` (a module or its name; default the last Conv2d).
    ``target`` is an int, a tensor of class indices (N,), or None for the predicted class.
    Returns (N, H, W) at the input's resolution (bilinear upsampling), non-negative and
    unnormalized; with ``upsample=False``, (N, h, w) at the layer's resolution.
    """
    return _cam(_grad_cam_weights, model, x, target, layer, upsample)


def grad_cam_pp(model: nn.Module, x: Tensor, target: Target = None, layer: Layer = None,
                upsample: bool = True) -> Tensor:
    """Grad-CAM++ heatmaps (Chattopadhyay et al., 2018); same interface as :func:`grad_cam`.

    Channel weights ``sum_ij alpha_ij relu(dY/dA_ij)`` with the closed-form ``alpha``
    (eq. 19), which gives small parts of the evidence their own weight.
    """
    return _cam(_grad_cam_pp_weights, model, x, target, layer, upsample)
