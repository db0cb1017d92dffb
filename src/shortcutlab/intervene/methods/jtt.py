"""Just Train Twice (Liu et al. 2021): train, find the errors, train again with them upweighted."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from shortcutlab.errors import ShortcutlabError
from shortcutlab.intervene.hparams import HParam, optimizer_hparams
from shortcutlab.intervene.registry import Intervention, register_method
from shortcutlab.models import batched_forward
from shortcutlab.train.algorithm import Batch, TrainContext


@register_method
class JustTrainTwice(Intervention):
    """JTT: an identification model's training errors are drawn many times more often
    while a fresh model trains on them.

    Hypothesis: the first thing plain training learns here is color, so early in training
    the training images a model gets wrong are, almost all, the counter-examples whose
    color is not their label's. Drawing those errors ``upweight`` times more often makes
    color and label nearly independent in what the second model sees, and that model
    must read shape. Uses nothing beyond images and labels. Both stages share the one
    epoch budget: the first ``identify_fraction`` of the steps trains the identification
    model, the rest trains the final model from the same initial weights. Checkpoints
    of the first stage are never selected.
    """

    name = "jtt"
    uses = ("none",)
    hparam_space: ClassVar[dict[str, HParam]] = {
        **optimizer_hparams(),
        "identify_fraction": HParam(0.2, "share of the step budget spent on the "
                                         "identification model", 0.05, 0.5),
        "upweight": HParam(20, "how many times more often errors are drawn", 5, 100,
                           log=True),
    }

    def __init__(self, model: nn.Module, hparams: dict[str, Any]) -> None:
        super().__init__(model, hparams)
        self.initial_state = copy.deepcopy(model.state_dict())
        self.register_buffer("error_set", torch.zeros(0, dtype=torch.bool))
        self.switch_step = 0
        self.train_tensors: dict[str, torch.Tensor] | None = None

    def setup(self, context: TrainContext) -> None:
        super().setup(context)
        if context.train is None:
            raise ShortcutlabError("jtt needs the training split as tensors (TrainContext.train)")
        self.train_tensors = context.train
        fraction = float(self.hparams["identify_fraction"])
        if not 0.0 < fraction < 1.0:
            raise ShortcutlabError(f"jtt: identify_fraction must be in (0, 1), got {fraction}")
        self.switch_step = max(1, round(fraction * context.total_steps))

    def selectable(self, step: int) -> bool:
        """Only the final model's checkpoints: the identification model is a tool."""
        return step > self.switch_step

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        if step < self.switch_step:
            return self._step(batch.images, batch.labels)
        if self.error_set.numel() == 0:
            self._start_second_stage()
        index = torch.multinomial(self.sampling_weights, batch.labels.shape[0],
                                  replacement=True, generator=self.generator)
        images = self.train_tensors["images"][index.to(self.train_tensors["images"].device)]
        labels = self.train_tensors["labels"][index.to(self.train_tensors["labels"].device)]
        stats = self._step(images.to(self.device), labels.to(self.device))
        stats["errors"] = float(self.error_set.sum())
        return stats

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        loss = F.cross_entropy(self.model(images), labels)
        self.step_optimizer(loss)
        return {"loss": float(loss.detach())}

    @property
    def sampling_weights(self) -> torch.Tensor:
        weights = torch.ones(self.error_set.shape[0], dtype=torch.float64)
        weights[self.error_set.cpu()] = float(self.hparams["upweight"])
        return weights

    @torch.no_grad()
    def _start_second_stage(self) -> None:
        """Record the identification model's training errors, then restart from scratch."""
        images, labels = self.train_tensors["images"], self.train_tensors["labels"]
        predicted = batched_forward(self.model, images, 1024, device=self.device,
                                    fn=lambda model, x: model(x).argmax(1), to_cpu=True)
        self.error_set = predicted != labels.cpu()
        self.model.load_state_dict(self.initial_state)
        # Fresh moments, same optimizer object (a scheduler may hold a reference to it).
        self.optimizer.state.clear()

    def training_state(self) -> dict[str, Any]:
        return {**super().training_state(), "error_set": self.error_set.clone()}

    def load_training_state(self, state: dict[str, Any]) -> None:
        super().load_training_state(state)
        self.error_set = state["error_set"].clone()
