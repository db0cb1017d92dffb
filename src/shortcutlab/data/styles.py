"""Ways of putting a class color into an image: the dataset's *styles*.

A style is two small pure functions:

* ``pattern(n, rng, params)`` draws ``n`` textures, uint8 (n, 28, 28), vectorized over
  the batch; 0 is the texture's darkest level, 255 its brightest. All randomness comes
  from the generator it is given, so a build is reproducible.
* ``shade(rgb, level, ink, params)`` says what color a pixel gets from its image's class
  color ``rgb`` (..., 3), its texture ``level`` (...) and the digit's ``ink`` (...), all
  floats in [0, 1]; it broadcasts like any numpy expression and returns (..., 3) in [0, 1].

Because ``shade`` depends on nothing else, :func:`shade_table` evaluates it once for
every (color, level, ink) triple, and rendering a pixel is a single table lookup
(:mod:`shortcutlab.data.build`); :func:`shade_direct` is the plain formula, kept for
tests and for anyone who wants floats.

``noise_mix`` is the share of the texture in the background's brightness: a background
pixel is ``rgb * ((1 - noise_mix) + noise_mix * level)``, so 0 gives a flat color and 1
lets the texture go from black to the full color (the write-up's "60% noise, 40% color"
is the default 0.6). ``alpha`` is how strongly the digit is laid over the background
(``ink * alpha`` is its opacity; 1 draws it fully, lower values let the background show
through it). The study forbids a flat background; ``solid`` exists only to reproduce
published benchmarks such as ReBias' Biased MNIST (flat class-colored background, white
digit) and the build warns when it is used.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shortcutlab.registry import Registry

SIZE = 28
PatternFn = Callable[[int, np.random.Generator, "StyleParams"], np.ndarray]
ShadeFn = Callable[[np.ndarray, np.ndarray, np.ndarray, "StyleParams"], np.ndarray]

STROKE_BACKGROUND = 0.3  # brightest gray of the ``stroke`` style's background texture


@dataclass(frozen=True)
class StyleParams:
    noise_mix: float = 0.6  # share of the texture (vs flat color) in the background
    alpha: float = 1.0      # opacity of the digit laid over the background


@dataclass(frozen=True)
class Style:
    name: str
    pattern: PatternFn
    shade: ShadeFn
    summary: str
    forbidden_in_study: bool = False


STYLES: Registry[Style] = Registry("style", order="registered")


def register_style(name: str, shade: ShadeFn, summary: str,
                   forbidden_in_study: bool = False) -> Callable[[PatternFn], PatternFn]:
    """Register ``pattern`` (the decorated function) with its ``shade`` under ``name``."""
    def decorator(pattern: PatternFn) -> PatternFn:
        STYLES.register(name, Style(name, pattern, shade, summary, forbidden_in_study))
        return pattern
    return decorator


# -- shades ---------------------------------------------------------------------------------

def tinted_background(rgb: np.ndarray, level: np.ndarray, ink: np.ndarray,
                      params: StyleParams) -> np.ndarray:
    """A background of the class color, its brightness modulated by the texture; the
    digit in white on top."""
    brightness = (1.0 - params.noise_mix) + params.noise_mix * level
    weight = (params.alpha * ink)[..., None]
    return rgb * brightness[..., None] * (1.0 - weight) + weight


def colored_stroke(rgb: np.ndarray, level: np.ndarray, ink: np.ndarray,
                   params: StyleParams) -> np.ndarray:
    """The digit's stroke in the class color over a dark, colorless texture."""
    gray = STROKE_BACKGROUND * ((1.0 - params.noise_mix) * 0.5 + params.noise_mix * level)
    weight = (params.alpha * ink)[..., None]
    return gray[..., None] * (1.0 - weight) + rgb * weight


def shade_direct(style: Style, rgb: np.ndarray, levels: np.ndarray, gray: np.ndarray,
                 params: StyleParams) -> np.ndarray:
    """The plain formula: uint8 images (n, 28, 28, 3) from uint8 levels and digits."""
    image = style.shade(rgb[:, None, None, :].astype(np.float64), levels / 255.0,
                        gray / 255.0, params)
    return _to_uint8(image)


@functools.lru_cache(maxsize=16)
def shade_table(style_name: str, params: StyleParams, palette: tuple) -> np.ndarray:
    """uint8 (colors * 256 * 256, 3): the pixel for (color, texture level, digit ink)."""
    style = STYLES[style_name]
    rgb = np.asarray(palette, dtype=np.float64)[:, None, None, :] / 255.0
    levels = np.arange(256, dtype=np.float64) / 255.0
    table = style.shade(rgb, levels[None, :, None], levels[None, None, :], params)
    table = np.broadcast_to(table, (len(palette), 256, 256, 3))
    table = _to_uint8(table).reshape(-1, 3)
    table.flags.writeable = False
    return table


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


# -- patterns -------------------------------------------------------------------------------
# The same seed must give the same bytes on every machine, and a matrix product (BLAS) may
# round differently from one CPU or thread count to the next. So the textures that need
# products use integers (times powers of two, which scale without rounding) small enough
# that float32 holds every product and partial sum exactly (< 2**24): any BLAS, any order
# of summation, same result. The rest is integer arithmetic; no per-pixel trigonometry.

