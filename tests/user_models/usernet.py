"""A network written the way users write them, for the tests of outside models.

BatchNorm after every convolution, in-place ReLUs, functional calls inside ``forward``
(``F.relu``, ``F.max_pool2d``, ``torch.flatten``), a residual block and no Flatten module.
"""

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + x)


class UserNet(nn.Module):
    def __init__(self, width: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.act = nn.ReLU(inplace=True)
        self.block = ResidualBlock(width)
        self.head = nn.Linear(width * 7 * 7, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.stem(x)))
        x = F.max_pool2d(x, 2)
        x = self.block(x)
        x = F.max_pool2d(x, 2)
        return self.head(torch.flatten(x, 1))


def build(width: int = 8, num_classes: int = 10) -> UserNet:
    return UserNet(width, num_classes)


class GatedNet(UserNet):
    """Hides a nonlinearity from LRP: a functional sigmoid gate inside ``forward``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.stem(x)))
        x = x * torch.sigmoid(x)
        x = F.max_pool2d(x, 2)
        x = self.block(x)
        x = F.max_pool2d(x, 2)
        return self.head(torch.flatten(x, 1))


def gated(width: int = 8, num_classes: int = 10) -> GatedNet:
    return GatedNet(width, num_classes)
