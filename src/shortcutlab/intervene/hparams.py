"""Every intervention's hyperparameters: their defaults and ranges, and how runs read them.

In the spirit of DomainBed's ``hparams_registry``, each method declares its
hyperparameters, each with a default, the range a random search draws from, and one
line of help; it does so on its own class, next to its code, as the class attribute
``hparam_space`` (name -> :class:`HParam`, starting with :func:`optimizer_hparams`), so
adding a method is one new file under ``shortcutlab.intervene.methods`` and its test.
This module holds what every method shares and reads the registered class's table:
``hparam_space(method)``; ``default_hparams(method)``, what a run uses unless
``--set key=value`` overrides it (``resolve_hparams`` types and checks the overrides);
``random_hparams(method, seed)``, a point of the search space, for tuning on easy
validation data (never on the hard or unbiased splits).

Every method shares the optimizer keys (``OPTIMIZER_KEYS``): they are exactly what its
``erm-control`` copies, so a method and its control differ only in the loss.

The budget is the common :data:`EPOCHS` unless a method needs more steps (TEA learns
from heatmaps alone and declares 4 epochs). The budget is an optimizer key, so the
method's erm-control trains exactly as long: a method that beats its control did not
win by training longer. See ``docs/results.md`` (``## intervene``).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

from shortcutlab.errors import ShortcutlabError

EPOCHS = 2
"""The common budget (passes over the 50k training images) of the methods that declare none."""

OPTIMIZER_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "grad_clip",
                  "schedule", "epochs")
"""The settings a method shares with its erm-control (the control's identity)."""


@dataclass(frozen=True)
class HParam:
    """One hyperparameter: its default, its search range and what it does.

    A numeric range is ``[low, high]``, drawn log-uniformly when ``log``; ``choices``
    lists the values of a categorical one. ``low == high == None`` and no choices means
    the value is fixed (never searched).
    """

    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def sample(self, rng: Any) -> Any:
        """Draw a value with a ``numpy.random.Generator``."""
        if self.choices is not None:
            return self.choices[int(rng.integers(len(self.choices)))]
        if self.low is None or self.high is None:
            return self.default
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return round(value) if isinstance(self.default, int) else float(value)

    def describe(self) -> str:
        if self.choices is not None:
            return "{" + ", ".join(str(c) for c in self.choices) + "}"
        if self.low is None:
            return "fixed"
        return f"[{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


def optimizer_hparams(optimizer: str = "adam", lr: float = 1e-3, momentum: float = 0.9,
                      weight_decay: float = 0.0, batch_size: int = 128, grad_clip: float = 0.0,
                      schedule: str = "cosine", epochs: int = EPOCHS) -> dict[str, HParam]:
    """The optimizer keys (:data:`OPTIMIZER_KEYS`) with a method's defaults; every
    method's ``hparam_space`` starts with them. A method that needs more than the common
    budget (``epochs``) declares it here; its erm-control then trains as long."""
    return {
        "optimizer": HParam(optimizer, "sgd | adam | adamw", choices=("sgd", "adam", "adamw")),
        "lr": HParam(lr, "learning rate", 1e-4, 3e-2, log=True),
        "momentum": HParam(momentum, "SGD momentum (ignored by adam)", 0.0, 0.99),
        "weight_decay": HParam(weight_decay, "L2 penalty", choices=(0.0, 1e-4, 1e-3)),
        "batch_size": HParam(batch_size, "images per step", choices=(64, 128, 256)),
        "grad_clip": HParam(grad_clip, "clip the gradient norm to this (0: no clipping)"),
        "schedule": HParam(schedule, "learning-rate schedule over the budget",
                           choices=("cosine", "constant", "linear")),
        "epochs": HParam(epochs, "passes over the training set (the budget, shared with "
                                 "the erm-control)"),
    }


Method = str | type
"""A registered method's name, or a class with a ``hparam_space`` (registered or not)."""


def _space(method: Method) -> dict[str, HParam]:
    if isinstance(method, str):
        from shortcutlab.intervene.registry import get_method

        return get_method(method).hparam_space
    return method.hparam_space


def _name(method: Method) -> str:
    return method if isinstance(method, str) else getattr(method, "name", method.__name__)


def hparam_space(method: Method) -> dict[str, HParam]:
    """The hyperparameters of ``method`` (name -> :class:`HParam`): the optimizer keys,
    then the method's own, as its class declares them."""
    return dict(_space(method))


def default_hparams(method: Method) -> dict[str, Any]:
    return {name: spec.default for name, spec in _space(method).items()}


def draw_seed(seed: int, name: str) -> list[int]:
    """The seed of hyperparameter ``name``'s own stream in the draw number ``seed``.

    A stable digest of the name (crc32, not Python's salted ``hash``), so a draw does not
    depend on the process, nor on which other keys the space holds or in what order.
    """
    return [int(seed), zlib.crc32(name.encode("utf-8"))]


def random_hparams(method: Method, seed: int) -> dict[str, Any]:
    """A random point of the search space (fixed keys keep their default).

    Every hyperparameter is drawn from its own stream (:func:`draw_seed`): adding,
    removing or reordering keys of a method never changes the draws of the others.
    """
    import numpy as np

    return {name: spec.sample(np.random.default_rng(draw_seed(seed, name)))
            for name, spec in _space(method).items()}


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["lr=0.1", "penalty=3"]`` -> ``{"lr": "0.1", "penalty": "3"}`` (typed later)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ShortcutlabError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def resolve_hparams(method: Method, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of ``method`` updated by ``overrides``, each converted to its default's type.

    Unknown keys are errors that list the known ones, so a typo never silently trains
    with the default.
    """
    space = _space(method)
    hparams = {name: spec.default for name, spec in space.items()}
    for key, raw in (overrides or {}).items():
        if key not in space:
            raise ShortcutlabError(
                f"method {_name(method)!r} has no hyperparameter {key!r}; "
                f"it has: {', '.join(space)}"
            )
        hparams[key] = _convert(key, raw, space[key])
    return hparams


def _convert(key: str, raw: Any, spec: HParam) -> Any:
    kind = type(spec.default)
    try:
        if kind is bool:
            value: Any = raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
        elif kind is int:
            as_float = float(raw)
            if as_float != int(as_float):
                raise ValueError(f"{raw!r} is not an integer")
            value = int(as_float)
        else:
            value = kind(raw)
    except ValueError as exc:
        raise ShortcutlabError(f"--set {key}={raw!r}: expected a {kind.__name__} ({exc})") from exc
    # Numeric choices are only the grid a search draws from; named ones are the only values.
    if isinstance(spec.default, str) and spec.choices is not None and value not in spec.choices:
        raise ShortcutlabError(f"--set {key}={raw!r}: choose one of {list(spec.choices)}")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise ShortcutlabError(f"--set {key}={raw!r}: must not be negative")
    return value


def control_settings(hparams: dict[str, Any]) -> dict[str, Any]:
    """The optimizer settings a method's erm-control copies (its identity)."""
    return {key: hparams[key] for key in OPTIMIZER_KEYS}
