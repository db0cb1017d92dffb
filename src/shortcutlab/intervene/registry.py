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
  from the run's ``data_dir``, ``seed`` and hyperparameters;
- its hyperparameters, on the class next to its code: ``hparam_space``, a table of
  :class:`~shortcutlab.intervene.hparams.HParam` (default, search range, help) that
  starts with the shared optimizer keys (``**optimizer_hparams(...)``) and goes on with
  the method's own; :mod:`shortcutlab.intervene.hparams` reads it.

Registering checks those declarations, copies the method's own keys and defaults into
``default_hparams`` (what the trainer accepts for it), and registers the class with the
trainer too, so ``config.json``, a sweep spec or ``train_run(algorithm=...)`` can name it;
the trainer's registry imports :mod:`shortcutlab.intervene.methods` on its first lookup.
Both registries are :class:`shortcutlab.registry.Registry` objects.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
from torch import nn

from shortcutlab.intervene.hparams import OPTIMIZER_KEYS, HParam, optimizer_hparams
from shortcutlab.registry import Registry
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
ORDER = ("tea", "rrr", "saliency-guide", "color-consistency", "rubi", "rebias", "groupdro",
         "reweight", "lff", "jtt", "erm-control", "teacher")


def _load_all() -> None:
    from shortcutlab.intervene import methods  # noqa: F401  (registration)


METHODS: Registry[type[Intervention]] = Registry(
    "method", loader=_load_all, order=ORDER,
    hint=" (shortcutlab intervene --list describes them)",
)


class Intervention(Algorithm):
    """An Algorithm with what the intervention framework needs to know about it.

    ``generator`` is the method's random stream (explained classes, batches drawn by the
    method, ...): the trainer's per-run generator, whose state it checkpoints, so a
    resumed run continues the stream exactly.
    """

    role: ClassVar[str] = "method"
    hparam_space: ClassVar[dict[str, HParam]] = optimizer_hparams()
    """Its hyperparameters: the optimizer keys, then the method's own (not ``hparams``:
    that is the instance's dict of the values a run uses)."""

    @classmethod
    def resolve_hparams(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        """The method's own hyperparameters from ``overrides``: its defaults, updated by
        the overrides typed and checked against ``hparam_space``."""
        from shortcutlab.intervene.hparams import resolve_hparams

        return {key: value for key, value in resolve_hparams(cls, overrides).items()
                if key not in OPTIMIZER_KEYS}

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
    unknown = [use for use in cls.uses if use not in USES]
    if unknown or not cls.uses:
        raise ValueError(f"method {cls.name!r} declares unknown uses {unknown}; use {list(USES)}")
    if cls.role not in ROLES:
        raise ValueError(f"method {cls.name!r} has role {cls.role!r}; use one of {ROLES}")
    if not hypothesis(cls):
        raise ValueError(f"method {cls.name!r} needs a docstring paragraph 'Hypothesis: ...'")
    missing = [key for key in OPTIMIZER_KEYS if key not in cls.hparam_space]
    if missing:
        raise ValueError(f"method {cls.name!r}: hparam_space lacks the optimizer keys {missing}; "
                         "start it with **optimizer_hparams(...)")
    cls.default_hparams = {key: spec.default for key, spec in cls.hparam_space.items()
                           if key not in OPTIMIZER_KEYS}
    METHODS.register(cls.name, cls)  # ValueError when another class holds the name
    return register_algorithm(cls)


def get_method(name: str) -> type[Intervention]:
    return METHODS.get(name)


def list_methods(roles: tuple[str, ...] = ("method",)) -> list[str]:
    """Registered names with one of ``roles``, in :data:`ORDER`."""
    return [name for name, cls in METHODS.items() if cls.role in roles]


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