_WEIGHT_UNIT = 256  # interpolation weights are integers in units of 1/256


def random_levels(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform uint8 levels straight from the bit generator's 64-bit words (eight levels
    per draw), read little-endian so every platform gets the same bytes."""
    count = int(np.prod(shape))
    words = rng.bit_generator.random_raw((count + 7) // 8)
    return np.asarray(words, dtype="<u8").view(np.uint8)[:count].reshape(shape)


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic fade: 0 at 0, 1 at 1, flat first and second derivatives at both."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def _lattice_weights(cells: int) -> tuple[np.ndarray, np.ndarray]:
    """For ``cells`` lattice cells across the image: the fade weight of each lattice line
    for each pixel, W (28, cells+1), and that weight times the pixel's offset from the
    line, D (28, cells+1); integers in units of 1/256. A 2-D lattice sum factors into
    these 1-D tables."""
    t = (np.arange(SIZE) + 0.5) / SIZE * cells
    cell = np.floor(t).astype(int)
    f = t - cell
    near = np.rint(_WEIGHT_UNIT * (1 - _fade(f)))
    weights = np.zeros((SIZE, cells + 1))
    offsets = np.zeros((SIZE, cells + 1))
    rows = np.arange(SIZE)
    weights[rows, cell], weights[rows, cell + 1] = near, _WEIGHT_UNIT - near  # rows sum to 1
    offsets[rows, cell] = np.rint(near * f)
    offsets[rows, cell + 1] = np.rint((_WEIGHT_UNIT - near) * (f - 1))
    return weights, offsets


_SMOOTH_KNOTS = 4
_SMOOTH_WEIGHTS = _lattice_weights(_SMOOTH_KNOTS - 1)[0]
# (knots^2, 784): each pixel a convex combination of the knots, the weights (integers up to
# 256**2) scaled by 2**-16 so that the product is the level itself
_SMOOTH_BASIS = (np.kron(_SMOOTH_WEIGHTS, _SMOOTH_WEIGHTS).T / _WEIGHT_UNIT**2).astype(
    np.float32)

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
        weights, offsets = _lattice_weights(cells)
        y_side += [weights * _PERLIN_SCALE, offsets * _PERLIN_SCALE]
        x_side += [amplitude * offsets, amplitude * weights]
        blocks += [cells + 1, cells + 1]
    y_side.append(np.ones((SIZE, 1)))
    return (np.concatenate(y_side, axis=1).astype(np.float32),
            np.concatenate(x_side, axis=1).astype(np.float32), blocks)


_PERLIN_Y, _PERLIN_X, _PERLIN_BLOCKS = _perlin_factors()

_STRIPE_PERIOD = (4.0, 8.0)  # pixels
_STRIPE_SHARPNESS = 2.5      # > 1 flattens the triangle wave into crisp bands


def _stripe_wave() -> np.ndarray:
    phase = np.arange(256) / 256.0
    triangle = 1.0 - np.abs(2.0 * phase - 1.0)
    return np.rint(255 * np.clip(0.5 + _STRIPE_SHARPNESS * (triangle - 0.5), 0, 1)).astype(
        np.uint8)


_STRIPE_WAVE = _stripe_wave()  # phase (1/256 of a period) -> level


@register_style("noise", tinted_background,
                "high-frequency color-tinted noise behind a white digit (the default)")
def noise_pattern(n: int, rng: np.random.Generator, params: StyleParams) -> np.ndarray:
    """Independent uniform brightness per pixel."""
    return random_levels(rng, (n, SIZE, SIZE))


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


def apply_byte_table(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[values]`` for uint8 arrays through ``bytes.translate``: a plain byte loop,
    several times faster than ``np.take``, which first widens every index to 64 bits.
    The result is read-only."""
    translated = np.ascontiguousarray(values).tobytes().translate(table.tobytes())
    return np.frombuffer(translated, dtype=np.uint8).reshape(values.shape)


def _unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    """Directions uniform in angle, by rejection from the square (no trigonometry)."""
    found = np.empty((0, 2))
    while len(found) < n:
        points = rng.random((2 * n, 2)) * 2.0 - 1.0
        radius = np.sqrt((points**2).sum(axis=1))
        keep = (radius <= 1.0) & (radius > 1e-3)
        found = np.concatenate([found, points[keep] / radius[keep, None]])
    return found[:n]


@register_style("stroke", colored_stroke,
                "the digit's stroke in the class color over a dark gray noise texture")
def stroke_pattern(n: int, rng: np.random.Generator, params: StyleParams) -> np.ndarray:
    return random_levels(rng, (n, SIZE, SIZE))


@register_style("solid", tinted_background,
                "a flat class-colored background (ReBias' Biased MNIST); the study forbids it",
                forbidden_in_study=True)
def solid_pattern(n: int, rng: np.random.Generator, params: StyleParams) -> np.ndarray:
    return np.full((n, SIZE, SIZE), 255, dtype=np.uint8)
