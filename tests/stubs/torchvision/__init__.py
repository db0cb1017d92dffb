"""Test-only stand-in for torchvision: just the names the reference libraries import."""

from torchvision import models, ops, transforms  # noqa: F401

__version__ = "0.0.0+shortcutlab.stub"
