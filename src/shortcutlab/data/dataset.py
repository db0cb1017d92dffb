"""Reading a built dataset: the documented artifact every later stage consumes.

A dataset directory holds ``meta.json`` and one ``SPLIT.npz`` per split with
``images`` uint8 (N, 28, 28, 3), ``labels`` int64 (N,), ``colors`` int64 (N,) (palette
index) and ``masks`` bool (N, 28, 28) (the digit's foreground). Models take float
tensors (N, 3, 28, 28) with pixels in [0, 1]; :func:`images_to_tensor` converts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from shortcutlab.artifacts import load_npz, read_json
from shortcutlab.errors import ShortcutlabError

SPLITS: tuple[str, ...] = ("train", "val", "test_easy", "test_hard", "test_unbiased")
ARRAY_KEYS: tuple[str, ...] = ("images", "labels", "colors", "masks")


def images_to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return tensor.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def tensor_to_images(tensor: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [0, 1] -> uint8 (N, H, W, 3), rounding to the nearest level."""
    array = tensor.detach().clamp(0, 1).mul(255.0).round().to(torch.uint8).cpu()
    return array.permute(0, 2, 3, 1).numpy()


@dataclass(frozen=True)
class Split:
    """One split held in memory as numpy arrays."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    colors: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def aligned(self) -> np.ndarray:
        """True where the image carries its own class's color."""
        return self.colors == self.labels

    def subset(self, index: np.ndarray | slice) -> Split:
        return Split(self.name, self.images[index], self.labels[index], self.colors[index],
                     self.masks[index])

    def image_tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        return images_to_tensor(self.images, device)

    def tensors(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Every array as a tensor: images float (N,3,28,28) in [0,1], the rest as stored."""
        return {
            "images": self.image_tensor(device),
            "labels": torch.from_numpy(self.labels).to(device),
            "colors": torch.from_numpy(self.colors).to(device),
            "masks": torch.from_numpy(self.masks).to(device),
        }


def load_meta(data_dir: str | os.PathLike) -> dict[str, Any]:
    """A dataset directory's ``meta.json`` (docs/artifacts.md), or an error saying how to
    build one."""
    data_dir = Path(data_dir)
    meta_path = data_dir / "meta.json"
    if not meta_path.is_file():
        raise ShortcutlabError(
            f"{data_dir} is not a shortcutlab dataset (no meta.json); "
            f"build one with: shortcutlab data build --out {data_dir}"
        )
    return read_json(meta_path)


def dataset_classes(meta: dict[str, Any]) -> int:
    """How many classes a dataset has (``classes`` in meta.json; older ones: its counts)."""
    return int(meta.get("classes") or len(meta["counts"]["train"]))


def dataset_colors(meta: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """The color names and the palette (K, 3) as floats in [0, 1] of a dataset."""
    from shortcutlab.data.palette import COLOR_NAMES, PALETTE

    palette = np.asarray(meta.get("palette") or PALETTE, dtype=np.float64) / 255.0
    names = list(meta.get("color_names") or COLOR_NAMES)[:len(palette)]
    return names, palette.astype(np.float32)


def class_names(meta: dict[str, Any]) -> list[str]:
    """The names of a dataset's classes: recorded in ``meta.json``, else its source's
    (:data:`shortcutlab.data.sources.CLASS_NAMES`), else the class numbers."""
    from shortcutlab.data.sources import CLASS_NAMES

    recorded = meta.get("class_names")
    if isinstance(recorded, list) and recorded:
        return [str(name) for name in recorded]
    source = meta.get("config", {}).get("source")
    if source in CLASS_NAMES:
        return list(CLASS_NAMES[source])
    count = int(meta.get("classes") or len(meta.get("counts", {}).get("train", [])) or 10)
    return [str(c) for c in range(count)]


def require_splits(data_dir: str | os.PathLike, splits: tuple[str, ...] = SPLITS) -> None:
    """Fail now, before any work, when a split a command will read is missing."""
    data_dir = Path(data_dir)
    load_meta(data_dir)
    missing = [name for name in splits if not (data_dir / f"{name}.npz").is_file()]
    if missing:
        raise ShortcutlabError(
            f"{data_dir} lacks {', '.join(m + '.npz' for m in missing)}; rebuild it with "
            f"`shortcutlab data build --out {data_dir} --force`")


def load_split(data_dir: str | os.PathLike, split: str, verify: bool = True) -> Split:
    """Load one split, checking its sha256 against ``meta.json`` unless ``verify`` is False."""
    if split not in SPLITS:
        raise ShortcutlabError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    meta = load_meta(data_dir)
    expected = meta.get("files", {}).get(f"{split}.npz", {}).get("sha256") if verify else None
    arrays = load_npz(data_dir / f"{split}.npz", expected_sha256=expected)
    missing = [key for key in ARRAY_KEYS if key not in arrays]
    if missing:
        raise ShortcutlabError(f"{data_dir / (split + '.npz')} lacks arrays {missing}; rebuild it")
    return Split(split, arrays["images"], arrays["labels"], arrays["colors"], arrays["masks"])


class ColoredMNIST(Dataset):
    """A split as a map-style ``Dataset`` for a plain ``DataLoader``.

    Items are ``(image, label)`` with ``image`` float (3, 28, 28) in [0, 1]; with
    ``with_extras=True`` they are dicts with ``image``, ``label``, ``color``, ``mask`` and
    ``index``. ``colors`` and ``masks`` are also exposed as whole arrays.
    """

    def __init__(self, data_dir: str | os.PathLike, split: str = "train",
                 with_extras: bool = False, verify: bool = True) -> None:
        self.split = load_split(data_dir, split, verify=verify)
        self.with_extras = with_extras
        self.images = self.split.image_tensor()
        self.labels = torch.from_numpy(self.split.labels)
        self.colors = torch.from_numpy(self.split.colors)
        self.masks = torch.from_numpy(self.split.masks)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> Any:
        if not self.with_extras:
            return self.images[index], self.labels[index]
        return {
            "image": self.images[index],
            "label": self.labels[index],
            "color": self.colors[index],
            "mask": self.masks[index],
            "index": index,
        }
