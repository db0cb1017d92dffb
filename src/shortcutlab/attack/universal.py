"""Attacks on the shortcut itself: one perturbation for all images, and a black-box check.

* :func:`universal_perturbation`: a single perturbation, confined to each image's
  background, that makes as many images as possible say the target at a given epsilon.
  It is fitted on one part of the images and measured on the rest, so the rate is not a
  property of the images it was fitted on. A color reader has one: shift the background
  toward the target's color.
* :func:`square_attack`: Square (Andriushchenko et al. 2020), a score-based random
  search that needs no gradient. Where it fools an image that the gradient attacks do not
  at the same epsilon, the gradients were misleading (gradient masking, as AutoAttack
  flags it).

Why we write Square instead of calling torchattacks' ``Square``: it would need the true
class and picks its own goal (untargeted), where Task 5 asks for a target at a
confidence; the search itself is small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from shortcutlab.attack.base import _fast_layout, eval_mode
from shortcutlab.attack.fmn import margin
from shortcutlab.errors import ShortcutlabError


@dataclass
class UniversalPerturbation:
    """One perturbation (C, H, W) and how often it fools the fitted and the held-out images."""

    delta: Tensor
    eps: float
    fit_rate: float
    heldout_rate: float
    n_fit: int
    n_heldout: int

    def to_dict(self) -> dict:
        return {"eps": self.eps, "fit_rate": self.fit_rate, "heldout_rate": self.heldout_rate,
                "n_fit": self.n_fit, "n_heldout": self.n_heldout,
                "delta_linf": float(self.delta.abs().max())}


def _goal(model: nn.Module, images: Tensor, target: Tensor, confidence: float | None) -> Tensor:
    with torch.no_grad():
        return margin(model(_fast_layout(images)), target, confidence) >= 0


def universal_perturbation(model: nn.Module, x: Tensor, masks: Tensor | None, target: int,
                           eps: float, *, confidence: float | None = 0.9, steps: int = 100,
                           heldout: float = 0.5, batch_size: int = 256
                           ) -> UniversalPerturbation:
    """Fit one L-inf perturbation of radius ``eps`` on the first ``1 - heldout`` of the
    images (each image gets it where its ``masks`` is False: its background; everywhere
    with ``masks=None``), by signed gradient steps on the summed cross-entropy to
    ``target``; measure it on the rest."""
    if not 0.0 < heldout < 1.0:
        raise ShortcutlabError(f"heldout must be in (0, 1), got {heldout}")
    if eps <= 0 or steps < 1:
        raise ShortcutlabError("eps must be positive and steps at least 1")
    n = x.shape[0]
    n_fit = max(1, min(n - 1, round(n * (1.0 - heldout))))
    if n < 2:
        raise ShortcutlabError("a universal perturbation needs at least 2 images (fit and "
                               "held out)")
    allowed = (torch.ones_like(x[:, :1]) if masks is None
               else (~masks.bool()).unsqueeze(1).to(x.dtype))
    target_t = torch.full((n,), int(target), dtype=torch.long, device=x.device)
    delta = torch.zeros_like(x[:1])
    step_size = 2.5 * eps / steps
    with eval_mode(model), torch.enable_grad():
        for _ in range(steps):
            grad = torch.zeros_like(delta)
            for start in range(0, n_fit, batch_size):
                part = slice(start, min(start + batch_size, n_fit))
                shared = delta.clone().requires_grad_(True)
                images = (x[part] + allowed[part] * shared).clamp(0.0, 1.0)
                loss = nn.functional.cross_entropy(model(_fast_layout(images)),
                                                   target_t[part], reduction="sum")
                grad += torch.autograd.grad(loss, shared)[0]
            delta = (delta - step_size * grad.sign()).clamp(-eps, eps)
        perturbed = (x + allowed * delta).clamp(0.0, 1.0)
        reached = _goal(model, perturbed, target_t, confidence)
    return UniversalPerturbation(delta[0].detach(), eps, float(reached[:n_fit].float().mean()),
                                 float(reached[n_fit:].float().mean()), n_fit, n - n_fit)


def _square_fraction(query: int, queries: int, start: float = 0.8) -> float:
    """Square's schedule of the updated share of pixels (halved at fixed fractions of the
    budget, rescaled from the paper's 10 000 queries)."""
    progress = query / queries * 10_000
    for limit, factor in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32),
                          (4000, 64), (6000, 128), (8000, 256)):
        if progress <= limit:
            return start / factor
    return start / 512


def square_attack(model: nn.Module, x: Tensor, target: Tensor | int, eps: float, *,
                  confidence: float | None = 0.9, queries: int = 1000,
                  mask: Tensor | None = None, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Square's targeted L-inf random search; returns which images reached the goal, and
    the images it ended with.

    Starts from vertical stripes of +-eps, then repeatedly sets a random square (of a
    shrinking size) of each image to +-eps per channel and keeps the change where the
    margin to the goal grows. Only the model's outputs are used.
    """
    if eps <= 0 or queries < 1:
        raise ShortcutlabError("eps must be positive and queries at least 1")
    x = x.detach()
    n, channels, height, width = x.shape
    target_t = torch.as_tensor(target, dtype=torch.long, device=x.device).expand(n).contiguous()
    allowed = None if mask is None else mask.to(x.device).bool().unsqueeze(1).to(x.dtype)
    generator = torch.Generator(device="cpu").manual_seed(seed)

    def signs(*shape: int) -> Tensor:
        return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(x.device, x.dtype)

    def apply(delta: Tensor) -> Tensor:
        return (x + (delta if allowed is None else delta * allowed)).clamp(0.0, 1.0)

    with eval_mode(model), torch.no_grad():
        delta = eps * signs(n, channels, 1, width).expand(n, channels, height, width).clone()
        best = margin(model(_fast_layout(apply(delta))), target_t, confidence)
        for query in range(1, queries):
            if bool((best >= 0).all()):
                break
            side = max(1, min(height - 1, round(math.sqrt(
                _square_fraction(query, queries) * height * width))))
            top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - side + 1, (1,), generator=generator))
            candidate = delta.clone()
            candidate[:, :, top:top + side, left:left + side] = eps * signs(n, channels, 1, 1)
            score = margin(model(_fast_layout(apply(candidate))), target_t, confidence)
            better = (score > best) & (best < 0)
            delta[better] = candidate[better]
            best = torch.where(better, score, best)
        adversarial = apply(delta)
        reached = margin(model(_fast_layout(adversarial)), target_t, confidence) >= 0
    return reached, adversarial
