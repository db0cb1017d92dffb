"""Small random networks for the explain tests: CNNs, MLPs and a residual network."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def random_cnn(seed: int, width: int = 4, kernel: int = 3, pool: str = "max",
               batch_norm: bool = False, head: str = "flatten", classes: int = 10,
               size: int = 28, dtype: torch.dtype = torch.float64) -> nn.Module:
    """conv-(bn)-relu-pool, conv-(bn)-relu, conv-relu, then a flatten or global-pool head,
    for ``size`` x ``size`` inputs."""
    torch.manual_seed(seed)
    pad = kernel // 2
    pooling = {"max": nn.MaxPool2d(2), "avg": nn.AvgPool2d(2)}[pool]
    layers: list[tuple[str, nn.Module]] = [("conv1", nn.Conv2d(3, width, kernel, padding=pad))]
    if batch_norm:
        layers.append(("bn1", nn.BatchNorm2d(width)))
    layers += [("relu1", nn.ReLU()), ("pool1", pooling),
               ("conv2", nn.Conv2d(width, 2 * width, kernel, padding=pad))]
    if batch_norm:
        layers.append(("bn2", nn.BatchNorm2d(2 * width)))
    layers += [("relu2", nn.ReLU()), ("conv3", nn.Conv2d(2 * width, 2 * width, 3, padding=1)),
               ("relu3", nn.ReLU())]
    if head == "flatten":
        layers += [("pool2", nn.MaxPool2d(2)), ("flatten", nn.Flatten()),
                   ("fc1", nn.Linear(2 * width * (size // 4) ** 2, 12)), ("relu4", nn.ReLU()),
                   ("drop", nn.Dropout(0.5)), ("fc2", nn.Linear(12, classes))]
    else:
        layers += [("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
                   ("fc", nn.Linear(2 * width, classes))]
    model = nn.Sequential(OrderedDict(layers)).to(dtype)
    if batch_norm:
        randomize_batch_norm(model)
    return model.eval()


def random_mlp(seed: int, hidden: int = 24, depth: int = 2, classes: int = 10,
               dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    width = 3 * 28 * 28
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers).to(dtype).eval()


def randomize_batch_norm(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters (including negative scales).

    ``eps`` is set to 0: zennit's canonizer turns a merged BatchNorm into ``x / sqrt(1 + eps)``
    rather than the identity, an error of 5e-6 per layer that would hide real differences.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
                module.eps = 0.0
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(-1.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)


class Add(nn.Module):
    """A residual addition through zennit's Sum module, which zennit can hook (our lrp needs
    no module for an addition)."""

    def __init__(self) -> None:
        super().__init__()
        from zennit.layer import Sum

        self.sum = Sum(dim=-1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.sum(torch.stack([a, b], dim=-1))


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, sum_module: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))
        self.add = Add() if sum_module else None
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        identity = self.shortcut(x)
        if self.add is not None:
            return self.relu2(self.add(out, identity))
        out += identity  # in place, as torchvision's BasicBlock
        return self.relu2(out)


class TinyResNet(nn.Module):
    def __init__(self, width: int = 4, classes: int = 10, sum_module: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.block1 = Block(width, width, 1, sum_module)
        self.block2 = Block(width, 2 * width, 2, sum_module)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.fc(self.flatten(self.pool(self.block2(self.block1(x)))))


def tiny_resnet(seed: int, sum_module: bool = False, dtype: torch.dtype = torch.float64
                ) -> nn.Module:
    torch.manual_seed(seed)
    model = TinyResNet(sum_module=sum_module).to(dtype)
    randomize_batch_norm(model)
    return model.eval()


def hooks_left(model: nn.Module) -> list[str]:
    """Names of modules that still carry any hook."""
    return [
        name for name, module in model.named_modules()
        if module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
        or getattr(module, "_backward_pre_hooks", None)
    ]
