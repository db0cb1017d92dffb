"""Every style: shapes and ranges, the table lookup equal to the plain formula, what
--noise-mix and --alpha mean, that the class color is recognizable in every image, and
that a new module in the backgrounds package is a new style."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from shortcutlab.data import PALETTE, load_meta, load_source, load_split
from shortcutlab.data.backgrounds import BUILT_IN, module_names
from shortcutlab.data.backgrounds.perlin import _PERLIN_OCTAVES, _PERLIN_X, _PERLIN_Y, perlin_noise
from shortcutlab.data.build import render
from shortcutlab.data.styles import (
    STROKE_BACKGROUND,
    STYLES,
    StyleParams,
    apply_byte_table,
    shade_direct,
    shade_table,
)

N = 60


@pytest.fixture(scope="module")
def digits():
    source = load_source("synthetic", limit=N)
    return source["test_images"][:N], source["test_labels"][:N]


def _render(digits, style, colors=None, **params):
    gray, labels = digits
    colors = labels if colors is None else colors
    return render(gray, colors, style, StyleParams(**params), np.random.default_rng(0))


@pytest.mark.parametrize("style", sorted(STYLES))
def test_patterns_are_uint8_textures(style):
    levels = STYLES[style].pattern(7, np.random.default_rng(1), StyleParams())
    assert levels.dtype == np.uint8 and levels.shape == (7, 28, 28)
    again = STYLES[style].pattern(7, np.random.default_rng(1), StyleParams())
    np.testing.assert_array_equal(levels, again)
    if not STYLES[style].forbidden_in_study:  # the flat ones reproduce published data
        assert levels.std() > 20  # a texture, not a flat fill
        assert levels.min() < 60 and levels.max() > 195
        other = STYLES[style].pattern(7, np.random.default_rng(2), StyleParams())
        assert not np.array_equal(levels, other)


@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize("params", [StyleParams(), StyleParams(noise_mix=0.25, alpha=0.6)])
def test_table_lookup_equals_the_plain_formula(digits, style, params):
    gray, labels = digits
    rng = np.random.default_rng(5)
    images = render(gray, labels, style, params, rng)
    assert images.dtype == np.uint8 and images.shape == (N, 28, 28, 3)
    # render draws one seed per chunk from the generator it is given
    chunk_rng = np.random.default_rng(int(np.random.default_rng(5).integers(0, 2**63 - 1)))
    levels = STYLES[style].pattern(N, chunk_rng, params)
    rgb = np.asarray(PALETTE, dtype=np.float64)[labels] / 255
    np.testing.assert_array_equal(images, shade_direct(STYLES[style], rgb, levels, gray, params))


@pytest.mark.parametrize("style", sorted(STYLES))
def test_the_class_color_is_recognizable(digits, style):
    """The palette color nearest to each image's colored pixels is its own color."""
    gray, _ = digits
    colors = np.arange(N) % 10
    images = _render(digits, style, colors).astype(np.float64)
    palette = np.asarray(PALETTE, dtype=np.float64)
    # stroke vs background pixels
    where = gray > 200 if style in ("stroke", "lff") else gray == 0
    for image, region, color in zip(images, where, colors, strict=True):
        mean = image[region].mean(axis=0)
        # compare hue, not brightness: textures darken the color on purpose
        direction = mean / max(np.linalg.norm(mean), 1e-9)
        similarity = palette @ direction / np.linalg.norm(palette, axis=1)
        assert np.argmax(similarity) == color


@pytest.mark.parametrize("style", ["noise", "smooth", "perlin", "stripes", "solid"])
def test_white_digit_over_the_colored_background(digits, style):
    gray, labels = digits
    images = _render(digits, style)
    assert np.all(images[gray == 255] == 255)  # full ink, alpha 1: white
    if style == "solid":
        background = images[gray == 0]
        np.testing.assert_array_equal(background, np.asarray(PALETTE)[
            np.broadcast_to(labels[:, None, None], gray.shape)[gray == 0]])


