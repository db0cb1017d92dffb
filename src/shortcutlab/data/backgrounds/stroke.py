"""``stroke``: the digit's stroke in the class color over a dark gray noise texture."""

from __future__ import annotations

import numpy as np

from shortcutlab.data.styles import SIZE, StyleParams, colored_stroke, random_levels, register_style


@register_style("stroke", colored_stroke,
                "the digit's stroke in the class color over a dark gray noise texture")
def stroke_pattern(n: int, rng: np.random.Generator, params: StyleParams) -> np.ndarray:
    return random_levels(rng, (n, SIZE, SIZE))
