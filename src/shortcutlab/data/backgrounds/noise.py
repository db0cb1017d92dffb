"""``noise``: independent uniform brightness per pixel, the default style."""

from __future__ import annotations

import numpy as np

from shortcutlab.data.styles import (
    SIZE,
    StyleParams,
    random_levels,
    register_style,
    tinted_background,
)


@register_style("noise", tinted_background,
                "high-frequency color-tinted noise behind a white digit (the default)")
def noise_pattern(n: int, rng: np.random.Generator, params: StyleParams) -> np.ndarray:
    """Independent uniform brightness per pixel."""
    return random_levels(rng, (n, SIZE, SIZE))
