"""``cnn2fc3``: two convolutions and two hidden fully connected layers.

The architecture the Lazy Artist write-up ended with ("two conv layers, two fully
connected layers and one more going to the logits"): a CNN whose head is a small MLP.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from shortcutlab.models.registry import register_model


class CNN2FC3(nn.Module):
    """conv-ReLU-maxpool x2, flatten, FC-ReLU x2, FC. Input (N, 3, 28, 28) in [0, 1]."""

    def __init__(self, width: int = 32, hidden: int = 256, hidden2: int = 128,
                 kernel_size: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, width, kernel_size, padding=pad)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(width, 2 * width, kernel_size, padding=pad)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
        ]))
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(2 * width * 7 * 7, hidden)),
            ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(hidden, hidden2)),
            ("relu4", nn.ReLU()),
            ("fc3", nn.Linear(hidden2, num_classes)),
        ]))
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@register_model("cnn2fc3")
def cnn2fc3(**kwargs) -> CNN2FC3:
    return CNN2FC3(**kwargs)
