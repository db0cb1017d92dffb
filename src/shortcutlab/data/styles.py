"""Ways of putting a class color into an image, each a small pure function over a batch.

A style maps ``gray`` float32 (B, 28, 28) in [0, 1] (the digit), ``rgb`` float32 (B, 3)
in [0, 1] (each image's color) and a numpy ``Generator`` to float32 (B, 28, 28, 3) in
[0, 1]. Styles draw all randomness from the generator they are given, so a build is
reproducible, and they must not paint a flat solid background (except ``solid``, kept
to reproduce published benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

StyleFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class StyleParams:
    noise_mix: float = 0.6  # share of noise (vs flat color) in the background
    alpha: float = 1.0      # how strongly the white digit is laid over the background


STYLES: dict[str, StyleFn] = {}


def register_style(name: str) -> Callable[[StyleFn], StyleFn]:
    def decorator(fn: StyleFn) -> StyleFn:
        STYLES[name] = fn
        return fn
    return decorator


def overlay_digit(background: np.ndarray, gray: np.ndarray, alpha: float) -> np.ndarray:
    """Lay a white digit over a background with strength ``alpha``."""
    weight = (alpha * gray)[..., None]
    return background * (1.0 - weight) + weight


@register_style("noise")
def noise_style(gray: np.ndarray, rgb: np.ndarray, rng: np.random.Generator,
                params: StyleParams) -> np.ndarray:
    """High-frequency color-tinted noise: per-pixel brightness noise times the class color."""
    noise = rng.random(gray.shape, dtype=np.float32)[..., None]
    brightness = (1.0 - params.noise_mix) + params.noise_mix * noise
    background = brightness * rgb[:, None, None, :]
    return overlay_digit(background, gray, params.alpha)
