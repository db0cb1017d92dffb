"""The dataset a benchmark uses when it is given none: the synthetic source, built once
into a temporary directory (no MNIST download, the same bytes on every machine)."""

from __future__ import annotations

import os
from pathlib import Path


def dataset_or_synthetic(data: str | None, tmp: str, limit: int | None = None) -> str:
    """``data`` when given, else a synthetic dataset (``limit`` source images per split,
    all by default) built under ``tmp``."""
    if data is not None:
        return data
    from shortcutlab.data import BuildConfig, build_dataset, load_source

    out = str(Path(tmp) / "data")
    os.environ["SHORTCUTLAB_PROGRESS"] = "0"
    build_dataset(BuildConfig(source="synthetic", limit=limit), out,
                  load_source("synthetic", limit=limit))
    return out
