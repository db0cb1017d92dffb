"""Task 0: sources, the biased Colored-MNIST generator and the dataset reader."""

from shortcutlab.data.build import BuildConfig, build_dataset
from shortcutlab.data.dataset import (
    SPLITS,
    ColoredMNIST,
    Split,
    images_to_tensor,
    load_meta,
    load_split,
)
from shortcutlab.data.fetch import fetch_source
from shortcutlab.data.palette import COLOR_NAMES, PALETTE, palette_array
from shortcutlab.data.sources import load_source
from shortcutlab.data.styles import STYLES, StyleParams

__all__ = [
    "COLOR_NAMES", "PALETTE", "SPLITS", "STYLES", "BuildConfig", "ColoredMNIST", "Split",
    "StyleParams", "build_dataset", "fetch_source", "images_to_tensor", "load_meta",
    "load_source", "load_split", "palette_array",
]
