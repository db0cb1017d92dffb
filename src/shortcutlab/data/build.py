"""Task 0: the biased Colored-MNIST generator.

Bias semantics are exact: in every biased split each class ``c`` has exactly
``round(bias * n_c)`` images in color ``c`` and the rest in a color drawn uniformly from
the other nine; which images are which is shuffled by the seed. The hard split never
shows a digit in its own color. The same config and seed give byte-identical files.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shortcutlab.artifacts import config_hash, read_json, save_npz, sha256_bytes, write_json
from shortcutlab.data.dataset import SPLITS
from shortcutlab.data.palette import COLOR_NAMES, NUM_COLORS, PALETTE, palette_array
from shortcutlab.data.styles import STYLES, StyleParams
from shortcutlab.errors import ShortcutlabError
from shortcutlab.progress import progress

FORMAT_VERSION = 1
VALIDATION_SIZE = 10000
MASK_THRESHOLD = 64  # a pixel is "digit" when the source's gray level is at least this
HARD_MODES = ("random", "inverted")
_CHUNK = 5000  # images rendered per step; fixed so the random stream does not depend on memory


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

    def validate(self) -> None:
        if not 0.0 <= self.bias <= 1.0:
            raise ShortcutlabError(f"--bias must be in [0, 1], got {self.bias}")
        if self.style not in STYLES:
            raise ShortcutlabError(f"unknown --style {self.style!r}; choose from {sorted(STYLES)}")
        if self.hard not in HARD_MODES:
            raise ShortcutlabError(f"unknown --hard {self.hard!r}; choose from {HARD_MODES}")
        if not 0.0 <= self.noise_mix <= 1.0:
            raise ShortcutlabError(f"--noise-mix must be in [0, 1], got {self.noise_mix}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ShortcutlabError(f"--alpha must be in [0, 1], got {self.alpha}")
        if self.limit is not None and self.limit < 1:
            raise ShortcutlabError(f"--limit must be positive, got {self.limit}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def other_color(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A color drawn uniformly from the nine colors that are not the label's."""
    offset = rng.integers(1, NUM_COLORS, size=labels.shape[0])
    return (labels + offset) % NUM_COLORS


def biased_colors(labels: np.ndarray, bias: float, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``round(bias * n_c)`` images of each class ``c`` get color ``c``."""
    colors = other_color(labels, rng)
    for label in range(NUM_COLORS):
        index = np.flatnonzero(labels == label)
        aligned = round(bias * index.size)
        colors[rng.permutation(index)[:aligned]] = label
    return colors


def hard_colors(labels: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    """No image carries its own class color: uniform over the other nine, or digit d -> d+1."""
    if mode == "inverted":
        return (labels + 1) % NUM_COLORS
    return other_color(labels, rng)


def unbiased_colors(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, NUM_COLORS, size=labels.shape[0])


def render(gray: np.ndarray, colors: np.ndarray, style: str, params: StyleParams,
           rng: np.random.Generator, desc: str = "render") -> np.ndarray:
    """Color uint8 digits (N, 28, 28) -> uint8 images (N, 28, 28, 3), in fixed-size chunks."""
    rgb_table = palette_array(np.float32)
    style_fn = STYLES[style]
    out = np.empty((*gray.shape, 3), dtype=np.uint8)
    chunk_seeds = rng.integers(0, 2**63 - 1, size=(len(gray) + _CHUNK - 1) // _CHUNK)
    for chunk, start in enumerate(progress(range(0, len(gray), _CHUNK), desc=desc, unit="chunk")):
        stop = min(start + _CHUNK, len(gray))
        chunk_rng = np.random.default_rng(int(chunk_seeds[chunk]))
        digits = gray[start:stop].astype(np.float32) / 255.0
        image = style_fn(digits, rgb_table[colors[start:stop]], chunk_rng, params)
        out[start:stop] = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return out


def _split_sources(source: dict[str, np.ndarray], limit: int | None) -> dict[str, tuple]:
    train_x, train_y = source["train_images"], source["train_labels"]
    test_x, test_y = source["test_images"], source["test_labels"]
    val_size = min(VALIDATION_SIZE, len(train_x) // 6)
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
                rng: np.random.Generator) -> np.ndarray:
    if split == "test_hard":
        return hard_colors(labels, config.hard, rng)
    if split == "test_unbiased":
        return unbiased_colors(labels, rng)
    return biased_colors(labels, config.bias, rng)


def build_arrays(source: dict[str, np.ndarray], config: BuildConfig) -> dict[str, dict]:
    """Build every split in memory: ``{split: {images, labels, colors, masks}}``."""
    config.validate()
    params = StyleParams(noise_mix=config.noise_mix, alpha=config.alpha)
    splits = {}
    for index, (split, (gray, labels)) in enumerate(_split_sources(source, config.limit).items()):
        labels = labels.astype(np.int64)
        colors = _colors_for(split, labels, config, _rng(config.seed, index, 0)).astype(np.int64)
        images = render(gray, colors, config.style, params, _rng(config.seed, index, 1), split)
        splits[split] = {
            "images": images,
            "labels": labels,
            "colors": colors,
            "masks": gray >= MASK_THRESHOLD,
        }
    return splits


def counts_table(labels: np.ndarray, colors: np.ndarray) -> list[list[int]]:
    """counts[label][color]."""
    table = np.zeros((NUM_COLORS, NUM_COLORS), dtype=np.int64)
    np.add.at(table, (labels, colors), 1)
    return table.tolist()


def source_checksum(source: dict[str, np.ndarray]) -> str:
    parts = b"".join(np.ascontiguousarray(source[key]).tobytes() for key in sorted(source))
    return sha256_bytes(parts)


def build_dataset(config: BuildConfig, out_dir: str | os.PathLike,
                  source: dict[str, np.ndarray], force: bool = False) -> dict[str, Any]:
    """Build, write and describe a dataset; return its ``meta.json`` content.

    Rebuilding the same config into the same directory is a no-op when the files are
    intact; a directory holding a different dataset is only overwritten with ``force``.
    """
    config.validate()
    out_dir = Path(out_dir)
    identity = {"config": config.to_dict(), "source_sha256": source_checksum(source),
                "format_version": FORMAT_VERSION}
    dataset_id = config_hash(identity)
    meta_path = out_dir / "meta.json"
    if meta_path.exists():
        existing = read_json(meta_path)
        if existing.get("dataset_id") == dataset_id and _files_intact(out_dir, existing):
            return existing
        if not force:
            raise ShortcutlabError(
                f"{out_dir} already holds a different dataset (id {existing.get('dataset_id')}); "
                "choose another --out or pass --force to overwrite it"
            )
    elif out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise ShortcutlabError(f"{out_dir} is not empty; choose another --out or pass --force")
    if force and meta_path.exists():
        meta_path.unlink()  # the directory is inconsistent until the new meta lands

    splits = build_arrays(source, config)
    files, counts, sizes = {}, {}, {}
    for split in SPLITS:
        arrays = splits[split]
        files[f"{split}.npz"] = {"sha256": save_npz(out_dir / f"{split}.npz", **arrays)}
        counts[split] = counts_table(arrays["labels"], arrays["colors"])
        sizes[split] = len(arrays["labels"])
    meta = {
        **identity,
        "dataset_id": dataset_id,
        "palette": [list(color) for color in PALETTE],
        "color_names": list(COLOR_NAMES),
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
