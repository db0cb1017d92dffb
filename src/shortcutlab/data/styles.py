"""Ways of putting a class color into an image: the dataset's *styles*, their framework.

This module defines what a style is (:class:`Style`, :class:`StyleParams`), the
:data:`STYLES` registry and its :func:`register_style` decorator, the shades, the shade
tables that rendering reads, and helpers for writing patterns (:func:`random_levels`,
:func:`lattice_weights`, :func:`apply_byte_table`). The styles themselves live in
:mod:`shortcutlab.data.backgrounds`, one module each; :data:`STYLES` imports every module
of that package before its first lookup, so a new style is one new file there.

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

from shortcutlab.data.backgrounds import BUILT_IN, load_backgrounds
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


# The order of --help, ``data styles`` and error messages: the built-in styles, then any
# other style in registration order (the backgrounds package imports the other modules in
# name order).
STYLES: Registry[Style] = Registry("style", loader=load_backgrounds, order=BUILT_IN)


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

WEIGHT_UNIT = 256  # lattice_weights' interpolation weights are integers in units of 1/256


def random_levels(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform uint8 levels straight from the bit generator's 64-bit words (eight levels
    per draw), read little-endian so every platform gets the same bytes."""
    count = int(np.prod(shape))
    words = rng.bit_generator.random_raw((count + 7) // 8)
    return np.asarray(words, dtype="<u8").view(np.uint8)[:count].reshape(shape)


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic fade: 0 at 0, 1 at 1, flat first and second derivatives at both."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def lattice_weights(cells: int) -> tuple[np.ndarray, np.ndarray]:
    """For ``cells`` lattice cells across the image: the fade weight of each lattice line
    for each pixel, W (28, cells+1), and that weight times the pixel's offset from the
    line, D (28, cells+1); integers in units of 1/256. A 2-D lattice sum factors into
    these 1-D tables."""
    t = (np.arange(SIZE) + 0.5) / SIZE * cells
    cell = np.floor(t).astype(int)
    f = t - cell
    near = np.rint(WEIGHT_UNIT * (1 - _fade(f)))
    weights = np.zeros((SIZE, cells + 1))
    offsets = np.zeros((SIZE, cells + 1))
    rows = np.arange(SIZE)
    weights[rows, cell], weights[rows, cell + 1] = near, WEIGHT_UNIT - near  # rows sum to 1
    offsets[rows, cell] = np.rint(near * f)
    offsets[rows, cell + 1] = np.rint((WEIGHT_UNIT - near) * (f - 1))
    return weights, offsets


def apply_byte_table(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[values]`` for uint8 arrays through ``bytes.translate``: a plain byte loop,
    several times faster than ``np.take``, which first widens every index to 64 bits.
    The result is read-only."""
    translated = np.ascontiguousarray(values).tobytes().translate(table.tobytes())
    return np.frombuffer(translated, dtype=np.uint8).reshape(values.shape)
