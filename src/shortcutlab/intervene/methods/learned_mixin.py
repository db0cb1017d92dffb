"""LearnedMixin + H (Clark et al. 2019): the model is trained in an ensemble with a
color-only model whose say is gated by the model itself. The other baseline of ReBias'
own comparison (Bahng et al. 2020), beside RUBi; the color-only model is RUBi's
:class:`~shortcutlab.intervene.methods.rubi.ColorOnlyNet`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from shortcutlab.errors import ShortcutlabError
from shortcutlab.intervene.hparams import HParam, optimizer_hparams
from shortcutlab.intervene.methods.rubi import ColorOnlyNet, output_classes
from shortcutlab.intervene.registry import Intervention, register_method
from shortcutlab.train.algorithm import Batch, make_optimizer


def last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ShortcutlabError(f"learned-mixin needs a model ending in a Linear layer; "
                               f"{type(model).__name__} has none")
    return linears[-1]


@contextlib.contextmanager
def penultimate(model: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Record the input of the model's last Linear layer (its features) while open."""
    store: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        store["features"] = args[0]

    handle = last_linear(model).register_forward_pre_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@register_method
class LearnedMixin(Intervention):
    """LearnedMixin + H: explain away what color explains, with a gate the model learns.

    Hypothesis: the model is trained through the ensemble ``log p_model + g(x) log
    p_color``, where ``p_color`` is a color-only network (trained on its own, never by the
    ensemble) and ``g(x) >= 0`` a gate computed from the model's own features. Where color
    already gives the answer, the ensemble is right with little help from the model, so
    the model's gradient comes from what color cannot explain. The entropy penalty keeps
    the gate from shutting the color model out (``g = 0`` would make the ensemble plain
    ERM). At test time the model is used alone. Uses the knowledge that color is the bias
    (built into the color-only network), no per-image labels.
    """

    name = "learned-mixin"
    uses = ("bias-knowledge",)
    hparam_space: ClassVar[dict[str, HParam]] = {
        **optimizer_hparams(),
        # Clark et al.'s weight of the entropy penalty (0.36 in ReBias' code as well)
        "entropy_weight": HParam(0.36, "weight of the entropy penalty on the gated color "
                                       "model's prediction", 0.0, 2.0),
        "bias_width": HParam(32, "channels of the color-only network"),
    }

    def __init__(self, model: nn.Module, hparams: dict[str, Any]) -> None:
        classes = output_classes(model)
        bias_branch = ColorOnlyNet(classes, int(hparams.get("bias_width", 32)))
        gate = nn.Linear(last_linear(model).in_features, 1)
        super().__init__(model, hparams)
        self.bias_branch, self.gate = bias_branch, gate
        self.optimizer = make_optimizer(self.trainable_parameters(), self.hparams)

    def trainable_parameters(self) -> list[nn.Parameter]:
        # absent while the base class builds its optimizer
        extra = [self._modules.get(name) for name in ("bias_branch", "gate")]
        modules = [self.model] + [module for module in extra if module is not None]
        return [p for module in modules for p in module.parameters() if p.requires_grad]

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        with penultimate(self.model) as recorded:
            logits = self.model(batch.images)
        bias_logits = self.bias_branch(batch.images)
        bias_loss = F.cross_entropy(bias_logits, batch.labels)
        # the color model is trained by its own loss only; the ensemble sees it as given
        bias_log_p = F.log_softmax(bias_logits.detach(), 1)
        gated = F.softplus(self.gate(recorded["features"])) * bias_log_p
        ensemble_loss = F.cross_entropy(F.log_softmax(logits, 1) + gated, batch.labels)
        gated_p = F.softmax(gated, 1)
        entropy = -(gated_p * F.log_softmax(gated, 1)).sum(1).mean()
        loss = ensemble_loss + float(self.hparams["entropy_weight"]) * entropy + bias_loss
        self.step_optimizer(loss)
        with torch.no_grad():
            ce = F.cross_entropy(logits, batch.labels)
        return {"loss": float(loss.detach()), "ce": float(ce),
                "ensemble_ce": float(ensemble_loss.detach()), "bias_ce": float(bias_loss.detach()),
                "entropy": float(entropy.detach())}

    def training_state(self) -> dict[str, Any]:
        return {**super().training_state(), "bias_branch": self.bias_branch.state_dict(),
                "gate": self.gate.state_dict()}

    def load_training_state(self, state: dict[str, Any]) -> None:
        super().load_training_state(state)
        self.bias_branch.load_state_dict(state["bias_branch"])
        self.gate.load_state_dict(state["gate"])
