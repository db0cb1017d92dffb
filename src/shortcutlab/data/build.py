"""Task 0: the biased Colored-MNIST generator.

Bias semantics are exact: in every biased split each class ``c`` has exactly
``round(bias * n_c)`` images in color ``c`` and the rest in a color drawn uniformly from
the other nine (``spread="even"``: split as evenly as counts allow, as LfF's Colored MNIST
does); which images are which is shuffled by the seed. The hard split never shows a digit
in its own color. The same config and seed give byte-identical files.

Published protocols (``shortcutlab.protocols``) use the options that the study does not:
another ``palette`` (LfF's mean colors), a per-image ``color_noise`` on the class color
(LfF's severity), the ``even`` spread and a smaller ``validation`` hold-out. They are left
out of a config's identity at their defaults, so the study's dataset ids do not change.

Rendering is one table lookup per pixel: the style's shade is tabulated for every
(color, texture level, digit ink) triple (:func:`shortcutlab.data.styles.shade_table`),
the style draws its textures as uint8 levels, and each output pixel is
``table[color, level, ink]``. Each split is streamed to its ``.npz`` chunk by chunk, with
the checksumming and disk writes of one chunk overlapping the rendering of the next.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from shortcutlab.artifacts import NpzWriter, config_hash, read_json, write_json, writer_lock
from shortcutlab.data.dataset import SPLITS
from shortcutlab.data.palette import NUM_COLORS, PALETTE, PALETTES, resolve_palette
from shortcutlab.data.sources import CLASS_NAMES, SOURCES, is_source_path, source_classes
from shortcutlab.data.styles import STYLES, StyleParams, shade_direct, shade_table
from shortcutlab.errors import ShortcutlabError
from shortcutlab.progress import progress

FORMAT_VERSION = 2  # 2: table-lookup rendering, 1024-image chunks
VALIDATION_SIZE = 10000
MASK_THRESHOLD = 64  # a pixel is "digit" when the source's gray level is at least this
HARD_MODES = ("random", "inverted")
SPREADS = ("uniform", "even")
_CHUNK = 1024  # images rendered per step; fixed so the random stream does not depend on memory
_LEVELS = 256


@dataclass(frozen=True)
class BuildConfig:
    source: str = "mnist"
    bias: float = 0.95
    style: str = "noise"
    hard: str = "random"
    noise_mix: float = 0.6
    alpha: float = 1.0
    seed: int = 0
    limit: int | None = None
    palette: str = "rebias"
    color_noise: float = 0.0   # std of a per-image, per-channel offset of the class color
    spread: str = "uniform"    # how conflicting images share the other nine colors
    validation: int = VALIDATION_SIZE  # training digits held out as the val split

    def validate(self) -> None:
        """Types first (a TOML ``limit = "200"`` or a YAML ``bias: high``), then ranges."""
        kinds = {"source": (str,), "style": (str,), "hard": (str,), "palette": (str,),
                 "spread": (str,), "bias": (int, float), "noise_mix": (int, float),
                 "alpha": (int, float), "color_noise": (int, float), "seed": (int,),
                 "limit": (int, type(None)), "validation": (int,)}
        for name, allowed in kinds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, allowed):
                names = " or ".join("none" if k is type(None) else k.__name__ for k in allowed)
                raise ShortcutlabError(f"dataset setting {name} must be {names}, got {value!r}")
        if not 0.0 <= self.bias <= 1.0:
            raise ShortcutlabError(f"--bias must be in [0, 1], got {self.bias}")
        if self.style not in STYLES:
            raise ShortcutlabError(STYLES.unknown_message(self.style))
        if self.hard not in HARD_MODES:
            raise ShortcutlabError(f"unknown --hard {self.hard!r}; choose from {HARD_MODES}")
        if not 0.0 <= self.noise_mix <= 1.0:
            raise ShortcutlabError(f"--noise-mix must be in [0, 1], got {self.noise_mix}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ShortcutlabError(f"--alpha must be in [0, 1], got {self.alpha}")
        if self.limit is not None and self.limit < 1:
            raise ShortcutlabError(f"--limit must be positive, got {self.limit}")
        if self.palette not in (*PALETTES, "wheel") and not (
                self.palette.endswith(".json") and Path(self.palette).is_file()):
            raise ShortcutlabError(f"unknown --palette {self.palette!r}; choose from "
                                   f"{', '.join(PALETTES)}, wheel or a JSON file of colors")
        if self.source not in SOURCES and not is_source_path(self.source):
            raise ShortcutlabError(f"unknown --source {self.source!r}; choose one of "
                                   f"{', '.join(SOURCES)} or give the path of an .npz or IDX "
                                   "directory")
        if not 0.0 <= self.color_noise <= 0.5:
            raise ShortcutlabError(f"color_noise must be in [0, 0.5], got {self.color_noise}")
        if self.spread not in SPREADS:
            raise ShortcutlabError(f"unknown spread {self.spread!r}; choose from "
                                   f"{', '.join(SPREADS)}")
        if isinstance(self.validation, bool) or not isinstance(self.validation, int) \
                or self.validation < 1:
            raise ShortcutlabError(f"validation must be a positive number of images, got "
                                   f"{self.validation!r}")

    def to_dict(self) -> dict[str, Any]:
        """The config as stored in meta.json; the protocol options only when they differ
        from their defaults, so that the study's dataset ids stay what they were."""
        values = asdict(self)
        defaults = {f.name: f.default for f in fields(self)}
        for name in PROTOCOL_FIELDS:
            if values[name] == defaults[name]:
                del values[name]
        return values