def test_stroke_colors_the_digit_over_a_dark_gray_texture(digits):
    gray, labels = digits
    images = _render(digits, "stroke")
    background = images[gray == 0].astype(int)
    assert np.all(background[:, 0] == background[:, 1])  # gray: no color in the background
    assert np.all(background[:, 1] == background[:, 2])
    assert background.max() <= round(255 * STROKE_BACKGROUND) and background.std() > 5
    full = np.broadcast_to(labels[:, None, None], gray.shape)[gray == 255]
    np.testing.assert_array_equal(images[gray == 255], np.asarray(PALETTE)[full])


def test_noise_mix_is_the_share_of_texture(digits):
    gray, labels = digits
    flat = _render(digits, "noise", noise_mix=0.0)
    expected = np.asarray(PALETTE)[np.broadcast_to(labels[:, None, None], gray.shape)[gray == 0]]
    np.testing.assert_array_equal(flat[gray == 0], expected)  # 0: flat color
    peak = expected.max(axis=1)  # each pixel's class color at full brightness
    full = _render(digits, "noise", noise_mix=1.0)[gray == 0].max(axis=1) / peak
    half = _render(digits, "noise", noise_mix=0.5)[gray == 0].max(axis=1) / peak
    assert full.min() < 0.02 and full.max() > 0.98  # 1: from black to the full color
    assert half.min() > 0.49 and half.max() > 0.98   # 0.5: from half to the full color


def test_alpha_is_the_opacity_of_the_digit(digits):
    gray, _ = digits
    invisible = _render(digits, "solid", alpha=0.0)
    background_only = _render(digits, "solid", noise_mix=0.0, alpha=0.0)
    np.testing.assert_array_equal(invisible, background_only)
    half = _render(digits, "solid", alpha=0.5)[gray == 255].astype(int)
    opaque = _render(digits, "solid", alpha=1.0)[gray == 255].astype(int)
    background = invisible[gray == 255].astype(int)
    np.testing.assert_allclose(half, (opaque + background) / 2, atol=1)


def test_shade_table_covers_every_color_level_and_ink():
    table = shade_table("noise", StyleParams(), PALETTE)
    assert table.shape == (10 * 256 * 256, 3) and table.dtype == np.uint8
    view = table.reshape(10, 256, 256, 3)
    np.testing.assert_array_equal(view[:, 255, 0], np.asarray(PALETTE))  # brightest, no ink
    assert np.all(view[:, :, 255] == 255)  # full ink: white


def test_perlin_factorization_matches_the_textbook_sum():
    """W Gx D.T + D Gy W.T (the batched product form) equals the corner-by-corner sum,
    bit for bit."""
    rng = np.random.default_rng(3)
    n = 3
    index = [rng.integers(0, 256, (cells + 1, n, cells + 1), dtype=np.uint8)
             for cells, _ in _PERLIN_OCTAVES]
    fast = perlin_noise(index).transpose(1, 0, 2).astype(np.float64)
    gradients = np.array([(1, 1), (-1, 1), (1, -1), (-1, -1), (1, 0), (-1, 0), (0, 1),
                          (0, -1)], dtype=np.float64)
    slow = np.zeros((n, 28, 28))
    column = 0
    for (cells, _amplitude), choice in zip(_PERLIN_OCTAVES, index, strict=True):
        size = cells + 1
        w_y, d_y = _PERLIN_Y[:, column:column + size], _PERLIN_Y[:, column + size:column + 2 * size]
        d_x, w_x = _PERLIN_X[:, column:column + size], _PERLIN_X[:, column + size:column + 2 * size]
        column += 2 * size
        g = gradients[choice & 7]                         # (row, image, col, 2)
        for img in range(n):
            for y in range(28):
                for x in range(28):
                    for row in range(size):
                        for col in range(size):
                            gx, gy = g[row, img, col]
                            slow[img, y, x] += (w_y[y, row] * d_x[x, col] * gx
                                                + d_y[y, row] * w_x[x, col] * gy)
    np.testing.assert_array_equal(fast, slow + 128)  # exact: no rounding anywhere


