from torch import nn


class BasicBlock(nn.Module):
    """Never instantiated: zennit only uses it in isinstance checks."""


class Bottleneck(nn.Module):
    """Never instantiated: zennit only uses it in isinstance checks."""