PROTOCOL_FIELDS = ("palette", "color_noise", "spread", "validation")
"""The fields only published protocols set; out of the identity at their defaults."""


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def other_color(labels: np.ndarray, rng: np.random.Generator,
                classes: int = NUM_COLORS) -> np.ndarray:
    """A color drawn uniformly from the colors that are not the label's."""
    offset = rng.integers(1, classes, size=labels.shape[0])
    return (labels + offset) % classes


def biased_colors(labels: np.ndarray, bias: float, rng: np.random.Generator,
                  classes: int = NUM_COLORS) -> np.ndarray:
    """Exactly ``round(bias * n_c)`` images of each class ``c`` get color ``c``."""
    colors = other_color(labels, rng, classes)
    for label in range(classes):
        index = np.flatnonzero(labels == label)
        aligned = round(bias * index.size)
        colors[rng.permutation(index)[:aligned]] = label
    return colors


def even_shares(total: int, parts: int) -> np.ndarray:
    """``total`` split into ``parts`` counts as evenly as possible, by rounding the
    cumulative shares (LfF's ``make_attr_labels``): the counts differ by at most one."""
    milestones = np.rint(total * np.arange(1, parts + 1) / parts).astype(np.int64)
    return np.diff(milestones, prepend=0)


def even_colors(labels: np.ndarray, own_share: float | None, rng: np.random.Generator,
                classes: int = NUM_COLORS) -> np.ndarray:
    """Per class, ``round(own_share * n_c)`` images in the class color and the rest split
    evenly over the other nine (``own_share=None``: every color, own included, evenly);
    which image gets which color is shuffled by ``rng``."""
    colors = np.empty(labels.shape[0], dtype=np.int64)
    for label in range(classes):
        index = rng.permutation(np.flatnonzero(labels == label))
        if own_share is None:
            palette_order = np.arange(classes)
            counts = even_shares(index.size, classes)
        else:
            aligned = round(own_share * index.size)
            palette_order = np.array([label, *((label + k) % classes
                                               for k in range(1, classes))])
            counts = np.concatenate([[aligned],
                                     even_shares(index.size - aligned, classes - 1)])
        colors[index] = np.repeat(palette_order, counts)
    return colors


def hard_colors(labels: np.ndarray, mode: str, rng: np.random.Generator,
                classes: int = NUM_COLORS) -> np.ndarray:
    """No image carries its own class color: uniform over the others, or digit d -> d+1."""
    if mode == "inverted":
        return (labels + 1) % classes
    return other_color(labels, rng, classes)


def unbiased_colors(labels: np.ndarray, rng: np.random.Generator,
                    classes: int = NUM_COLORS) -> np.ndarray:
    return rng.integers(0, classes, size=labels.shape[0])


def render(gray: np.ndarray, colors: np.ndarray, style: str, params: StyleParams,
           rng: np.random.Generator, desc: str = "render", palette: tuple = PALETTE,
           color_noise: float = 0.0) -> np.ndarray:
    """Color uint8 digits (N, 28, 28) -> uint8 images (N, 28, 28, 3)."""
    out = np.empty((*gray.shape, 3), dtype=np.uint8)
    bar = progress(total=len(gray), desc=desc, unit="img", delay=1.0)  # only if it lasts
    for start, stop, images in render_chunks(gray, colors, style, params, rng, palette,
                                             color_noise):
        out[start:stop] = images
        bar.update(stop - start)
    bar.close()
    return out


