"""``mlp``: a fully connected baseline (the architecture most Colored-MNIST papers use)."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from shortcutlab.models.registry import register_model


class MLP(nn.Module):
    """``depth`` hidden ReLU layers of ``hidden`` units on the flattened RGB image.

    ``input_scale`` multiplies the input first. LfF's official code divides images that
    are already in [0, 1] by 255 once more (``input_scale = 1/255``), which slows the
    first layer and makes the plain MLP far more color-biased; the ``lff-cmnist``
    protocol offers that scaling to reproduce their numbers.
    """

    def __init__(self, hidden: int = 256, depth: int = 2, num_classes: int = 10,
                 input_scale: float = 1.0) -> None:
        super().__init__()
        if hidden < 1 or depth < 0 or num_classes < 2 or not input_scale > 0:
            raise ValueError("mlp needs hidden >= 1, depth >= 0, num_classes >= 2 and a "
                             "positive input_scale")
        self.input_scale = float(input_scale)
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        width = 3 * 28 * 28
        for index in range(1, depth + 1):
            layers += [(f"fc{index}", nn.Linear(width, hidden)), (f"relu{index}", nn.ReLU())]
            width = hidden
        layers.append((f"fc{depth + 1}", nn.Linear(width, num_classes)))
        self.classifier = nn.Sequential(OrderedDict(layers))
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x * self.input_scale if self.input_scale != 1.0 else x)


@register_model("mlp")
def mlp(**kwargs) -> MLP:
    return MLP(**kwargs)
