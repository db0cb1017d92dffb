"""The control every method is paired with."""

from __future__ import annotations

from typing import ClassVar

from torch.nn import functional as F

from shortcutlab.intervene.hparams import HParam, optimizer_hparams
from shortcutlab.intervene.registry import Intervention, register_method
from shortcutlab.train.algorithm import Batch


@register_method
class ErmControl(Intervention):
    """Plain cross-entropy with exactly a method's optimizer, learning rate, batch size and epochs.

    Hypothesis: none; it answers the question every row must answer first. The optimizer
    alone can cure or break a model (a larger learning rate or a smaller batch pushes a
    CNN to shape on this data), so a method's gain over its control, not its raw
    accuracy, is what the method did.
    """

    name = "erm-control"
    uses = ("none",)
    role = "control"
    hparam_space: ClassVar[dict[str, HParam]] = optimizer_hparams()

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        loss = F.cross_entropy(self.model(batch.images), batch.labels)
        self.step_optimizer(loss)
        return {"loss": float(loss.detach())}
