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
        """Every setting's type and range, before any work: a wrong value is refused with
        the setting's name instead of training something else (a negative clip would
        climb the loss)."""
        self._check_types()
        self._check_ranges()
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
        selection = parse_selection(self.select)
        unknown = [c.metric for c in selection.conditions if c.metric not in SELECTION_METRICS]
        if unknown:
            raise ShortcutlabError(
                f"select {self.select!r} names unknown metric(s) {', '.join(unknown)}; a rule "
                f"may read {', '.join(SELECTION_METRICS)} (never a test split)")

    def _check_types(self) -> None:
        expected: dict[str, tuple[type, ...]] = {
            "model": (str,), "optimizer": (str,), "schedule": (str,), "select": (str,),
            "device": (str,), "lr": (int, float), "momentum": (int, float),
            "weight_decay": (int, float), "step_gamma": (int, float),
            "eval_dense_margin": (int, float), "batch_size": (int,), "warmup_steps": (int,),
            "step_every": (int,), "eval_every": (int,), "eval_dense_every": (int,),
            "eval_batch_size": (int,), "checkpoint_every": (int,), "early_stop": (bool,),
            "channels_last": (bool,), "grad_clip": (int, float, type(None)),
            "epochs": (int, float, type(None)), "steps": (int, type(None)),
            "threads": (int, type(None)),
        }
        for name, kinds in expected.items():
            value = getattr(self, name)
            wrong_bool = isinstance(value, bool) and bool not in kinds
            if wrong_bool or not isinstance(value, kinds):
                names = " or ".join("none" if k is type(None) else k.__name__ for k in kinds)
                raise ShortcutlabError(f"{name} must be {names}, got {value!r}")

    def _check_ranges(self) -> None:
        def finite(name: str) -> float:
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ShortcutlabError(f"{name} must be a finite number, got {value}")
            return value

        if self.grad_clip is not None and not finite("grad_clip") > 0:
            raise ShortcutlabError(f"grad_clip must be positive (or none: no clipping), got "
                                   f"{self.grad_clip}")
        if not 0.0 <= finite("momentum") < 1.0:
            raise ShortcutlabError(f"momentum must be in [0, 1), got {self.momentum}")
        if finite("weight_decay") < 0:
            raise ShortcutlabError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 < finite("step_gamma") <= 1.0:
            raise ShortcutlabError(f"step_gamma must be in (0, 1], got {self.step_gamma}")
        if finite("eval_dense_margin") < 0:
            raise ShortcutlabError(f"eval_dense_margin must be >= 0, got "
                                   f"{self.eval_dense_margin}")
        for name in ("warmup_steps", "step_every", "eval_dense_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ShortcutlabError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.epochs is not None and not (finite("epochs") > 0):
            raise ShortcutlabError(f"epochs must be positive, got {self.epochs}")
        if self.threads is not None and self.threads < 1:
            raise ShortcutlabError(f"threads must be at least 1, got {self.threads}")

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
_CONDITION = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)$")

# Metrics that are computed only when a selection rule asks for them (they cost a pass
# over the whole training split): see ``Trainer._evaluate``.
ON_DEMAND_METRICS = ("easy_train", "easy_train_aligned", "easy_train_conflicting")
# What a selection rule may read: every evaluation's record (easy val and the training
# split), never a test split.
SELECTION_METRICS = ("easy_val", "easy_val_aligned", "easy_val_conflicting", "val_loss",
                     *ON_DEMAND_METRICS)


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    threshold: float

    def holds(self, record: Mapping[str, Any]) -> bool:
        return _COMPARE[self.op](float(record[self.metric]), self.threshold)

    def gap(self, record: Mapping[str, Any]) -> float:
        """How far the metric is from satisfying the condition (0 when it does)."""
        value = float(record[self.metric])
        gap = self.threshold - value if self.op in (">=", ">") else value - self.threshold
        return max(0.0, gap)


@dataclass(frozen=True)
class Selection:
    """A parsed ``--select`` rule: ``last``, ``best-val`` or ``first:COND[,COND...]``.

    ``first:`` picks the first evaluated checkpoint where every condition holds, e.g.
    ``first:easy_val>=0.952,easy_train>=0.952``. Conditions are checked in order and a
    condition on an on-demand metric (``easy_train``) is only evaluated once the
    conditions before it hold.
    """

    kind: str                      # "last" | "best" | "first"
    conditions: tuple[Condition, ...] = ()
    metric: str = "easy_val"       # what ``best`` maximizes

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(c.metric for c in self.conditions)

    def fires(self, record: Mapping[str, Any]) -> bool:
        return self.kind == "first" and all(c.holds(record) for c in self.conditions)

    def distance(self, record: Mapping[str, Any]) -> float:
        """How far the logged metrics are from firing a ``first:`` rule (unlogged skipped)."""
        gaps = [c.gap(record) for c in self.conditions if c.metric in record]
        return max(gaps, default=0.0)


def parse_selection(rule: str) -> Selection:
    rule = rule.strip()
    if rule == "last":
        return Selection("last")
    if rule in ("best-val", "best"):
        return Selection("best")
    if rule.startswith("first:"):
        conditions = []
        for part in rule[len("first:"):].split(","):
            match = _CONDITION.match(part.strip())
            if not match:
                break
            metric, op, value = match.groups()
            try:
                conditions.append(Condition(metric, op, float(value)))
            except ValueError:
                break
        else:
            if conditions:
                return Selection("first", tuple(conditions))
    raise ShortcutlabError(
        f"bad selection rule {rule!r}; use 'last', 'best-val' or 'first:METRIC>=VALUE[,...]' "
        "(e.g. first:easy_val>=0.952,easy_train>=0.952)"
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
