"""The color-only attack: one RGB shift per image, no pixel pattern.

Where PGD may move every pixel on its own, this attack moves all the pixels it may touch
(the background, with a background mask) by the same three numbers, one per color
channel, clipped to the valid pixel range: it recolors the background and nothing else.
Its minimal epsilon (the largest channel shift needed to make the model say the target,
:func:`~shortcutlab.attack.minimal_epsilon` with ``attack="color-shift"``) says in one
number how cheap the color shortcut is: a model that reads the digit ignores it, a
color reader follows it.

Each step descends the loss's gradient with respect to the three shifts (the sum of the
pixel gradients over the pixels it moves) by signed steps, and keeps each shift within
epsilon.
"""

from __future__ import annotations

from torch import Tensor

from shortcutlab.attack.attacks import register_attack
from shortcutlab.attack.base import Attack, StepContext


@register_attack("color-shift")
class ColorShift(Attack):
    """A uniform RGB shift of the pixels the mask allows (all of them without a mask)."""

    norm = "linf"

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("random_start", False)  # a random start would be a pixel pattern
        super().__init__(*args, **kwargs)

    def init_state(self, delta: Tensor, eps: Tensor) -> dict[str, Tensor]:
        return {"shift": delta.mean(dim=(2, 3), keepdim=True)}

    def update(self, delta: Tensor, grad: Tensor, step_size: Tensor, context: StepContext
               ) -> Tensor:
        shift = context.state["shift"]
        shift = shift - step_size * grad.sum(dim=(2, 3), keepdim=True).sign()
        shift = shift.clamp(min=-context.eps, max=context.eps)
        context.state["shift"] = shift
        return shift.expand_as(delta).clone()
