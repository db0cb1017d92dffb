"""Re-render a built split's digits in chosen colors, with the dataset's own style.

Analyses such as the color-swap test ("feed it a red 1: does it predict 0?") need the
same digits in other colors. The grayscale digits come from the dataset's source, so the
result matches how the dataset itself was rendered. An imported dataset
(``shortcutlab data import``) has no source to render from: :func:`renderable` says so,
and :func:`split_digits` refuses it with the reason.
"""

from __future__ import annotations

import os

import numpy as np

from shortcutlab.data.build import BuildConfig, _split_sources, render
from shortcutlab.data.dataset import load_meta
from shortcutlab.data.palette import PALETTES
from shortcutlab.data.sources import SOURCES, is_source_path, load_source
from shortcutlab.data.styles import StyleParams
from shortcutlab.errors import ShortcutlabError


def render_problem(data_dir: str | os.PathLike) -> str | None:
    """Why the dataset's digits cannot be rendered again in other colors, or None."""
    meta = load_meta(data_dir)
    source = meta.get("config", {}).get("source")
    if meta.get("renderable", True) is False or not isinstance(source, str):
        return (f"{data_dir} was imported, not generated, so its images cannot be rendered "
                "again in other colors")
    if source not in SOURCES and not (is_source_path(source) and os.path.exists(source)):
        return (f"{data_dir} was built from {source}, which is no longer there, so its "
                "images cannot be rendered again in other colors; put the source back")
    return None


def renderable(data_dir: str | os.PathLike) -> bool:
    """Whether the dataset was made by the generator from a source it can render again."""
    return render_problem(data_dir) is None


def split_digits(data_dir: str | os.PathLike, split: str) -> np.ndarray:
    """The grayscale uint8 digits (N, 28, 28) that ``split`` was rendered from."""
    problem = render_problem(data_dir)
    if problem is not None:
        raise ShortcutlabError(f"{problem}; this analysis (recolored digits) needs a dataset "
                               "made by `shortcutlab data build` from a source at hand")
    config = BuildConfig(**load_meta(data_dir)["config"])
    parts = _split_sources(load_source(config.source, limit=config.limit), config.limit,
                           config.validation)
    if split not in parts:
        raise ShortcutlabError(f"unknown split {split!r}; choose one of {', '.join(parts)}")
    return parts[split][0]


def recolor(data_dir: str | os.PathLike, digits: np.ndarray, colors: np.ndarray,
            seed: int = 0) -> np.ndarray:
    """Render grayscale ``digits`` in palette ``colors`` the way ``data_dir`` was rendered."""
    return render_like(load_meta(data_dir), digits, colors, seed)


def render_like(meta: dict, digits: np.ndarray, colors: np.ndarray, seed: int = 0,
                style: str | None = None) -> np.ndarray:
    """Render ``digits`` in palette ``colors`` as the dataset of ``meta`` (its meta.json)
    renders them, in its own style or ``style``; ``seed`` picks the textures."""
    config = BuildConfig(**meta["config"])
    params = StyleParams(noise_mix=config.noise_mix, alpha=config.alpha)
    recorded = meta.get("palette")  # older datasets: the named palette's colors
    palette = tuple(tuple(color) for color in recorded) if recorded else \
        PALETTES[config.palette]
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, seed, 99]))
    return render(digits, np.asarray(colors, dtype=np.int64), style or config.style, params,
                  rng, "recolor", palette, config.color_noise)
