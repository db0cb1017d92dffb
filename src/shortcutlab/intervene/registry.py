"""The registry of interventions: a name -> an :class:`Intervention` subclass.

Every method is a DomainBed-style :class:`~shortcutlab.train.algorithm.Algorithm`: it owns
its model and optimizer and writes one training step (``update``); the trainer does
everything else. On top of that an intervention declares

- ``uses``: the extra information it needs beyond images and labels, from :data:`USES`;
- ``role``: ``method`` (a row of the results table), ``control`` (``erm-control``) or
  ``teacher`` (privileged helpers that other methods read, never a row);
- its hypothesis: the docstring paragraph starting with ``Hypothesis:``, printed by
  ``--list`` under the one-line summary that opens the docstring;
- resources it needs (a teacher, re-rendered images) are built in ``setup(context)``
  from the run's ``data_dir``, ``seed`` and hyperparameters.

Its hyperparameters live in :mod:`shortcutlab.intervene.hparams`, not in the class:
registering copies the method's own keys into ``default_hparams`` (what the trainer
accepts for it), and registers the class with the trainer so ``config.json`` can name it.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
from torch import nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.train.algorithm import Algorithm, TrainContext, register_algorithm

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

# The order of --list and of the results table: by the information a method uses, from
# the most privileged to none; methods registered elsewhere follow in registration order.
ORDER = ("tea", "rrr", "saliency-guide", "color-consistency", "groupdro", "reweight", "lff",
         "jtt", "erm-control", "teacher")

_METHODS: dict[str, type[Intervention]] = {}


class Intervention(Algorithm):
    """An Algorithm with what the intervention framework needs to know about it.

    ``generator`` is the method's random stream (explained classes, batches drawn by the
    method, ...): the trainer's per-run generator, whose state it checkpoints, so a
    resumed run continues the stream exactly.
    """

    role: ClassVar[str] = "method"

    def __init__(self, model: nn.Module, hparams: dict[str, Any]) -> None:
        super().__init__(model, hparams)
        self.generator = torch.Generator().manual_seed(0)

    def setup(self, context: TrainContext) -> None:
        self.generator = context.generator if context.generator is not None else \
            torch.Generator().manual_seed(int(context.seed))

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
    from shortcutlab.intervene.hparams import OPTIMIZER_KEYS, default_hparams

    cls.default_hparams = {key: value for key, value in default_hparams(cls.name).items()
                           if key not in OPTIMIZER_KEYS}
    _METHODS[cls.name] = cls
    return register_algorithm(cls)


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
    """Registered names with one of ``roles``, in :data:`ORDER`."""
    _load_all()
    rank = {name: index for index, name in enumerate(ORDER)}
    names = sorted(_METHODS, key=lambda name: rank.get(name, len(ORDER)))
    return [name for name in names if _METHODS[name].role in roles]


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
