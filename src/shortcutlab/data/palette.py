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


def wheel_palette(count: int) -> tuple[tuple[int, int, int], ...]:
    """``count`` colors around the hue wheel at full saturation, alternating between full
    and two-thirds brightness so that neighbours stay apart when there are many."""
    import colorsys

    colors = []
    for index in range(count):
        value = 1.0 if index % 2 == 0 or count <= 12 else 0.67
        r, g, b = colorsys.hsv_to_rgb(index / count, 1.0, value)
        colors.append((round(255 * r), round(255 * g), round(255 * b)))
    return tuple(colors)


def resolve_palette(name: str, classes: int) -> tuple[tuple[tuple[float, float, float], ...],
                                                        tuple[str, ...]]:
    """The colors and their names for ``classes`` classes: a named palette (``rebias``,
    ``lff``; ten colors), ``wheel`` (any count) or a JSON file (``[[r, g, b], ...]`` or
    ``{"colors": ..., "names": ...}``)."""
    from shortcutlab.errors import ShortcutlabError

    if name in PALETTES:
        colors = PALETTES[name]
        if classes > len(colors):
            raise ShortcutlabError(
                f"{classes} classes but the {name} palette has {len(colors)} colors; pass "
                "--palette wheel (evenly spaced hues) or a JSON file of one color per class")
        return tuple(colors[:classes]), tuple(COLOR_NAMES[:classes])
    if name == "wheel":
        return wheel_palette(classes), tuple(f"hue {c}" for c in range(classes))
    from shortcutlab.data.importer import read_palette

    colors, names = read_palette(name)
    if len(colors) != classes:
        raise ShortcutlabError(f"the palette {name} has {len(colors)} colors for {classes} "
                               "classes")
    return (tuple(tuple(c) for c in colors),
            tuple(names) if names else tuple(f"color {c}" for c in range(classes)))
