"""``solid``: a flat class-colored background (ReBias' Biased MNIST); the study forbids it."""

from __future__ import annotations

import numpy as np

from shortcutlab.data.styles import SIZE, StyleParams, register_style, tinted_background


@register_style("solid", tinted_background,
                "a flat class-colored background (ReBias' Biased MNIST); the study forbids it",
                forbidden_in_study=True)
def solid_pattern(n: int, rng: np.random.Generator, params: StyleParams) -> np.ndarray:
    return np.full((n, SIZE, SIZE), 255, dtype=np.uint8)
