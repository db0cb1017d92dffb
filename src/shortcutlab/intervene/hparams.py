"""Every intervention's hyperparameters, in one registry of defaults and ranges.

In the spirit of DomainBed's ``hparams_registry``: each method declares its
hyperparameters here (not in its class), each with a default, the range a random search
draws from, and one line of help. ``default_hparams(method)`` is what a run uses unless
``--set key=value`` overrides it; ``random_hparams(method, seed)`` draws a point of the
search space, for tuning on easy validation data (never on the hard or unbiased splits).

Every method shares the optimizer keys (``OPTIMIZER_KEYS``): they are exactly what its
``erm-control`` copies, so a method and its control differ only in the loss.

The epoch budget is ONE fixed number for every method and every control
(:data:`EPOCHS`): a method that reaches a better hard-set accuracy because it trained
longer would prove nothing. See ``docs/results.md`` (``## intervene``) for why this
number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shortcutlab.errors import ShortcutlabError

EPOCHS = 2
"""The one epoch budget of every method and control (passes over the 50k training images)."""

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


def _optimizer(optimizer: str = "adam", lr: float = 1e-3, momentum: float = 0.9,
               weight_decay: float = 0.0, batch_size: int = 128, grad_clip: float = 0.0,
               schedule: str = "cosine") -> dict[str, HParam]:
    return {
        "optimizer": HParam(optimizer, "sgd | adam | adamw", choices=("sgd", "adam", "adamw")),
        "lr": HParam(lr, "learning rate", 1e-4, 3e-2, log=True),
        "momentum": HParam(momentum, "SGD momentum (ignored by adam)", 0.0, 0.99),
        "weight_decay": HParam(weight_decay, "L2 penalty", choices=(0.0, 1e-4, 1e-3)),
        "batch_size": HParam(batch_size, "images per step", choices=(64, 128, 256)),
        "grad_clip": HParam(grad_clip, "clip the gradient norm to this (0: no clipping)"),
        "schedule": HParam(schedule, "learning-rate schedule over the budget",
                           choices=("cosine", "constant", "linear")),
        "epochs": HParam(EPOCHS, "passes over the training set (the fixed budget)"),
    }


def _define(method: str) -> dict[str, HParam]:
    """The hyperparameters of ``method``: the optimizer keys, then the method's own."""
    if method == "erm-control":
        return _optimizer()
    if method == "teacher":
        return _optimizer()
    if method == "tea":
        # Bassi et al., appendix F.3: SGD, lr 0.01, momentum 0.99, batch 128, clip 1.0.
        return {
            **_optimizer("sgd", lr=0.01, momentum=0.99, grad_clip=1.0),
            "teacher": HParam("", "run directory of the shape teacher (--teacher)"),
            "explain_prediction": HParam(0.5, "probability of explaining the teacher's "
                                              "predicted class (else a random other class)",
                                         0.0, 1.0),
            "epsilon_low": HParam(0.01, "LRP epsilon, lower end of the log-uniform draw"),
            "epsilon_high": HParam(0.1, "LRP epsilon, upper end of the log-uniform draw"),
            "min_size": HParam(8, "coarsest pyramid level, in pixels"),
            # Tuned on easy-val (seed 0, 1 epoch): keep 0.23, sum 0.55.
            "channels": HParam("sum", "keep: match relevance per color channel | sum: match "
                                       "the usual per-pixel heatmap (channels summed)",
                               choices=("keep", "sum")),
            "freeze_last": HParam(1, "copy the teacher's last layer and freeze it (1) or not (0)",
                                  choices=(0, 1)),
        }
    if method == "rrr":
        return {
            **_optimizer(),
            "penalty": HParam(10.0, "weight of the background input-gradient penalty",
                              0.1, 1000.0, log=True),
            "erode": HParam(0, "shrink the digit mask by this many pixels first", choices=(0, 1)),
            "norm": HParam("l2", "l2 (squared gradients, as Ross et al.) | l1 (absolute)",
                           choices=("l2", "l1")),
        }
    if method == "saliency-guide":
        return {
            **_optimizer(),
            "penalty": HParam(1.0, "weight of the outside-the-digit attribution share",
                              0.1, 100.0, log=True),
            "attribution": HParam("lrp", "lrp | gradcam", choices=("lrp", "gradcam")),
            "epsilon": HParam(0.05, "LRP epsilon", 0.01, 0.1, log=True),
            "erode": HParam(0, "shrink the digit mask by this many pixels first", choices=(0, 1)),
        }
    if method == "color-consistency":
        return {
            **_optimizer(),
            # Tuned on easy-val's conflicting images (seed 0, 1 epoch): hue alone 0.89,
            # penalty 10 0.90, penalty 10 with jitter 0.97.
            "penalty": HParam(10.0, "weight of the consistency loss", 0.1, 100.0, log=True),
            "transform": HParam("jitter", "hue (rotate every hue by one random angle) | "
                                       "permute (swap the RGB channels) | jitter (hue, "
                                       "saturation and brightness)",
                                choices=("hue", "permute", "jitter")),
        }
    if method == "groupdro":
        return {
            **_optimizer(),
            "eta": HParam(0.01, "step size of the group weights", 1e-3, 1.0, log=True),
        }
    if method == "reweight":
        return {
            **_optimizer(),
            "power": HParam(1.0, "weight = count(label, color)^-power (1: groups balanced)",
                            0.25, 1.0),
        }
    if method == "lff":
        return {
            **_optimizer(),
            "q": HParam(0.7, "generalized cross-entropy exponent of the biased model", 0.3, 0.9),
            "ema": HParam(0.7, "per-sample loss moving-average decay", 0.5, 0.99),
        }
    if method == "jtt":
        return {
            **_optimizer(),
            "identify_fraction": HParam(0.2, "share of the step budget spent on the "
                                             "identification model", 0.05, 0.5),
            "upweight": HParam(20, "how many times more often errors are drawn", 5, 100,
                               log=True),
        }
    raise ShortcutlabError(f"no hyperparameters are registered for method {method!r}")


def hparam_space(method: str) -> dict[str, HParam]:
    """The registered hyperparameters of ``method`` (name -> :class:`HParam`)."""
    return _define(method)


def default_hparams(method: str) -> dict[str, Any]:
    return {name: spec.default for name, spec in _define(method).items()}


def random_hparams(method: str, seed: int) -> dict[str, Any]:
    """A random point of the search space (fixed keys keep their default)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return {name: spec.sample(rng) for name, spec in _define(method).items()}


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["lr=0.1", "penalty=3"]`` -> ``{"lr": "0.1", "penalty": "3"}`` (typed later)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ShortcutlabError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def resolve_hparams(method: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of ``method`` updated by ``overrides``, each converted to its default's type.

    Unknown keys are errors that list the known ones, so a typo never silently trains
    with the default.
    """
    space = _define(method)
    hparams = {name: spec.default for name, spec in space.items()}
    for key, raw in (overrides or {}).items():
        if key not in space:
            raise ShortcutlabError(
                f"method {method!r} has no hyperparameter {key!r}; it has: {', '.join(space)}"
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
