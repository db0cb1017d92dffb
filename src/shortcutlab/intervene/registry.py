"""The registry of interventions: a name -> an :class:`Intervention` subclass.

Every method is a DomainBed-style :class:`~shortcutlab.train.algorithm.Algorithm`: it owns
its model and optimizer and writes one training step (``update``); the trainer does
everything else. On top of that an intervention declares

- ``uses``: the extra information it needs beyond images and labels, from :data:`USES`;
- ``role``: ``method`` (a row of the results table), ``control`` (``erm-control``) or
  ``teacher`` (privileged helpers that other methods read, never a row);
- its hypothesis: the docstring paragraph starting with ``Hypothesis:``, printed by
  ``--list`` under the one-line summary that opens the docstring;
- ``prepare(...)``: resources it needs built before training (a teacher, re-rendered
  images), returned as constructor keywords.

Its hyperparameters live in :mod:`shortcutlab.intervene.hparams`, not in the class.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, ClassVar

import torch
from torch import nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.train.algorithm import Algorithm

USES: dict[str, str] = {
    "none": "nothing beyond images and labels",
    "color-labels": "the color of every training image (the bias attribute)",
    "masks": "the digit's foreground mask of every training image",
    "bias-knowledge": "the knowledge that color is the bias (no per-image labels)",
    "teacher": "a teacher that reads shape (itself trained with privileged information)",
    "recolored-digits": "the training digits re-rendered in random colors (privileged: "
                        "needs the grayscale source and the knowledge that color is the bias)",
}

ROLES = ("method", "control", "teacher")

_METHODS: dict[str, type[Intervention]] = {}


class Intervention(Algorithm):
    """An Algorithm with what the intervention framework needs to know about it.

    ``generator`` is the method's own random stream (explained classes, batches drawn
    by the method, ...), seeded by the run's seed and saved with the training state so
    that a resumed run continues it exactly.
    """

    role: ClassVar[str] = "method"

    def __init__(self, model: nn.Module, hparams: dict[str, Any], *, seed: int = 0) -> None:
        super().__init__(model, hparams)
        self.generator = torch.Generator().manual_seed(int(seed))

    @classmethod
    def prepare(cls, data_dir: str | os.PathLike, hparams: dict[str, Any], *,
                teacher_dir: str | os.PathLike | None = None, seed: int = 0) -> dict[str, Any]:
        """Build what the constructor needs besides model and hparams; default: nothing."""
        return {}

    def training_state(self) -> dict[str, Any]:
        state = super().training_state()
        state["generator"] = self.generator.get_state()
        return state

    def load_training_state(self, state: dict[str, Any]) -> None:
        super().load_training_state(state)
        if "generator" in state:
            self.generator.set_state(state["generator"])

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) numbers from the method's stream, on the model's device."""
        return torch.rand(*shape, generator=self.generator).to(self.device)

    def randint(self, low: int, high: int, *shape: int) -> torch.Tensor:
        return torch.randint(low, high, shape, generator=self.generator).to(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def register_method(cls: type[Intervention]) -> type[Intervention]:
    """Class decorator: add ``cls`` under ``cls.name`` after checking its declarations."""
    if cls.name in _METHODS:
        raise ValueError(f"method {cls.name!r} is registered twice")
    unknown = [use for use in cls.uses if use not in USES]
    if unknown or not cls.uses:
        raise ValueError(f"method {cls.name!r} declares unknown uses {unknown}; use {list(USES)}")
    if cls.role not in ROLES:
        raise ValueError(f"method {cls.name!r} has role {cls.role!r}; use one of {ROLES}")
    if not hypothesis(cls):
        raise ValueError(f"method {cls.name!r} needs a docstring paragraph 'Hypothesis: ...'")
    _METHODS[cls.name] = cls
    return cls


def _load_all() -> None:
    from shortcutlab.intervene import methods  # noqa: F401  (registration)


def get_method(name: str) -> type[Intervention]:
    _load_all()
    if name not in _METHODS:
        raise ShortcutlabError(
            f"unknown method {name!r}; choose one of {', '.join(list_methods(roles=ROLES))} "
            "(shortcutlab intervene --list describes them)"
        )
    return _METHODS[name]


def list_methods(roles: tuple[str, ...] = ("method",)) -> list[str]:
    """Registered names with one of ``roles``, in registration order."""
    _load_all()
    return [name for name, cls in _METHODS.items() if cls.role in roles]


def _paragraphs(cls: type) -> list[str]:
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")  # its own, never inherited
    return [" ".join(part.split()) for part in doc.split("\n\n") if part.strip()]


def summary(cls: type) -> str:
    """The first paragraph of the class's own docstring, on one line."""
    parts = _paragraphs(cls)
    return parts[0] if parts else ""


def hypothesis(cls: type) -> str:
    """The docstring paragraph that starts with ``Hypothesis:``, on one line."""
    for part in _paragraphs(cls):
        if part.startswith("Hypothesis:"):
            return part
    return ""
