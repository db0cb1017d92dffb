"""Learning from Failure (Nam et al. 2020): a biased model finds what a debiased one studies.

As in the official code (alinlab/LfF): per-image moving averages of both models' losses
(decay ``ema``), each divided by the largest of its class, give the debiased model's
weights w = L_b / (L_b + L_d), detached; the biased model trains with generalized
cross-entropy (``q``). Two changes, and why; neither changes the objective.

``sampling``: the debiased model trains on a batch drawn in proportion to the weights
instead of on the sequential batch with each loss multiplied by its weight. Both
estimate the same weighted objective, but the weights of the color-aligned images fall
to ~1e-5 of the conflicting ones' within ~40 steps, so a weighted sequential batch of
128 carries its signal in its ~6 conflicting images. On that noisy gradient Adam takes
full-size steps: within 40 debiased steps 79-88% of the third conv layer's and fc1's
ReLUs were dead (default dataset, training seed 2), the outputs stopped depending on the
image, and the run ended below chance on easy data. Drawn in proportion to the weights,
all 128 images carry signal: 9% of those units dead, easy-val 92.9% at step 195 where
the weighted batch had 0.5%. ``--set sampling=0`` restores the official estimator.

``warmup``: the debiased model starts only after a share of the budget in which the
biased model trains alone. Without it, until the biased model reads color every weight
is about 0.5, the debiased model trains like plain ERM for ~20 steps and becomes a color
reader that must then unlearn color. ``--set warmup=0`` restores the official schedule.
docs/results.md (intervene) has the runs before and after each change.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from shortcutlab.errors import ShortcutlabError
from shortcutlab.intervene.hparams import HParam, optimizer_hparams
from shortcutlab.intervene.registry import Intervention, register_method
from shortcutlab.train.algorithm import Batch, TrainContext, make_optimizer


def generalized_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, q: float
                              ) -> torch.Tensor:
    """Per-sample GCE as Nam et al. implement it: CE scaled by q * p_y^q (detached).

    Its gradient is that of (1 - p_y^q) / q: examples the model already finds easy weigh
    more, so the biased model amplifies whatever is easiest, here color.
    """
    ce = F.cross_entropy(logits, labels, reduction="none")
    p_y = F.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1).detach()
    return ce * p_y.pow(q) * q


def relative_difficulty(loss_b: torch.Tensor, loss_d: torch.Tensor) -> torch.Tensor:
    """LfF's weight L_b / (L_b + L_d) of each image, in [0, 1] for losses >= 0 (0 where
    both are 0). The losses are class-normalized moving averages, at most 1 each."""
    return loss_b / (loss_b + loss_d + 1e-8)


def reinitialized(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with freshly drawn parameters (from torch's seeded stream)."""
    fresh = copy.deepcopy(model)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return fresh


