"""``mlp``: a fully connected baseline (the architecture most Colored-MNIST papers use)."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from shortcutlab.models.registry import register_model


class MLP(nn.Module):
    def __init__(self, hidden: int = 256, depth: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        width = 3 * 28 * 28
        for index in range(1, depth + 1):
            layers += [(f"fc{index}", nn.Linear(width, hidden)), (f"relu{index}", nn.ReLU())]
            width = hidden
        layers.append((f"fc{depth + 1}", nn.Linear(width, num_classes)))
        self.classifier = nn.Sequential(OrderedDict(layers))
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x)


@register_model("mlp")
def mlp(**kwargs) -> MLP:
    return MLP(**kwargs)
