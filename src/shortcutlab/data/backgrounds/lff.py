"""``lff``: the stroke in the class color on black, as LfF's Colored MNIST; the study forbids it."""

from __future__ import annotations

import numpy as np

from shortcutlab.data.styles import SIZE, StyleParams, register_style


def stroke_on_black(rgb: np.ndarray, level: np.ndarray, ink: np.ndarray,
                    params: StyleParams) -> np.ndarray:
    """The class color scaled by the digit's ink: ``rgb * gray`` (Nam et al., NeurIPS 2020)."""
    return rgb * (ink * params.alpha)[..., None]


@register_style("lff", stroke_on_black,
                "the stroke in the class color on black (LfF's Colored MNIST); the study "
                "forbids it", forbidden_in_study=True)
def lff_pattern(n: int, rng: np.random.Generator, params: StyleParams) -> np.ndarray:
    return np.zeros((n, SIZE, SIZE), dtype=np.uint8)
