"""``perlin``: fractal Perlin (gradient) noise, two octaves, computed exactly."""

from __future__ import annotations

import numpy as np

from shortcutlab.data.styles import (
    SIZE,
    StyleParams,
    lattice_weights,
    random_levels,
    register_style,
    tinted_background,
)

_PERLIN_OCTAVES = ((4, 2), (8, 1))  # (cells across the image, relative amplitude)
# Perlin's improved noise draws gradients from a small fixed set; these eight are exact.
_PERLIN_GRADIENTS = np.array([(1, 1), (-1, 1), (1, -1), (-1, -1), (1, 0), (-1, 0), (0, 1),
                              (0, -1)], dtype=np.float32)
_PERLIN_TABLES = [np.ascontiguousarray(np.tile(_PERLIN_GRADIENTS[:, axis], 32))
                  for axis in (0, 1)]  # random byte -> gradient component
# levels per unit of noise, a power of two (exact): strong contrast, with about 10% of
# pixels at the darkest or brightest level
_PERLIN_SCALE = 2.0**-9
_PERLIN_MID = 128.0


def _perlin_factors() -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The y-side and x-side factors of every octave and both gradient components, side
    by side, so that noise = Y @ blockdiag(Gx1, Gy1, Gx2, Gy2) @ X.T (x-gradients pair
    with W along y and D along x; y-gradients with D along y and W along x). Y carries the
    output scale and a last column that adds the mid level."""
    y_side, x_side, blocks = [], [], []
    for cells, amplitude in _PERLIN_OCTAVES:
        weights, offsets = lattice_weights(cells)
        y_side += [weights * _PERLIN_SCALE, offsets * _PERLIN_SCALE]
        x_side += [amplitude * offsets, amplitude * weights]
        blocks += [cells + 1, cells + 1]
    y_side.append(np.ones((SIZE, 1)))
    return (np.concatenate(y_side, axis=1).astype(np.float32),
            np.concatenate(x_side, axis=1).astype(np.float32), blocks)


_PERLIN_Y, _PERLIN_X, _PERLIN_BLOCKS = _perlin_factors()


def perlin_noise(gradient_index: list[np.ndarray]) -> np.ndarray:
    """Fractal Perlin (gradient) noise as levels around 128, float32 (28, n, 28) laid out
    (y, image, x), from one uint8 array (c+1, n, c+1) of random gradient choices per
    octave (lattice row, image, lattice column).

    Per octave the noise at pixel (y, x) is the sum over lattice corners of
    ``w(y) w(x) (gx (x - cx) + gy (y - cy))``, which factors into
    ``W @ Gx @ D.T + D @ Gy @ W.T``. Laying the random gradients out (row, image,
    column) turns the per-image products into two big matrix products for the batch.
    """
    n = gradient_index[0].shape[1]
    middle = np.empty((_PERLIN_Y.shape[1], n * SIZE), dtype=np.float32)
    row = 0
    for index in gradient_index:
        size = index.shape[0]
        for table in _PERLIN_TABLES:
            gradients = np.take(table, index).reshape(-1, size)          # (size * n, size)
            np.matmul(gradients, _PERLIN_X[:, row:row + size].T,
                      out=middle[row:row + size].reshape(-1, SIZE))
            row += size
    middle[row] = _PERLIN_MID
    return (_PERLIN_Y @ middle).reshape(SIZE, n, SIZE)


@register_style("perlin", tinted_background,
                "a Perlin-noise texture (two octaves) in the class color")
def perlin_pattern(n: int, rng: np.random.Generator, params: StyleParams) -> np.ndarray:
    index = [random_levels(rng, (cells + 1, n, cells + 1)) for cells, _ in _PERLIN_OCTAVES]
    noise = perlin_noise(index)
    np.clip(noise, 0.0, 255.0, out=noise)
    return noise.astype(np.uint8).transpose(1, 0, 2).copy()