def render_chunks(gray: np.ndarray, colors: np.ndarray, style: str, params: StyleParams,
                  rng: np.random.Generator, palette: tuple = PALETTE,
                  color_noise: float = 0.0) -> Iterator[tuple[int, int, np.ndarray]]:
    """Render in fixed-size chunks, each with its own generator seeded from ``rng``:
    yields ``(start, stop, images)``.

    With ``color_noise`` every image's class color is first moved by a normal offset per
    channel (std ``color_noise``, clipped to [0, 1]), as LfF's severity does; colors are
    then no longer ten, so those chunks are shaded by the style's formula instead of the
    table lookup.
    """
    pattern = STYLES.get(style).pattern
    colors = np.asarray(colors)
    if len(colors) != len(gray):
        raise ValueError(f"{len(colors)} colors for {len(gray)} digits")
    if len(colors) and (colors.min() < 0 or colors.max() >= len(palette)):
        raise ValueError(f"colors must be palette indices 0-{len(palette) - 1}")
    table = pixel_table(style, params, tuple(palette)) if not color_noise else None
    base = np.asarray(palette, dtype=np.float64) / 255.0
    chunk_seeds = rng.integers(0, 2**63 - 1, size=(len(gray) + _CHUNK - 1) // _CHUNK)
    # The patterns' matrix products are small: BLAS threads cost more than they save, and
    # on a busy machine they can spin for far longer than the product takes.
    with threadpool_limits(1, user_api="blas"):
        for chunk, start in enumerate(range(0, len(gray), _CHUNK)):
            stop = min(start + _CHUNK, len(gray))
            chunk_rng = np.random.default_rng(int(chunk_seeds[chunk]))
            levels = pattern(stop - start, chunk_rng, params)
            if table is not None:
                yield start, stop, shade_lookup(table, colors[start:stop], levels,
                                                gray[start:stop])
                continue
            offsets = chunk_rng.standard_normal((stop - start, 3)) * color_noise
            rgb = np.clip(base[colors[start:stop]] + offsets, 0.0, 1.0)
            yield start, stop, shade_direct(STYLES.get(style), rgb, levels,
                                            gray[start:stop], params)


@functools.lru_cache(maxsize=16)
def pixel_table(style: str, params: StyleParams, palette: tuple = PALETTE) -> np.ndarray:
    """The style's shade table as 4-byte entries (R, G, B, 0), one per
    (color, level, ink): numpy gathers 4-byte items several times faster than 3-byte ones."""
    rgb = shade_table(style, params, palette)
    rgbx = np.zeros((len(rgb), 4), dtype=np.uint8)
    rgbx[:, :3] = rgb
    table = rgbx.view("V4").reshape(-1)
    table.flags.writeable = False
    return table


def shade_lookup(table: np.ndarray, colors: np.ndarray, levels: np.ndarray,
                 gray: np.ndarray) -> np.ndarray:
    """``table[color, level, ink]`` for every pixel: uint8 (n, 28, 28, 3)."""
    n = len(colors)
    pixels = gray[0].size if n else 0
    # (level << 8) | ink, built as little-endian byte pairs: two byte copies, no arithmetic
    pairs = np.empty((n, pixels, 2), dtype=np.uint8)
    pairs[..., 0] = gray.reshape(n, -1)
    pairs[..., 1] = levels.reshape(n, -1)
    index = np.add(pairs.view("<u2")[..., 0], (colors.astype(np.intp) * _LEVELS**2)[:, None],
                   dtype=np.intp)
    rgbx = np.take(table, index)
    return pack_rgb(rgbx).reshape(*gray.shape, 3)


def pack_rgb(rgbx: np.ndarray) -> np.ndarray:
    """4-byte (R, G, B, x) items -> contiguous RGB bytes.

    Each 4-byte item is stored 3 bytes after the previous one, so its spare byte is
    overwritten by the next item's R: one strided copy instead of numpy's slow 3-byte
    inner loops. That relies on the copy running in address order, which
    :data:`_PACK_BY_OVERLAP` checks once at import; otherwise the plain slice is used.
    """
    count = rgbx.size
    if not _PACK_BY_OVERLAP:
        return np.ascontiguousarray(rgbx.reshape(-1).view(np.uint8).reshape(-1, 4)[:, :3])
    buffer = np.empty(count * 3 + 1, dtype=np.uint8)
    packed = np.ndarray(shape=(count,), dtype="V4", buffer=buffer, strides=(3,))
    np.copyto(packed, rgbx.reshape(-1))
    return buffer[: count * 3]


def _pack_by_overlap_works() -> bool:
    items = np.random.default_rng(0).integers(0, 256, (_CHUNK * 784 + 3, 4), dtype=np.uint8)
    buffer = np.empty(items.shape[0] * 3 + 1, dtype=np.uint8)
    packed = np.ndarray(shape=(items.shape[0],), dtype="V4", buffer=buffer, strides=(3,))
    np.copyto(packed, items.view("V4").reshape(-1))
    return bool(np.array_equal(buffer[:-1].reshape(-1, 3), items[:, :3]))


_PACK_BY_OVERLAP = _pack_by_overlap_works()


def _split_sources(source: dict[str, np.ndarray], limit: int | None,
                   validation: int = VALIDATION_SIZE) -> dict[str, tuple]:
    train_x, train_y = source["train_images"], source["train_labels"]
    test_x, test_y = source["test_images"], source["test_labels"]
    val_size = max(1, min(validation, len(train_x) // 6))
    cut = len(train_x) - val_size
    parts = {
        "train": (train_x[:cut], train_y[:cut]),
        "val": (train_x[cut:], train_y[cut:]),
    }
    for split in ("test_easy", "test_hard", "test_unbiased"):
        parts[split] = (test_x, test_y)
    if limit is not None:
        parts = {name: (x[:limit], y[:limit]) for name, (x, y) in parts.items()}
    return parts


def _colors_for(split: str, labels: np.ndarray, config: BuildConfig,
                rng: np.random.Generator, classes: int = NUM_COLORS) -> np.ndarray:
    if config.spread == "even":
        if split == "test_hard":
            return hard_colors(labels, "inverted", rng, classes) \
                if config.hard == "inverted" else even_colors(labels, 0.0, rng, classes)
        return even_colors(labels, None if split == "test_unbiased" else config.bias, rng,
                           classes)
    if split == "test_hard":
        return hard_colors(labels, config.hard, rng, classes)
    if split == "test_unbiased":
        return unbiased_colors(labels, rng, classes)
    return biased_colors(labels, config.bias, rng, classes)


@dataclass(frozen=True)
class SplitPlan:
    """Everything a split is made of before it is rendered."""

    name: str
    gray: np.ndarray      # uint8 (N, 28, 28) source digits
    labels: np.ndarray    # int64 (N,)
    colors: np.ndarray    # int64 (N,) palette index
    render_rng: np.random.Generator

    @property
    def masks(self) -> np.ndarray:
        return self.gray >= MASK_THRESHOLD


def plan_splits(source: dict[str, np.ndarray], config: BuildConfig) -> list[SplitPlan]:
    """Labels and colors of every split; each split has its own seeded streams, so one
    split's draws never depend on another's size."""
    config.validate()
    plans = []
    classes = source_classes(source)
    parts = _split_sources(source, config.limit, config.validation)
    for index, (split, (gray, labels)) in enumerate(parts.items()):
        labels = labels.astype(np.int64)
        colors = _colors_for(split, labels, config, _rng(config.seed, index, 0),
                             classes).astype(np.int64)
        plans.append(SplitPlan(split, gray, labels, colors, _rng(config.seed, index, 1)))
    return plans


def style_params(config: BuildConfig) -> StyleParams:
    return StyleParams(noise_mix=config.noise_mix, alpha=config.alpha)


def build_arrays(source: dict[str, np.ndarray], config: BuildConfig) -> dict[str, dict]:
    """Build every split in memory: ``{split: {images, labels, colors, masks}}``."""
    params = style_params(config)
    palette, _ = resolve_palette(config.palette, source_classes(source))
    return {
        plan.name: {
            "images": render(plan.gray, plan.colors, config.style, params, plan.render_rng,
                             plan.name, palette, config.color_noise),
            "labels": plan.labels,
            "colors": plan.colors,
            "masks": plan.masks,
        }
        for plan in plan_splits(source, config)
    }


def write_split(path: Path, plan: SplitPlan, style: str, params: StyleParams,
                on_chunk: Any = None, palette: tuple = PALETTE, color_noise: float = 0.0
                ) -> str:
    """Render ``plan`` straight into ``path`` (arrays in name order); return its sha256."""
    n = len(plan.labels)
    with NpzWriter(path, background=True) as npz:
        npz.add("colors", plan.colors)
        with npz.stream("images", np.uint8, (n, *plan.gray.shape[1:], 3)) as images:
            for start, stop, block in render_chunks(plan.gray, plan.colors, style, params,
                                                    plan.render_rng, palette, color_noise):
                images.write(block)
                if on_chunk is not None:
                    on_chunk(stop - start)
        npz.add("labels", plan.labels)
        npz.add("masks", plan.masks)
    assert npz.sha256 is not None
    return npz.sha256


def counts_table(labels: np.ndarray, colors: np.ndarray,
                 classes: int = NUM_COLORS) -> list[list[int]]:
    """counts[label][color]."""
    table = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(table, (labels, colors), 1)
    return table.tolist()


def source_checksum(source: dict[str, np.ndarray]) -> str:
    """sha256 of the source arrays' bytes, in key order (hashed in place, not joined)."""
    digest = hashlib.sha256()
    for key in sorted(source):
        digest.update(memoryview(np.ascontiguousarray(source[key])).cast("B"))
    return digest.hexdigest()


def build_dataset(config: BuildConfig, out_dir: str | os.PathLike,
                  source: dict[str, np.ndarray], force: bool = False) -> dict[str, Any]:
    """Build, write and describe a dataset; return its ``meta.json`` content.

    One builder at a time per directory (:func:`shortcutlab.artifacts.writer_lock`): a
    second one is refused with the process that holds it.

    Rebuilding the same config into the same directory is a no-op when the files are
    intact; a directory holding a different dataset is only overwritten with ``force``.
    """
    config.validate()
    with writer_lock(out_dir):
        return _build_dataset(config, Path(out_dir), source, force)


def _build_dataset(config: BuildConfig, out_dir: Path, source: dict[str, np.ndarray],
                   force: bool) -> dict[str, Any]:
    identity = {"config": config.to_dict(), "source_sha256": source_checksum(source),
                "format_version": FORMAT_VERSION}
    dataset_id = config_hash(identity)
    meta_path = out_dir / "meta.json"
    if meta_path.exists():
        existing = read_json(meta_path)
        if existing.get("dataset_id") == dataset_id:
            if _files_intact(out_dir, existing):
                return existing
            force = True  # this very dataset with a damaged file: rebuild it in place
        elif not force:
            raise ShortcutlabError(
                f"{out_dir} already holds a different dataset (id {existing.get('dataset_id')}); "
                "choose another --out or pass --force to overwrite it"
            )
    elif out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise ShortcutlabError(f"{out_dir} is not empty; choose another --out or pass --force")
    if force and meta_path.exists():
        meta_path.unlink()  # the directory is inconsistent until the new meta lands

    params = style_params(config)
    plans = plan_splits(source, config)
    classes = source_classes(source)
    palette, color_names = resolve_palette(config.palette, classes)
    files, counts, sizes = {}, {}, {}
    bar = progress(total=sum(len(plan.labels) for plan in plans), desc="build", unit="img")
    for plan in plans:
        bar.set_postfix_str(plan.name)
        digest = write_split(out_dir / f"{plan.name}.npz", plan, config.style, params,
                             bar.update, palette, config.color_noise)
        files[f"{plan.name}.npz"] = {"sha256": digest}
        counts[plan.name] = counts_table(plan.labels, plan.colors, classes)
        sizes[plan.name] = len(plan.labels)
    bar.close()
    meta = {
        **identity,
        "dataset_id": dataset_id,
        "palette": [list(color) for color in palette],
        "color_names": list(color_names),
        "class_names": list(CLASS_NAMES.get(config.source, [str(c) for c in range(classes)])),
        "classes": classes,
        "mask_threshold": MASK_THRESHOLD,
        "splits": list(SPLITS),
        "sizes": sizes,
        "counts": counts,
        "files": files,
    }
    write_json(meta_path, meta)
    return meta


def _files_intact(out_dir: Path, meta: dict[str, Any]) -> bool:
    from shortcutlab.artifacts import sha256_file

    for name, info in meta.get("files", {}).items():
        path = out_dir / name
        if not path.is_file() or sha256_file(path) != info.get("sha256"):
            return False
    return True


def remove_dataset(out_dir: str | os.PathLike) -> None:
    shutil.rmtree(out_dir, ignore_errors=True)
