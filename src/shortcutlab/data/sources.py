"""Grayscale digit sources the generator colors: MNIST, Fashion-MNIST and a synthetic one.

Every source returns the same layout: ``train_images`` uint8 (N, 28, 28), ``train_labels``
int64 (N,), ``test_images``, ``test_labels``.
"""

from __future__ import annotations

import numpy as np

from shortcutlab.errors import ShortcutlabError

SOURCES = ("mnist", "fashion-mnist", "synthetic")
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "synthetic": tuple(str(digit) for digit in range(10)),
    # Fashion-MNIST's own label names (Xiao et al. 2017), lower case for running text
    "fashion-mnist": ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                      "sneaker", "bag", "ankle boot"),
}
"""What each source calls its classes: captions and reports name them ("sneaker", not 7)."""


def load_source(name: str, limit: int | None = None) -> dict[str, np.ndarray]:
    """Load a source from the cache (fetching real data on first use)."""
    if name == "synthetic":
        train = 6000 if limit is None else max(limit + min(limit, 10000), 12)
        test = 1000 if limit is None else limit
        from shortcutlab.data.synthetic import synthetic_source

        return synthetic_source(train_size=train, test_size=test)
    if name in ("mnist", "fashion-mnist"):
        from shortcutlab.data.fetch import load_cached_or_fetch

        return load_cached_or_fetch(name)
    raise ShortcutlabError(f"unknown --source {name!r}; choose one of {', '.join(SOURCES)}")
