"""``simpleconv``: ReBias' SimpleConvNet for Biased MNIST (Bahng et al., ICML 2020)."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from shortcutlab.models.registry import register_model


class SimpleConvNet(nn.Module):
    """Four convolutions 3 -> 16 -> 32 -> 64 -> 128 with BatchNorm and ReLU, no pooling
    between them (padding keeps 28x28), global average pooling and one Linear layer.

    ``kernel_size`` 7 is ReBias' debiased network, 1 its color-only "biased" network.
    The input (in [0, 1]) is normalized inside to mean 0.5, std 0.5, as their loader does.
    """

    def __init__(self, kernel_size: int = 7, num_classes: int = 10,
                 widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        layers: list[tuple[str, nn.Module]] = []
        channels = 3
        for index, width in enumerate(widths, start=1):
            layers += [(f"conv{index}", nn.Conv2d(channels, width, kernel_size,
                                                  padding=kernel_size // 2)),
                       (f"bn{index}", nn.BatchNorm2d(width)),
                       (f"relu{index}", nn.ReLU())]
            channels = width
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Sequential(OrderedDict([
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(channels, num_classes)),
        ]))
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features((x - 0.5) / 0.5))


@register_model("simpleconv")
def simpleconv(**kwargs) -> SimpleConvNet:
    if "widths" in kwargs:
        kwargs["widths"] = tuple(kwargs["widths"])
    return SimpleConvNet(**kwargs)
