"""Auto-PGD (Croce & Hein 2020): PGD with momentum and a step size that adapts per image.

APGD starts with a step of twice the radius and halves an image's step at checkpoints
(after 22% of the steps, then at shrinking intervals) when its loss improved in fewer
than ``rho`` of the steps since the last checkpoint, or when neither its step nor its
best loss changed at the last one; after a halving the image restarts from its best
point. The update mixes the projected signed-gradient step with the previous move
(momentum 0.75). AutoAttack pairs it with two losses, both here:

* ``apgd-ce``: cross-entropy, as PGD;
* ``apgd-dlr``: the difference-of-logits ratio, which is invariant to shifting and
  rescaling the logits, so a saturated softmax (a confident model's flat cross-entropy)
  does not hide the way to the target.

Why we write it instead of calling torchattacks' ``APGDT``: the study's attacks need what
:class:`~shortcutlab.attack.base.Attack` gives every attack (one radius per image for the
bisection, per-image early stopping at a confidence, masks, restarts that keep the best
result, image-determined random starts), and torchattacks picks its own target classes
(the model's runners-up) where Task 5 names one. torchattacks stays the reference:
``tests/test_attack_apgd.py`` compares success rates on the same images and target.

Targeted DLR: AutoAttack's ``-(z_y - z_t) / (z_1 - (z_3 + z_4) / 2)`` reads the true class
``y``, which a targeted call does not receive; here ``z_y`` is the strongest class other
than the target (the one the target has to overtake), which is ``z_y`` itself as long as
the image is still classified correctly.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from shortcutlab.attack.attacks import register_attack
from shortcutlab.attack.base import Attack, StepContext, strongest_other
from shortcutlab.errors import ShortcutlabError

_TINY = 1e-12
MOMENTUM = 0.75  # weight of the new step against the previous move (Croce & Hein, alpha)


def checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD checks each image's progress: after 22% of the
    steps, then at intervals shrinking by 3% of the steps down to 6% (as the reference
    implementations round them)."""
    first = max(int(0.22 * steps), 1)
    decrease, shortest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    points, at, interval = [], first, first
    while at < steps:
        points.append(at)
        interval = max(interval - decrease, shortest)
        at += interval
    return points


def dlr_loss(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """The difference-of-logits ratio to descend, per image (see the module docstring).

    Targeted: ``(max_{j != t} z_j - z_t) / (z_1 - (z_3 + z_4) / 2)``; untargeted:
    ``(z_y - max_{j != y} z_j) / (z_1 - z_3)``, with ``z_1 >= z_2 >= ...`` the sorted
    logits. Needs at least four classes.
    """
    if logits.shape[1] < 4:
        raise ShortcutlabError(f"the DLR loss needs at least 4 classes, got {logits.shape[1]}")
    ordered = logits.sort(dim=1, descending=True).values
    own = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = strongest_other(logits, labels)
    if targeted:
        scale = ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + _TINY
        return (others - own) / scale
    return (own - others) / (ordered[:, 0] - ordered[:, 2] + _TINY)


class APGD(Attack):
    """L-infinity Auto-PGD; ``loss_name`` (``ce`` or ``dlr``) is set by the registered
    subclasses. ``rho`` is the share of improving steps below which the step is halved.
    ``step_size`` and ``rel_step_size`` do not apply: the step starts at twice each
    image's radius and adapts."""

    norm = "linf"
    loss_name: ClassVar[str] = "ce"

    def __init__(self, model: nn.Module, eps: float = 0.05, *, steps: int = 100,
                 rho: float = 0.75, **kwargs: Any) -> None:
        if not 0.0 < rho < 1.0:
            raise ShortcutlabError(f"rho must be in (0, 1), got {rho}")
        super().__init__(model, eps, steps=steps, **kwargs)
        self.rho = rho
        self._checkpoints = set(checkpoints(steps))

    def settings(self) -> dict:
        return {**super().settings(), "loss": self.loss_name, "rho": self.rho,
                "step_size": "2 eps, adaptive", "rel_step_size": None}

    def per_image_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        if self.loss_name == "dlr":
            return dlr_loss(logits, labels, self.targeted)
        return super().per_image_loss(logits, labels)

    def init_state(self, delta: Tensor, eps: Tensor) -> dict[str, Tensor]:
        n = delta.shape[0]
        inf = torch.full((n,), math.inf, dtype=delta.dtype, device=delta.device)
        return {
            "eta": 2.0 * eps.expand(n, 1, 1, 1).clone(),
            "previous": delta.clone(),
            "best_delta": delta.clone(),
            "best_grad": torch.zeros_like(delta),
            "best_loss": inf.clone(),
            "last_loss": inf.clone(),
            "improved": torch.zeros(n, dtype=torch.long, device=delta.device),
            "since_check": torch.zeros(n, dtype=torch.long, device=delta.device),
            "best_at_check": inf.clone(),
            "reduced_at_check": torch.ones(n, dtype=torch.bool, device=delta.device),
        }

    def update(self, delta: Tensor, grad: Tensor, step_size: Tensor, context: StepContext
               ) -> Tensor:
        state, losses = context.state, context.losses
        if context.iteration > 0:
            state["improved"] += (losses < state["last_loss"]).long()
            state["since_check"] += 1
        state["last_loss"] = losses.clone()
        better = losses < state["best_loss"]
        state["best_loss"] = torch.where(better, losses, state["best_loss"])
        state["best_delta"][better] = delta[better]
        state["best_grad"][better] = grad[better]
        momentum = MOMENTUM if context.iteration > 0 else 1.0
        if context.iteration in self._checkpoints:
            delta, grad, momentum = self._check(delta, grad, state, momentum)
        previous, state["previous"] = state["previous"], delta.clone()
        stepped = context.constrain(delta - state["eta"] * grad.sign())
        return context.constrain(delta + momentum * (stepped - delta)
                                 + (1.0 - momentum) * (delta - previous))

    def _check(self, delta: Tensor, grad: Tensor, state: dict[str, Tensor], momentum: float
               ) -> tuple[Tensor, Tensor, float]:
        """Halve the step of the images that stalled; they restart from their best point
        (without momentum through the jump)."""
        stalled = state["improved"] <= self.rho * state["since_check"]
        stalled |= ~state["reduced_at_check"] & (state["best_at_check"] <= state["best_loss"])
        state["reduced_at_check"] = stalled
        state["best_at_check"] = state["best_loss"].clone()
        state["improved"].zero_()
        state["since_check"].zero_()
        if bool(stalled.any()):
            state["eta"][stalled] /= 2.0
            delta, grad = delta.clone(), grad.clone()
            delta[stalled] = state["best_delta"][stalled]
            grad[stalled] = state["best_grad"][stalled]
            state["previous"][stalled] = delta[stalled]
        return delta, grad, momentum

    def finish(self, delta: Tensor, context: StepContext) -> Tensor:
        """The best point the restart evaluated (APGD's answer), not its last step."""
        return context.state["best_delta"]


@register_attack("apgd-ce")
class APGDCE(APGD):
    """Auto-PGD with cross-entropy (Croce & Hein 2020)."""

    loss_name = "ce"


@register_attack("apgd-dlr")
class APGDDLR(APGD):
    """Auto-PGD with the difference-of-logits ratio (Croce & Hein 2020), targeted as in
    AutoAttack's APGD-T."""

    loss_name = "dlr"
