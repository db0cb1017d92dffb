"""``smooth``: low-frequency fields, a 4x4 grid of random levels interpolated smoothly."""

from __future__ import annotations

import numpy as np

from shortcutlab.data.styles import (
    SIZE,
    WEIGHT_UNIT,
    StyleParams,
    lattice_weights,
    random_levels,
    register_style,
    tinted_background,
)

_SMOOTH_KNOTS = 4
_SMOOTH_WEIGHTS = lattice_weights(_SMOOTH_KNOTS - 1)[0]
# (knots^2, 784): each pixel a convex combination of the knots, the weights (integers up to
# 256**2) scaled by 2**-16 so that the product is the level itself
_SMOOTH_BASIS = (np.kron(_SMOOTH_WEIGHTS, _SMOOTH_WEIGHTS).T / WEIGHT_UNIT**2).astype(
    np.float32)


@register_style("smooth", tinted_background,
                "low-frequency color fields: soft blobs of the class color")
def smooth_pattern(n: int, rng: np.random.Generator, params: StyleParams) -> np.ndarray:
    """A 4x4 grid of random levels, stretched to the full range, interpolated smoothly
    (Perlin's fade) across the image."""
    knots = random_levels(rng, (n, _SMOOTH_KNOTS * _SMOOTH_KNOTS)).astype(np.int32)
    low = knots.min(axis=1, keepdims=True)
    span = np.maximum(knots.max(axis=1, keepdims=True) - low, 1)
    stretched = ((knots - low) * 255 // span).astype(np.float32)
    # exact (8-bit knots times 16-bit weights) and within [0, 255]: truncation is the level
    return (stretched @ _SMOOTH_BASIS).astype(np.uint8).reshape(n, SIZE, SIZE)
