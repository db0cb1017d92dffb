"""The trainer's settings, each declared once: its types, range or choices and help text.

Only the standard library is imported here: ``shortcutlab train --help`` builds its flags
from these declarations without importing torch. :class:`shortcutlab.train.TrainConfig`
validates against the same table, so a config.json, a study's TOML, a sweep spec and the
command line are refused with the same words for the same value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shortcutlab.errors import ShortcutlabError

SCHEDULES = ("constant", "cosine", "linear", "step")
OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class Setting:
    """One trainer setting, declared once: its types, range or choices and help text.

    :meth:`TrainConfig.validate` checks every setting against its declaration, and the
    ``shortcutlab train`` flags are made from the same declarations (:meth:`parse` is the
    flag's argparse type), so a config.json, a study's TOML, a sweep spec and the command
    line are refused with the same words for the same value.
    """

    kinds: tuple[type, ...]
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    flag: bool = False  # a flag of its own on `shortcutlab train` (the rest: --set KEY=VALUE)

    def describe(self) -> str:
        kinds = [k for k in self.kinds if k is not type(None)]
        if self.choices is not None:
            what = "one of " + ", ".join(self.choices)
        elif kinds == [bool]:
            what = "true or false"
        elif kinds == [str]:
            what = "a string"
        else:
            what = "an integer" if kinds == [int] else "a number"
            if self.low is not None or self.high is not None:
                left = "(" if self.low_open else "["
                right = ")" if self.high_open or self.high is None else "]"
                low = "-inf" if self.low is None else f"{self.low:g}"
                high = "inf" if self.high is None else f"{self.high:g}"
                what += f" in {left}{low}, {high}{right}"
        return what + (" (or none)" if type(None) in self.kinds else "")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is refused, or None when it is fine."""
        if value is None:
            return None if type(None) in self.kinds else self.describe()
        wrong_bool = isinstance(value, bool) and bool not in self.kinds
        if wrong_bool or not isinstance(value, tuple(k for k in self.kinds
                                                       if k is not type(None))):
            return self.describe()
        if self.choices is not None:
            return None if value in self.choices else self.describe()
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        number = float(value)
        if not math.isfinite(number):
            return self.describe()
        if self.low is not None and (number <= self.low if self.low_open else number < self.low):
            return self.describe()
        if self.high is not None and (number >= self.high if self.high_open
                                      else number > self.high):
            return self.describe()
        return None

    def check(self, name: str, value: Any) -> None:
        problem = self.problem(value)
        if problem is not None:
            raise ShortcutlabError(f"{name} must be {problem}, got {value!r}")

    def parse(self, text: str) -> Any:
        """The argparse type of this setting's flag: the text as its kind, checked."""
        import argparse

        kinds = [k for k in self.kinds if k is not type(None)]
        try:
            value: Any = text if str in kinds else (int(text) if kinds == [int]
                                                    else float(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}") from None
        if self.problem(value) is not None:
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}")
        return value


_NUMBER = (int, float)
SETTINGS: dict[str, Setting] = {
    "model": Setting((str,), "architecture: cnn3, cnn2fc3, mlp, resnet18, ... or your own "
                     "as package.module:factory", flag=True),
    "model_kwargs": Setting((dict,), "model constructor arguments"),
    "optimizer": Setting((str,), "optimizer", choices=OPTIMIZERS, flag=True),
    "lr": Setting(_NUMBER, "learning rate", low=0.0, low_open=True, flag=True),
    "momentum": Setting(_NUMBER, "SGD momentum", 0.0, 1.0, high_open=True, flag=True),
    "weight_decay": Setting(_NUMBER, "L2 weight decay", low=0.0, flag=True),
    "grad_clip": Setting((*_NUMBER, type(None)), "clip the gradient norm at this value "
                         "(none: no clipping)", low=0.0, low_open=True),
    "batch_size": Setting((int,), "training batch size", low=1, flag=True),
    "epochs": Setting((*_NUMBER, type(None)), "training length in epochs", low=0.0,
                      low_open=True, flag=True),
    "steps": Setting((int, type(None)), "training length in steps (wins over epochs)",
                     low=1, flag=True),
    "schedule": Setting((str,), "learning-rate schedule",
                        choices=SCHEDULES, flag=True),
    "warmup_steps": Setting((int,), "steps of linear learning-rate warm-up", low=0, flag=True),
    "step_gamma": Setting(_NUMBER, "step schedule: multiply the lr by this", 0.0, 1.0,
                          low_open=True),
    "step_every": Setting((int,), "step schedule: every this many steps (0: at 1/3 and 2/3)",
                          low=0),
    "eval_every": Setting((int,), "evaluate on easy val every K steps", low=1, flag=True),
    "eval_dense_every": Setting((int,), "evaluate this often while a first: rule is near "
                                "firing (0: off)", low=0),
    "eval_dense_margin": Setting(_NUMBER, "near = within this of the first: threshold",
                                 low=0.0),
    "select": Setting((str,), "last | best-val | first:METRIC>=VALUE (see below)", flag=True),
    "early_stop": Setting((bool,), "stop once a first: rule has fired"),
    "channels_last": Setting((bool,), "channels-last memory layout"),
    "eval_batch_size": Setting((int,), "batch size of evaluations", low=1),
    "checkpoint_every": Setting((int,), "steps between resumable checkpoints (0: at every "
                                "evaluation)", low=0),
    "device": Setting((str,), "auto | cpu | cuda | cuda:N"),  # checked when resolved
    "threads": Setting((int, type(None)), "CPU threads for torch", low=1),
}
