"""Gradient attributions: input x gradient and integrated gradients (batched over steps).

Captum's ``InputXGradient`` and ``IntegratedGradients`` are the test oracles.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain._common import Target, check_input, resolve_target, target_score

IG_METHODS = ("riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def _input_gradient(model: nn.Module, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        logits = model(leaf)
        (gradient,) = torch.autograd.grad(target_score(logits, target), leaf)
    return gradient, logits.detach()


def _predict(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x)


def input_x_gradient(model: nn.Module, x: Tensor, target: Target = None) -> Tensor:
    """``x * d(target logit)/dx``, (N, C, H, W); ``target`` None means the predicted class."""
    check_input(x)
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        logits = model(leaf)
        classes = resolve_target(target, logits)
        (gradient,) = torch.autograd.grad(target_score(logits, classes), leaf)
    return x.detach() * gradient


def path_points(steps: int, method: str = "riemann_trapezoid") -> tuple[Tensor, Tensor]:
    """Interpolation coefficients in [0, 1] and their quadrature weights (summing to 1).

    The trapezoid rule on ``linspace(0, 1, steps)`` has spacing ``1 / (steps - 1)`` (Captum
    uses ``1 / steps``, whose weights sum to ``(steps - 1) / steps``).
    """
    if steps < 2:
        raise ShortcutlabError(f"integrated gradients needs at least 2 steps, got {steps}")
    if method == "riemann_trapezoid":
        alphas = torch.linspace(0, 1, steps, dtype=torch.float64)
        weights = torch.full((steps,), 1.0 / (steps - 1), dtype=torch.float64)
        weights[0] = weights[-1] = 0.5 / (steps - 1)
        return alphas, weights
    offsets = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
    if method not in offsets:
        raise ShortcutlabError(f"unknown integration method {method!r}; choose one of {IG_METHODS}")
    alphas = (torch.arange(steps, dtype=torch.float64) + offsets[method]) / steps
    return alphas, torch.full((steps,), 1.0 / steps, dtype=torch.float64)


def integrated_gradients(model: nn.Module, x: Tensor, target: Target = None,
                         baseline: Tensor | float = 0.0, steps: int = 32,
                         method: str = "riemann_trapezoid",
                         batch_size: int = 512) -> Tensor:
    """Integrated gradients (Sundararajan et al., 2017), (N, C, H, W).

    ``(x - baseline) * integral_0^1 d(target logit)/dx (baseline + a (x - baseline)) da``,
    the integral by quadrature over ``steps`` points. Path points of several inputs run as
    one batch of up to ``batch_size`` (steps x inputs are flattened and chunked).
    ``target`` None means the class predicted for ``x``. The attributions sum to about
    ``logit(x) - logit(baseline)`` (completeness).
    """
    check_input(x)
    if batch_size < 1:
        raise ShortcutlabError(f"batch_size must be positive, got {batch_size}")
    x = x.detach()
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    classes = resolve_target(target, _predict(model, x))
    alphas, weights = path_points(steps, method)
    alphas = alphas.to(device=x.device, dtype=x.dtype)
    weights = weights.to(device=x.device, dtype=x.dtype)
    n = x.shape[0]
    total = torch.zeros_like(x)
    delta = x - base
    # flat index over (step, input) pairs, processed in chunks
    for start in range(0, steps * n, batch_size):
        index = torch.arange(start, min(start + batch_size, steps * n), device=x.device)
        step, item = index // n, index % n
        shape = (-1, *([1] * (x.dim() - 1)))
        points = base[item] + alphas[step].reshape(shape) * delta[item]
        gradient, _ = _input_gradient(model, points, classes[item])
        total.index_add_(0, item, gradient * weights[step].reshape(shape))
    return delta * total
