"""``rebias``: ReBias' Biased MNIST, a flat class-colored background and the digit in pure
white wherever it has ink; the study forbids it."""

from __future__ import annotations

import numpy as np

from shortcutlab.data.styles import SIZE, StyleParams, register_style


def white_digit_on_color(rgb: np.ndarray, level: np.ndarray, ink: np.ndarray,
                         params: StyleParams) -> np.ndarray:
    """Every pixel with ink (gray level above 0) white, the others the class color
    (Bahng et al., ICML 2020: the digit is binarized, not blended)."""
    return np.where((ink > 0)[..., None], 1.0, rgb)


@register_style("rebias", white_digit_on_color,
                "ReBias' Biased MNIST: a flat class-colored background, the digit binarized "
                "to white; the study forbids it", forbidden_in_study=True)
def rebias_pattern(n: int, rng: np.random.Generator, params: StyleParams) -> np.ndarray:
    return np.full((n, SIZE, SIZE), 255, dtype=np.uint8)
