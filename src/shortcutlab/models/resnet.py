"""``resnet18`` adapted to 28x28 inputs.

Our own code rather than torchvision's: torchvision pulls a multi-gigabyte CUDA build of
torch into a CPU install, and its ResNet reuses one in-place ReLU module several times per
block, which breaks explanation methods that hook every layer. Here every activation is
its own non-in-place ``nn.ReLU``. The ImageNet stem (7x7 stride-2 convolution and
max-pool) would shrink a 28x28 digit to 7x7 before the first block, so the stem is a 3x3
stride-1 convolution, as in the usual CIFAR adaptations; the four stages then see 28, 14,
7 and 4 pixels.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from shortcutlab.models.registry import register_model


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the (projected) input, then ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(OrderedDict([
                ("conv", nn.Conv2d(in_channels, channels, 1, stride, bias=False)),
                ("bn", nn.BatchNorm2d(channels)),
            ]))
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + identity)


class ResNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...] = (2, 2, 2, 2), width: int = 64,
                 num_classes: int = 10) -> None:
        super().__init__()
        stem = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(3, width, 3, 1, 1, bias=False)),
            ("bn", nn.BatchNorm2d(width)),
            ("relu", nn.ReLU()),
        ]))
        stages: list[tuple[str, nn.Module]] = []
        in_channels = width
        for index, count in enumerate(blocks):
            channels = width * 2 ** index
            stride = 1 if index == 0 else 2
            layer = nn.Sequential(*[
                BasicBlock(in_channels if b == 0 else channels, channels, stride if b == 0 else 1)
                for b in range(count)
            ])
            stages.append((f"layer{index + 1}", layer))
            in_channels = channels
        self.features = nn.Sequential(OrderedDict([("stem", stem), *stages]))
        self.classifier = nn.Sequential(OrderedDict([
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(in_channels, num_classes)),
        ]))
        self.num_classes = num_classes
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        for module in self.modules():
            # zero-init the last BN of each block: each block starts as the identity
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@register_model("resnet18")
def resnet18(width: int = 64, num_classes: int = 10) -> ResNet:
    return ResNet((2, 2, 2, 2), width=width, num_classes=num_classes)
