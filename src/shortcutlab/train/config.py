"""The trainer's hyperparameters, checkpoint-selection rules and learning-rate schedules.

Everything here is small, pure and serializable: a :class:`TrainConfig` is written to
``config.json`` as a flat dict and rebuilt from it, so a run can be retrained exactly.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from shortcutlab.errors import ShortcutlabError

SCHEDULES = ("constant", "cosine", "linear", "step")
OPTIMIZERS = ("sgd", "adam", "adamw")

# Keys that say where and how fast a run executes, not what it computes: they may change
# between a run and its resume, and they do not enter the run's identity hash.
RUNTIME_KEYS = ("device", "threads", "checkpoint_every")


@dataclass
class TrainConfig:
    """Every knob of one training run (the model, the optimizer, the loop, the selection)."""

    model: str = "cnn3"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    grad_clip: float | None = None
    batch_size: int = 64
    epochs: float | None = 3.0
    steps: int | None = None  # a step budget; overrides ``epochs`` when set
    schedule: str = "constant"
    warmup_steps: int = 0
    step_gamma: float = 0.1    # ``step`` schedule: multiply the lr by this ...
    step_every: int = 0        # ... every this many steps (0: at 1/3 and 2/3 of training)
    eval_every: int = 200
    eval_dense_every: int = 0  # when > 0: evaluate this often while ``select`` is near firing
    eval_dense_margin: float = 0.01  # "near" = within this of the ``first:`` threshold
    select: str = "last"
    early_stop: bool = True    # stop once a ``first:`` rule has fired (no later step can win)
    channels_last: bool = True
    eval_batch_size: int = 1000
    checkpoint_every: int = 0  # steps between resumable checkpoints (0: at every evaluation)
    device: str = "auto"
    threads: int | None = None

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ShortcutlabError(
                f"unknown trainer setting(s) {', '.join(unknown)}; valid: {', '.join(cls.keys())}"
            )
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings that determine the result (runtime keys left out)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_KEYS}

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ShortcutlabError(f"unknown optimizer {self.optimizer!r}; choose one of "
                                   f"{', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ShortcutlabError(f"unknown schedule {self.schedule!r}; choose one of "
                                   f"{', '.join(SCHEDULES)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ShortcutlabError(f"lr must be a positive number, got {self.lr}")
        for name in ("batch_size", "eval_every", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ShortcutlabError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.steps is None and self.epochs is None:
            raise ShortcutlabError("set a training length: epochs or steps")
        if self.steps is not None and self.steps < 1:
            raise ShortcutlabError(f"steps must be at least 1, got {self.steps}")
        if self.steps is None and self.epochs is not None and self.epochs <= 0:
            raise ShortcutlabError(f"epochs must be positive, got {self.epochs}")
        if not isinstance(self.model_kwargs, dict):
            raise ShortcutlabError("model_kwargs must be a dict of keyword arguments")
        parse_selection(self.select)

    def total_steps(self, num_train: int) -> int:
        """The step budget: ``steps``, else ``epochs`` worth of full batches."""
        if self.steps is not None:
            return int(self.steps)
        per_epoch = steps_per_epoch(num_train, self.batch_size)
        return max(1, math.ceil(float(self.epochs) * per_epoch))

    def optimizer_hparams(self) -> dict[str, Any]:
        """What :func:`shortcutlab.train.algorithm.make_optimizer` reads."""
        return {"optimizer": self.optimizer, "lr": self.lr, "momentum": self.momentum,
                "weight_decay": self.weight_decay, "grad_clip": self.grad_clip}


def steps_per_epoch(num_train: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped, as most trainers do)."""
    if num_train < batch_size:
        raise ShortcutlabError(
            f"batch_size {batch_size} is larger than the training split ({num_train} images)"
        )
    return num_train // batch_size


# --- checkpoint selection -------------------------------------------------------------

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
}
_FIRST_RULE = re.compile(r"^first:([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)$")


@dataclass(frozen=True)
class Selection:
    """A parsed ``--select`` rule: ``last``, ``best-val`` or ``first:METRIC OP VALUE``."""

    kind: str                      # "last" | "best" | "first"
    metric: str = "easy_val"
    op: str = ">="
    threshold: float = 0.0

    def fires(self, record: Mapping[str, Any]) -> bool:
        return self.kind == "first" and _COMPARE[self.op](float(record[self.metric]),
                                                           self.threshold)

    def distance(self, record: Mapping[str, Any]) -> float:
        """How far a ``first:`` rule's metric is from firing (0 once it fires)."""
        value = float(record[self.metric])
        gap = self.threshold - value if self.op in (">=", ">") else value - self.threshold
        return max(0.0, gap)


def parse_selection(rule: str) -> Selection:
    rule = rule.strip()
    if rule == "last":
        return Selection("last")
    if rule in ("best-val", "best"):
        return Selection("best")
    match = _FIRST_RULE.match(rule)
    if match:
        metric, op, value = match.groups()
        try:
            threshold = float(value)
        except ValueError:
            match = None
        else:
            return Selection("first", metric, op, threshold)
    raise ShortcutlabError(
        f"bad selection rule {rule!r}; use 'last', 'best-val' or 'first:METRIC>=VALUE' "
        "(e.g. first:easy_val>=0.955)"
    )


# --- learning-rate schedules ----------------------------------------------------------

def lr_factor(config: TrainConfig, step: int, total: int) -> float:
    """The multiplier on the base lr for 0-based ``step`` of ``total``.

    A pure function of the step, so a resumed run needs no scheduler state, and methods
    that rebuild their optimizer mid-run (two-stage methods) keep the schedule.
    """
    if config.warmup_steps > 0 and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    start = config.warmup_steps
    span = max(1, total - start)
    progress = min(1.0, max(0.0, (step - start) / span))
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if config.schedule == "linear":
        return 1.0 - progress
    every = config.step_every or max(1, math.ceil(span / 3))
    return config.step_gamma ** ((step - start) // every)
