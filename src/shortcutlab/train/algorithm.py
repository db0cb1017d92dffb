"""The training interface every method implements (in the spirit of DomainBed).

An :class:`Algorithm` owns the model and its optimizer and knows how to take one step on
a :class:`Batch` (``update``) and how to predict (``predict``). The trainer owns
everything around that: data order, evaluation, checkpoint selection, logging and
resuming. Plain cross-entropy training is :class:`ERM`; the debiasing methods of
``shortcutlab.intervene`` are further subclasses.

The contract a subclass sees (``shortcutlab.train.trainer`` drives it):

- ``__init__(model, hparams)``: ``hparams`` holds the optimizer settings (``optimizer``,
  ``lr``, ``momentum``, ``weight_decay``, ``grad_clip``) plus the class's
  ``default_hparams`` with any overrides the user passed to ``train_run``;
- ``setup(context)``: once before the first step and again after a resume (before the
  saved state is loaded back), with the whole training split in ``context.train``;
- ``update(batch, step)``: one step on a :class:`Batch`; ``step`` is 0-based and global;
- ``predict(x)``: logits, used for every evaluation (the model is in eval mode then);
- ``training_state()`` / ``load_training_state()``: everything needed to resume exactly
  (weights, optimizers, per-sample state, stage flags);
- ``selectable(step)``: whether the checkpoint evaluated after ``step`` steps may be
  selected (a two-stage method such as JTT excludes its first stage); default: always;
- ``optimizers()``: the optimizers whose learning rate the trainer's schedule drives; it
  sets ``lr = initial_lr * factor(step)`` on every param group before each step, so a
  method that builds a new optimizer mid-run keeps the schedule;
- ``selectable(step)``: whether the checkpoint after ``step`` may be selected (default
  always); a two-stage method (JTT) returns False during its first stage;
- ``train()`` / ``eval()``: the trainer switches the whole algorithm module to eval mode
  around every evaluation and back; a method with frozen helpers (a teacher) keeps them
  in eval mode itself, e.g. by overriding ``train``.

Methods register themselves with :func:`register_algorithm` (in :data:`ALGORITHMS`) so a
run's ``config.json`` can name its method and ``train_run(algorithm="name")`` can find it;
the interventions of ``shortcutlab.intervene`` are registered on the first lookup.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from shortcutlab.registry import Registry

EXTRA_INFORMATION = ("none", "color-labels", "masks", "teacher")


@dataclass
class Batch:
    """A training batch: images float (B, 3, 28, 28) in [0, 1] and what the dataset ships."""

    images: Tensor
    labels: Tensor
    colors: Tensor
    masks: Tensor
    index: Tensor  # positions in the training split, for methods that keep per-sample state

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


@dataclass
class TrainContext:
    """What a method may need to know about the run before its first step."""

    num_train: int
    total_steps: int
    device: torch.device
    train: dict[str, Tensor] | None = None  # the whole training split as tensors (JTT, LfF)
    generator: torch.Generator | None = None  # seeded per run; its state is checkpointed
    seed: int = 0
    data_dir: Path | None = None
    run_dir: Path | None = None
    steps_per_epoch: int = 0
    batch_size: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


def make_optimizer(params: Any, hparams: dict[str, Any]) -> torch.optim.Optimizer:
    """sgd | adam | adamw from ``optimizer``, ``lr``, ``momentum``, ``weight_decay``."""
    name = hparams.get("optimizer", "sgd")
    lr = float(hparams.get("lr", 0.01))
    weight_decay = float(hparams.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(hparams.get("momentum", 0.9)),
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    from shortcutlab.errors import ShortcutlabError

    raise ShortcutlabError(f"unknown optimizer {name!r}; choose sgd, adam or adamw")


def _load_interventions() -> None:
    # The interventions are algorithms too, defined in a package that imports this one:
    # imported on the first lookup, so that a name in config.json, a sweep spec or
    # ``train_run(algorithm="jtt")`` never depends on what the caller imported first.
    import shortcutlab.intervene.methods  # noqa: F401  (registration)


ALGORITHMS: Registry[type[Algorithm]] = Registry(
    "training algorithm", loader=_load_interventions,
    hint=" (an algorithm of your own is listed once its module is imported)",
)


def register_algorithm(cls: type[Algorithm]) -> type[Algorithm]:
    """Class decorator: make a method findable by its ``name``."""
    return ALGORITHMS.register(cls.name, cls)


def list_algorithms() -> list[str]:
    return ALGORITHMS.names()


def get_algorithm(name: str) -> type[Algorithm]:
    return ALGORITHMS.get(name)


class Algorithm(nn.Module):
    """Base class: subclasses set ``name``, ``uses`` and write ``update``.

    ``default_hparams`` lists the method's own hyperparameters and their defaults; these
    are the extra keys ``train_run`` accepts for it.
    """

    name: ClassVar[str] = "base"
    uses: ClassVar[tuple[str, ...]] = ("none",)
    default_hparams: ClassVar[dict[str, Any]] = {}

    def __init__(self, model: nn.Module, hparams: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.hparams = dict(hparams)
        self.optimizer = make_optimizer(self.trainable_parameters(), self.hparams)

    @classmethod
    def resolve_hparams(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        """The method hyperparameters a run passes on, from the user's ``overrides``
        (already limited to keys of ``default_hparams``); default: them, unchanged.
        An intervention fills in its defaults and checks and types every value."""
        return dict(overrides)

    @classmethod
    def check_model(cls, model: nn.Module, hparams: dict[str, Any], example: Tensor) -> None:
        """Refuse, before any training, a model this algorithm cannot train (raise a
        ShortcutlabError saying what to change); ``example`` is one training image.
        Default: any model."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def selectable(self, step: int) -> bool:
        """Whether the checkpoint after ``step`` (1-based count of steps) may be selected."""
        return True

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimizers the trainer's learning-rate schedule drives."""
        return [self.optimizer]

    def setup(self, context: TrainContext) -> None:
        """Called once before training (after a resume, too); default: nothing."""

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        """Take one optimization step; return scalars worth logging (at least ``loss``)."""
        raise NotImplementedError

    def predict(self, x: Tensor) -> Tensor:
        return self.model(x)

    def step_optimizer(self, loss: Tensor) -> None:
        """Backpropagate ``loss`` and step, clipping gradients when ``grad_clip`` is set."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.hparams.get("grad_clip")
        if clip:
            nn.utils.clip_grad_norm_(self.trainable_parameters(), float(clip))
        self.optimizer.step()

    def training_state(self) -> dict[str, Any]:
        """Everything needed to resume: weights, optimizer, and any per-method state."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


@register_algorithm
class ERM(Algorithm):
    """Empirical risk minimization: plain cross-entropy."""

    name = "erm"
    uses = ("none",)

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        loss = nn.functional.cross_entropy(self.model(batch.images), batch.labels)
        self.step_optimizer(loss)
        return {"loss": float(loss.detach())}
