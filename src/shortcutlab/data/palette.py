"""The ten class colors.

They are the ten colors of the "Biased MNIST" benchmark of ReBias (Bahng et al., ICML
2020, ``colour_map`` in their data code), which many shortcut-learning papers reuse: pure
primaries and secondaries that stay distinct after a channel-mean, so that a network can
tell them apart from color statistics alone. Class ``c`` owns ``PALETTE[c]``: 0 is red,
1 is green, 2 is blue, as in the study's examples ("0s are never red, 1s never green").
"""

from __future__ import annotations

import numpy as np

PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0),      # 0 red
    (0, 255, 0),      # 1 green
    (0, 0, 255),      # 2 blue
    (225, 225, 0),    # 3 yellow
    (225, 0, 225),    # 4 magenta
    (0, 255, 255),    # 5 cyan
    (255, 128, 0),    # 6 orange
    (255, 0, 128),    # 7 pink
    (128, 0, 255),    # 8 violet
    (128, 128, 128),  # 9 gray
)
COLOR_NAMES: tuple[str, ...] = (
    "red", "green", "blue", "yellow", "magenta", "cyan", "orange", "pink", "violet", "gray",
)
NUM_COLORS = len(PALETTE)

# LfF's Colored MNIST (Nam et al., NeurIPS 2020): the mean stroke color of each class, RGB
# in [0, 1] as in their ``data/resource/colors.th`` (three decimals), here in 0-255.
LFF_COLORS: tuple[tuple[float, float, float], ...] = tuple(
    (round(255 * r, 3), round(255 * g, 3), round(255 * b, 3)) for r, g, b in (
        (0.984, 0.313, 0.169), (0.991, 0.916, 0.352), (0.673, 0.461, 0.580),
        (0.783, 0.832, 0.601), (0.088, 0.778, 0.982), (0.321, 0.961, 0.446),
        (0.025, 0.236, 0.759), (0.555, 0.102, 0.762), (0.208, 0.393, 0.019),
        (0.834, 0.202, 0.267),
    )
)
PALETTES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "rebias": PALETTE,
    "lff": LFF_COLORS,
}
"""The class colors a dataset can be built with (``BuildConfig.palette``), RGB in 0-255."""


def palette_colors(name: str) -> tuple[tuple[float, float, float], ...]:
    """The palette called ``name``; raises ``KeyError`` for an unknown one."""
    return PALETTES[name]


def palette_array(dtype: type = np.float32) -> np.ndarray:
    """The palette as a (10, 3) array; floats are scaled to [0, 1]."""
    array = np.asarray(PALETTE, dtype=np.float64)
    if np.issubdtype(dtype, np.floating):
        array = array / 255.0
    return array.astype(dtype)
