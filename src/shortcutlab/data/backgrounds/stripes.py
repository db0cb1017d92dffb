"""``stripes``: parallel bands of the class color at a random angle, period and phase."""

from __future__ import annotations

import numpy as np

from shortcutlab.data.styles import (
    SIZE,
    StyleParams,
    apply_byte_table,
    register_style,
    tinted_background,
)

_STRIPE_PERIOD = (4.0, 8.0)  # pixels
_STRIPE_SHARPNESS = 2.5      # > 1 flattens the triangle wave into crisp bands


def _stripe_wave() -> np.ndarray:
    phase = np.arange(256) / 256.0
    triangle = 1.0 - np.abs(2.0 * phase - 1.0)
    return np.rint(255 * np.clip(0.5 + _STRIPE_SHARPNESS * (triangle - 0.5), 0, 1)).astype(
        np.uint8)


_STRIPE_WAVE = _stripe_wave()  # phase (1/256 of a period) -> level


@register_style("stripes", tinted_background,
                "parallel stripes of the class color, random angle, period and phase")
def stripes_pattern(n: int, rng: np.random.Generator, params: StyleParams) -> np.ndarray:
    """Stripes as integer phase: each image's phase at (y, x) is the sum of a per-column
    and a per-row term in 1/256 of a period, wrapping around in uint8."""
    direction = _unit_vectors(n, rng)
    period, shift = rng.random((2, n, 1))
    cycles = 256.0 / (_STRIPE_PERIOD[0] + (_STRIPE_PERIOD[1] - _STRIPE_PERIOD[0]) * period)
    coords = np.arange(SIZE) + 0.5
    along_x = np.floor(cycles * direction[:, :1] * coords + 256.0 * shift)
    along_y = np.floor(cycles * direction[:, 1:] * coords)
    along_x = (along_x.astype(np.int64) & 255).astype(np.uint8)
    along_y = (along_y.astype(np.int64) & 255).astype(np.uint8)
    phase = along_y[:, :, None] + along_x[:, None, :]                # wraps modulo 256
    return apply_byte_table(phase, _STRIPE_WAVE)


def _unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    """Directions uniform in angle, by rejection from the square (no trigonometry)."""
    found = np.empty((0, 2))
    while len(found) < n:
        points = rng.random((2 * n, 2)) * 2.0 - 1.0
        radius = np.sqrt((points**2).sum(axis=1))
        keep = (radius <= 1.0) & (radius > 1e-3)
        found = np.concatenate([found, points[keep] / radius[keep, None]])
    return found[:n]