@register_method
class LearningFromFailure(Intervention):
    """LfF: train a deliberately biased model and a debiased one that studies its failures.

    Hypothesis: color is learned first and easily. A model trained with generalized
    cross-entropy, which rewards what is already easy, becomes a pure color model; the
    images it keeps failing on are the counter-examples whose color is not their label's.
    Weighting each image in the debiased model's cross-entropy by the biased model's
    relative loss, w = L_b / (L_b + L_d) (per-image moving averages), turns those few
    counter-examples into most of the signal, so the debiased model has to read shape.
    Uses nothing beyond images and labels. The debiased model starts after the first
    ``warmup`` share of the steps, once the biased model reads color (its checkpoints
    before that are never selected).
    """

    name = "lff"
    uses = ("none",)
    hparam_space: ClassVar[dict[str, HParam]] = {
        **optimizer_hparams(),
        "q": HParam(0.7, "generalized cross-entropy exponent of the biased model", 0.3, 0.9),
        "ema": HParam(0.7, "per-sample loss moving-average decay", 0.5, 0.99),
        "sampling": HParam(1, "1: the debiased model trains on a batch drawn in proportion "
                              "to the weights (the same objective in expectation); 0: on "
                              "the sequential batch, each image's loss times its weight "
                              "(the official code)", choices=(0, 1)),
        "warmup": HParam(0.05, "share of the step budget in which the biased model trains "
                               "alone, before the debiased one starts", 0.0, 0.2),
    }

    def __init__(self, model: nn.Module, hparams: dict[str, Any]) -> None:
        biased = reinitialized(model)
        super().__init__(model, hparams)
        self.biased = biased
        self.optimizer = make_optimizer(self.trainable_parameters(), self.hparams)
        for name in ("ema_biased", "ema_debiased", "labels", "seen"):
            self.register_buffer(name, torch.zeros(0))
        self.warmup_steps = 0
        self.train_tensors: dict[str, torch.Tensor] | None = None
        self.batch_size = 128

    def trainable_parameters(self) -> list[nn.Parameter]:
        biased = self._modules.get("biased")  # absent while the base class builds its optimizer
        models = [self.model] + ([biased] if biased is not None else [])
        return [p for model in models for p in model.parameters() if p.requires_grad]

    def setup(self, context: TrainContext) -> None:
        super().setup(context)
        device = next(self.model.parameters()).device
        if self.ema_biased.numel() != context.num_train:
            self.ema_biased = torch.zeros(context.num_train, device=device)
            self.ema_debiased = torch.zeros(context.num_train, device=device)
            self.labels = torch.full((context.num_train,), -1, dtype=torch.long, device=device)
            self.seen = torch.zeros(context.num_train, dtype=torch.bool, device=device)
        if context.train is not None:
            self.labels.copy_(context.train["labels"].to(device))
        fraction = float(self.hparams.get("warmup", 0.0))
        if not 0.0 <= fraction < 1.0:
            raise ShortcutlabError(f"lff: warmup must be in [0, 1), got {fraction}")
        self.warmup_steps = round(fraction * context.total_steps)
        self.train_tensors = context.train
        self.batch_size = context.batch_size or 128

    def selectable(self, step: int) -> bool:
        """Not while the debiased model is still waiting for the biased one."""
        return step > self.warmup_steps

    def _update_ema(self, ema: torch.Tensor, index: torch.Tensor, loss: torch.Tensor) -> None:
        alpha = float(self.hparams["ema"])
        first = ~self.seen[index]
        ema[index] = torch.where(first, loss, alpha * ema[index] + (1 - alpha) * loss)

    def _class_normalized(self, ema: torch.Tensor, index: torch.Tensor,
                          labels: torch.Tensor) -> torch.Tensor:
        """EMA losses divided by the largest EMA loss of the same class (Nam et al.)."""
        num_classes = int(self.labels.max().clamp_min(labels.max())) + 1
        known = self.labels >= 0
        class_max = torch.zeros(num_classes, device=ema.device).scatter_reduce(
            0, self.labels[known], ema[known], reduce="amax", include_self=True)
        return ema[index] / class_max[labels].clamp_min(1e-8)

    def _all_weights(self) -> torch.Tensor:
        """Every seen training image's current weight (0 for the images not seen yet)."""
        seen = self.seen
        everything = torch.arange(seen.numel(), device=seen.device)
        labels = self.labels.clamp_min(0)
        weight = relative_difficulty(
            self._class_normalized(self.ema_biased, everything, labels),
            self._class_normalized(self.ema_debiased, everything, labels))
        return torch.where(seen, weight, torch.zeros_like(weight))

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        index, labels = batch.index, batch.labels
        sampling = bool(int(self.hparams.get("sampling", 0)))
        logits_b = self.biased(batch.images)
        with torch.set_grad_enabled(not sampling):
            logits_d = self.model(batch.images)
        ce_b = F.cross_entropy(logits_b, labels, reduction="none")
        ce_d = F.cross_entropy(logits_d, labels, reduction="none")
        with torch.no_grad():
            self.labels[index] = labels
            self._update_ema(self.ema_biased, index, ce_b.detach())
            self._update_ema(self.ema_debiased, index, ce_d.detach())
            self.seen[index] = True
        gce = generalized_cross_entropy(logits_b, labels, float(self.hparams["q"])).mean()
        training_debiased = step >= self.warmup_steps
        if sampling and training_debiased:
            weights = self._all_weights()  # once a step: the draw and the log read it
            weight = weights[index]
            debiased = self._sampled_loss(weights)
        else:  # without sampling, or logged only (no graph) in the warm-up
            with torch.no_grad():
                weight = relative_difficulty(
                    self._class_normalized(self.ema_biased, index, labels),
                    self._class_normalized(self.ema_debiased, index, labels))
            debiased = (ce_d * weight).mean()
        # The logged loss is the whole objective; in the warm-up only the biased part
        # trains (the debiased parameters get no gradient, so Adam leaves them alone).
        loss = gce + debiased
        self.step_optimizer(loss if training_debiased else gce)
        return {"loss": float(loss.detach()), "ce": float(ce_d.mean().detach()),
                "ce_biased": float(ce_b.mean().detach()), "weight": float(weight.mean())}

    def _sampled_loss(self, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The debiased model's cross-entropy on a batch drawn with replacement in
        proportion to the weights: an unbiased estimate of the weighted objective (up to
        its scale, which Adam ignores) from a full batch of images, where the weighted
        sequential batch has only its ~5% conflicting images carrying weight."""
        weights = self._all_weights() if weights is None else weights
        if self.train_tensors is None or float(weights.sum()) <= 0:
            raise ShortcutlabError("lff: no image has a weight yet; lower warmup")
        size = self.batch_size
        drawn = torch.multinomial(weights.double().cpu(), size, replacement=True,
                                  generator=self.generator)
        images = self.train_tensors["images"][drawn.to(self.train_tensors["images"].device)]
        labels = self.train_tensors["labels"][drawn.to(self.train_tensors["labels"].device)]
        return F.cross_entropy(self.model(images.to(self.device)), labels.to(self.device))

    def training_state(self) -> dict[str, Any]:
        return {**super().training_state(), "biased": self.biased.state_dict(),
                **{name: getattr(self, name).clone()
                   for name in ("ema_biased", "ema_debiased", "labels", "seen")}}

    def load_training_state(self, state: dict[str, Any]) -> None:
        super().load_training_state(state)
        self.biased.load_state_dict(state["biased"])
        for name in ("ema_biased", "ema_debiased", "labels", "seen"):
            setattr(self, name, state[name].to(self.ema_biased.device))
