"""A registry of attribution methods by name, each giving (N, H, W) maps for metrics and figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain._common import to_map
from shortcutlab.explain.gradcam import grad_cam, grad_cam_pp
from shortcutlab.explain.gradients import input_x_gradient, integrated_gradients
from shortcutlab.explain.occlusion import occlusion
from shortcutlab.explain.relevance import lrp
from shortcutlab.progress import progress
from shortcutlab.registry import Registry


@dataclass(frozen=True)
class Method:
    """``fn(model, x, target, **options)`` -> (N, H, W) or (N, C, H, W) attributions."""

    name: str
    title: str
    fn: Callable[..., Tensor]
    signed: bool  # maps can be negative (evidence against the class)
    options: tuple[str, ...]


def _gradcam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None,
             **_: Any) -> Tensor:
    return grad_cam(model, x, target, layer=layer)


def _gradcampp(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None,
               **_: Any) -> Tensor:
    return grad_cam_pp(model, x, target, layer=layer)


def _lrp(model: nn.Module, x: Tensor, target: Tensor, rule: str = "epsilon",
         epsilon: float = 0.01, **_: Any) -> Tensor:
    return lrp(model, x, target, rule=rule, epsilon=epsilon)


def _ixg(model: nn.Module, x: Tensor, target: Tensor, **_: Any) -> Tensor:
    return input_x_gradient(model, x, target)


def _ig(model: nn.Module, x: Tensor, target: Tensor, steps: int = 32, **_: Any) -> Tensor:
    return integrated_gradients(model, x, target, steps=steps)


def _occlusion(model: nn.Module, x: Tensor, target: Tensor, window: int = 4, stride: int = 2,
               **_: Any) -> Tensor:
    return occlusion(model, x, target, window=window, stride=stride)


def _smoothgrad(model: nn.Module, x: Tensor, target: Tensor, base: str = "ixg",
                samples: int = 16, noise: float = 0.15, **options: Any) -> Tensor:
    from shortcutlab.explain.smoothgrad import smooth_grad

    method = get_method(base)
    if method.name == "smoothgrad":
        raise ShortcutlabError("SmoothGrad's base must be another method")
    inner = method_options(method, options)
    return smooth_grad(model, x, target, lambda m, images, classes: to_map(
        method.fn(m, images, classes, **inner)), samples=samples, noise=noise)


METHODS: Registry[Method] = Registry("explanation method", order="registered")
for _method in (
    Method("gradcam", "Grad-CAM", _gradcam, False, ("layer",)),
    Method("gradcampp", "Grad-CAM++", _gradcampp, False, ("layer",)),
    Method("lrp", "LRP", _lrp, True, ("rule", "epsilon")),
    Method("ixg", "input x gradient", _ixg, True, ()),
    Method("ig", "integrated gradients", _ig, True, ("steps",)),
    Method("occlusion", "occlusion", _occlusion, True, ("window", "stride")),
    Method("smoothgrad", "SmoothGrad", _smoothgrad, True,
           ("base", "samples", "noise", "layer", "rule", "epsilon", "steps")),
):
    METHODS.register(_method.name, _method)
del _method


def get_method(name: str) -> Method:
    return METHODS.get(name)


def method_options(method: Method, options: dict[str, Any]) -> dict[str, Any]:
    """The options that apply to ``method`` (others are dropped), for records and calls."""
    return {key: value for key, value in options.items()
            if key in method.options and value is not None}


def attribution_maps(model: nn.Module, images: Tensor, targets: Tensor, method: Method,
                     options: dict[str, Any], batch_size: int = 256,
                     desc: str | None = None) -> Tensor:
    """(N, H, W) maps for every image, in batches, on the images' device; float32 on CPU."""
    if batch_size < 1:
        raise ShortcutlabError(f"--batch-size must be positive, got {batch_size}")
    options = method_options(method, options)
    maps = []
    for start in progress(range(0, images.shape[0], batch_size), desc=desc or method.title,
                          unit="batch"):
        stop = start + batch_size
        attribution = method.fn(model, images[start:stop], targets[start:stop], **options)
        maps.append(to_map(attribution).detach().float().cpu())
    if not maps:
        return torch.zeros(0, *images.shape[-2:])
    return torch.cat(maps)