def test_byte_table_equals_take():
    values = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    table = np.random.default_rng(1).integers(0, 256, 256, dtype=np.uint8)
    np.testing.assert_array_equal(apply_byte_table(values, table), np.take(table, values))


def test_the_built_in_styles_keep_their_order():
    """The order of --help, ``data styles`` and error messages."""
    order = ["noise", "smooth", "perlin", "stripes", "stroke", "solid", "lff", "rebias"]
    assert list(BUILT_IN) == order
    assert module_names() == order
    assert list(STYLES) == order


# A style as a user adds one: one file in the backgrounds package. This one is dark in the
# top half and bright in the bottom half, which shows in the images.
HALVES = textwrap.dedent("""
    import numpy as np

    from shortcutlab.data.styles import SIZE, StyleParams, register_style, tinted_background


    @register_style("halves", tinted_background, "dark top, bright bottom (a test style)")
    def halves_pattern(n: int, rng: np.random.Generator, params: StyleParams) -> np.ndarray:
        levels = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
        levels[:, SIZE // 2:] = 255
        return levels
""")

BUILD_WITH_EXTRA_FOLDER = textwrap.dedent("""
    import sys

    from shortcutlab.data import backgrounds

    backgrounds.__path__.append(sys.argv[1])  # as if its files were in the package

    from shortcutlab.data import STYLES, BuildConfig, build_dataset, load_source

    print(",".join(STYLES))
    source = load_source("synthetic", limit=30)
    for name, style in [("first", "halves"), ("again", "halves"), ("noise", "noise")]:
        config = BuildConfig(source="synthetic", limit=30, style=style)
        build_dataset(config, f"{sys.argv[2]}/{name}", source)
""")


def test_a_new_module_in_backgrounds_is_a_new_style(tmp_path):
    """Dropping a file into the package is all it takes: the registry finds it on its
    first lookup (in a fresh interpreter, as a user's would), after the built-in styles
    and in name order; private modules are skipped; a dataset builds with it, the same
    bytes twice, with the labels and colors of every other style."""
    folder = tmp_path / "more_backgrounds"
    folder.mkdir()
    (folder / "halves.py").write_text(HALVES)
    (folder / "checks.py").write_text(HALVES.replace('"halves"', '"checks"'))
    (folder / "_helpers.py").write_text("raise ImportError('a private module is not a style')")
    out = tmp_path / "dataset"
    paths = [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "SHORTCUTLAB_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    done = subprocess.run([sys.executable, "-c", BUILD_WITH_EXTRA_FOLDER, str(folder), str(out)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [",".join([*BUILT_IN, "checks", "halves"])]

    meta, again, noise = (load_meta(out / name) for name in ("first", "again", "noise"))
    assert meta["config"]["style"] == "halves"
    assert meta["files"] == again["files"]                    # deterministic
    assert meta["counts"] == noise["counts"]                  # the same bias counts
    split, reference = load_split(out / "first", "train"), load_split(out / "noise", "train")
    np.testing.assert_array_equal(split.colors, reference.colors)
    np.testing.assert_array_equal(split.labels, reference.labels)
    palette = np.asarray(PALETTE, dtype=np.float64)[split.colors]
    top = split.images[:, :3].reshape(len(split), -1, 3)        # no ink in the top rows
    bottom = split.images[:, -3:].reshape(len(split), -1, 3)    # nor in the bottom ones
    np.testing.assert_array_equal(top, np.broadcast_to(
        np.rint(palette * 0.4)[:, None], top.shape))            # 1 - noise_mix
    np.testing.assert_array_equal(bottom, np.broadcast_to(palette[:, None], bottom.shape))
