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
from shortcutlab.settings import OPTIMIZERS, SCHEDULES, SETTINGS, Setting  # noqa: F401

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
        """Every setting against its declaration in :data:`SETTINGS`, then the rules that
        tie settings together, before any work: a wrong value is refused with the setting's
        name instead of training something else (a negative clip would climb the loss)."""
        for name, setting in SETTINGS.items():
            setting.check(name, getattr(self, name))
        if self.steps is None and self.epochs is None:
            raise ShortcutlabError("set a training length: epochs or steps")
        selection = parse_selection(self.select)
        unknown = [c.metric for c in selection.conditions if c.metric not in SELECTION_METRICS]
        if unknown:
            raise ShortcutlabError(
                f"select {self.select!r} names unknown metric(s) {', '.join(unknown)}; a rule "
                f"may read {', '.join(SELECTION_METRICS)} (never a test split)")

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
_CONDITION = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*([-+0-9.eE]+|auto)$")
AUTO = "auto"
"""A threshold of ``first:`` rules that the dataset sets: :func:`color_only_bar`."""

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
    conditions before it hold. A threshold ``auto`` (``first:easy_val>=auto``) is set by
    the dataset (:func:`color_only_bar`) when the trainer resolves the rule; unresolved,
    it never holds.
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


def color_only_bar(val_size: int, aligned_share: float) -> float:
    """The ``auto`` threshold: what color alone scores on the validation split (its share
    of images in their class's color) plus one standard error of that accuracy on a split
    of this size, rounded to three decimals (the precision the study states its bars at).

    A checkpoint above it has learned a little shape beyond the color: 0.952 for the
    study's 95% bias and 10,000 validation images, the bar the lazy recipe was made
    with, and the same rule for any bias, split size or source.
    """
    share = float(aligned_share)
    n = max(1, int(val_size))
    return round(share + math.sqrt(share * (1.0 - share) / n), 3)


def resolve_selection(rule: str, bar: float) -> str:
    """``rule`` with every ``auto`` threshold replaced by ``bar``."""
    if AUTO not in rule:
        return rule
    selection = parse_selection(rule)
    if selection.kind != "first":
        return rule
    return "first:" + ",".join(
        f"{c.metric}{c.op}{bar:g}" if math.isnan(c.threshold) else
        f"{c.metric}{c.op}{c.threshold:g}" for c in selection.conditions)


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
                conditions.append(Condition(metric, op,
                                            math.nan if value == AUTO else float(value)))
            except ValueError:
                break
        else:
            if conditions:
                return Selection("first", tuple(conditions))
    raise ShortcutlabError(
        f"bad selection rule {rule!r}; use 'last', 'best-val' or 'first:METRIC>=VALUE[,...]' "
        "(e.g. first:easy_val>=0.952,easy_train>=0.952; VALUE auto: what color alone scores "
        "on the validation split plus one standard error)"
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
