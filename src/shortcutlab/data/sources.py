"""Grayscale sources the generator colors: MNIST, Fashion-MNIST, a synthetic one, yours.

Every source returns the same layout: ``train_images`` uint8 (N, 28, 28), ``train_labels``
int64 (N,), ``test_images``, ``test_labels``. A user's source is a path: an ``.npz`` with
those four arrays, or a directory of IDX files (``train-images-idx3-ubyte[.gz]``, ...),
with any number of classes (labels 0..K-1) and images of any size, which are resized to
the generator's 28 x 28 (its textures and the registry's models are that size).
"""

from __future__ import annotations

import os
from pathlib import Path

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


def is_source_path(name: str) -> bool:
    """Whether a source name is a user's file or directory rather than a built-in."""
    return name not in SOURCES and (name.endswith(".npz") or os.path.sep in name
                                    or os.path.exists(name))


def load_source(name: str, limit: int | None = None) -> dict[str, np.ndarray]:
    """Load a source from the cache (fetching real data on first use), or a user's
    ``.npz`` / IDX directory (see the module docstring)."""
    if is_source_path(name):
        return load_user_source(name)
    if name == "synthetic":
        train = 6000 if limit is None else max(limit + min(limit, 10000), 12)
        test = 1000 if limit is None else limit
        from shortcutlab.data.synthetic import synthetic_source

        return synthetic_source(train_size=train, test_size=test)
    if name in ("mnist", "fashion-mnist"):
        from shortcutlab.data.fetch import load_cached_or_fetch

        return load_cached_or_fetch(name)
    raise ShortcutlabError(f"unknown --source {name!r}; choose one of {', '.join(SOURCES)}, "
                           "or give the path of an .npz or IDX directory of your own")


SIZE = 28
SOURCE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def load_user_source(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A user's grayscale source, checked: uint8 (N, H, W) images, integer labels 0..K-1
    with every class in the training part; resized to 28 x 28 when H, W differ."""
    path = Path(path)
    if path.is_dir():
        from shortcutlab.data.idx import read_idx_dir

        arrays = read_idx_dir(path)
    elif path.is_file() and path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except ValueError as exc:
            raise ShortcutlabError(f"{path} holds object arrays, which are never unpickled "
                                   f"({exc})") from None
    else:
        raise ShortcutlabError(f"source {path} is neither an .npz file nor a directory of IDX "
                               "files")
    missing = [key for key in SOURCE_KEYS if key not in arrays]
    if missing:
        raise ShortcutlabError(f"source {path} lacks {', '.join(missing)}; a source holds "
                               f"{', '.join(SOURCE_KEYS)} (it has: {', '.join(sorted(arrays))})")
    out = {}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ShortcutlabError(f"source {path}: {part}_images are {images.dtype} "
                                   f"{images.shape}; expected uint8 (N, H, W) grayscale")
        if not np.issubdtype(labels.dtype, np.integer) or labels.shape != images.shape[:1]:
            raise ShortcutlabError(f"source {path}: {part}_labels must be integers, one per "
                                   f"image ({images.shape[0]}), got {labels.dtype} "
                                   f"{labels.shape}")
        if len(labels) and labels.min() < 0:
            raise ShortcutlabError(f"source {path}: {part}_labels must be 0 or more")
        out[f"{part}_images"] = _resized(images)
        out[f"{part}_labels"] = labels.astype(np.int64)
    classes = int(max(out["train_labels"].max(), out["test_labels"].max())) + 1
    absent = sorted(set(range(classes)) - set(np.unique(out["train_labels"]).tolist()))
    if absent:
        raise ShortcutlabError(f"source {path}: class(es) {', '.join(map(str, absent))} have "
                               "no training image")
    return out


def _resized(images: np.ndarray) -> np.ndarray:
    if images.shape[1:] == (SIZE, SIZE):
        return np.ascontiguousarray(images)
    import torch

    tensor = torch.from_numpy(images.astype(np.float32))[:, None]
    small = torch.nn.functional.interpolate(tensor, size=(SIZE, SIZE), mode="bilinear",
                                            antialias=True, align_corners=False)
    return small[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def source_classes(source: dict[str, np.ndarray]) -> int:
    """The number of classes of a loaded source (its largest label + 1)."""
    return int(max(source["train_labels"].max(), source["test_labels"].max())) + 1
