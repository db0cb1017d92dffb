"""The attacks: each one is its step (the base class does the rest) and a registry entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from shortcutlab.attack.base import _TINY, Attack
from shortcutlab.registry import Registry

ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(name: str) -> Callable[[type[Attack]], type[Attack]]:
    """Class decorator: register an attack as ``name`` (which becomes its ``name``)."""
    def decorator(cls: type[Attack]) -> type[Attack]:
        cls.name = name
        return ATTACKS.register(name, cls)
    return decorator


def list_attacks() -> list[str]:
    """The names ``create_attack`` and ``--attack`` accept."""
    return ATTACKS.names()


def attack_class(name: str) -> type[Attack]:
    return ATTACKS.get(name)


def create_attack(name: str, model: nn.Module, **kwargs: Any) -> Attack:
    """Build a registered attack (``fgsm``, ``pgd``, ``pgd-l2``) on ``model``."""
    return attack_class(name)(model, **kwargs)


@register_attack("pgd")
class PGD(Attack):
    """L-infinity projected gradient descent (Madry et al. 2018): signed gradient steps."""

    norm = "linf"

    def step(self, delta: Tensor, grad: Tensor, step_size: Tensor) -> Tensor:
        return delta - step_size * grad.sign()


@register_attack("fgsm")
class FGSM(PGD):
    """Fast gradient sign method (Goodfellow et al. 2015): one signed step of size eps."""

    def __init__(self, model: nn.Module, eps: float = 0.05, **kwargs: Any) -> None:
        kwargs.setdefault("steps", 1)
        kwargs.setdefault("rel_step_size", 1.0)
        kwargs.setdefault("random_start", False)
        super().__init__(model, eps, **kwargs)


@register_attack("pgd-l2")
class PGDL2(Attack):
    """L2 projected gradient descent: steps along the normalized gradient, L2-ball projection."""

    norm = "l2"

    def step(self, delta: Tensor, grad: Tensor, step_size: Tensor) -> Tensor:
        norms = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return delta - step_size * grad / (norms + _TINY)
