"""``cnn3``: a simple three-convolution CNN with a small fully connected head (the default)."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from shortcutlab.models.registry import register_model


class CNN3(nn.Module):
    """conv(3x3)-ReLU-maxpool x2, conv-ReLU, flatten, FC-ReLU, FC.

    Input (N, 3, 28, 28) in [0, 1]; no normalization is needed for MNIST-range pixels.
    """

    def __init__(self, width: int = 32, hidden: int = 128, kernel_size: int = 3,
                 num_classes: int = 10) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, width, kernel_size, padding=pad)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(width, 2 * width, kernel_size, padding=pad)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(2 * width, 4 * width, kernel_size, padding=pad)),
            ("relu3", nn.ReLU()),
        ]))
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(4 * width * 7 * 7, hidden)),
            ("relu4", nn.ReLU()),
            ("fc2", nn.Linear(hidden, num_classes)),
        ]))
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@register_model("cnn3")
def cnn3(**kwargs) -> CNN3:
    return CNN3(**kwargs)
