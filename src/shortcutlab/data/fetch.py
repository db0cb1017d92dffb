"""Getting the real grayscale sources (MNIST, Fashion-MNIST) into the local cache.

The cache lives in ``$SHORTCUTLAB_CACHE`` (default ``~/.cache/shortcutlab``); each source
is stored once as ``sources/NAME.npz`` (the official uint8 arrays) with ``NAME.json``
recording its sha256 and where it came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from shortcutlab.artifacts import load_npz, read_json, save_npz, write_json
from shortcutlab.errors import ShortcutlabError

SOURCE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def cache_dir() -> Path:
    return Path(os.environ.get("SHORTCUTLAB_CACHE", Path.home() / ".cache" / "shortcutlab"))


def cached_source_path(name: str) -> Path:
    return cache_dir() / "sources" / f"{name}.npz"


def store_source(name: str, arrays: dict[str, np.ndarray], origin: dict[str, Any]) -> Path:
    """Write a source into the cache (atomically) with its checksum and origin."""
    path = cached_source_path(name)
    digest = save_npz(path, **{key: arrays[key] for key in SOURCE_KEYS})
    write_json(path.with_suffix(".json"), {"name": name, "sha256": digest, "origin": origin})
    return path


def load_cached(name: str) -> dict[str, np.ndarray] | None:
    """The cached source, checksum-verified, or None when it is not cached."""
    path = cached_source_path(name)
    info_path = path.with_suffix(".json")
    if not path.is_file() or not info_path.is_file():
        return None
    return load_npz(path, expected_sha256=read_json(info_path)["sha256"])


def load_cached_or_fetch(name: str) -> dict[str, np.ndarray]:
    cached = load_cached(name)
    if cached is not None:
        return cached
    raise ShortcutlabError(f"{name} is not in the cache ({cache_dir()}) and cannot be fetched yet")
