"""Progress bars for long work; quiet when ``SHORTCUTLAB_PROGRESS=0`` (tests, logs)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress_enabled() -> bool:
    return os.environ.get("SHORTCUTLAB_PROGRESS", "1") not in ("0", "false", "no")


def progress(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar that respects ``SHORTCUTLAB_PROGRESS`` and keeps finished bars off screen."""
    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
