"""``shortcutlab data import``: an already-colored dataset, checked and written as ours.

A researcher's own biased dataset (Waterbirds-style images, a recolored CIFAR, the output
of another generator) enters the pipeline here. The input is either a directory with one
``SPLIT.npz`` per split or a single ``.npz`` whose keys are ``SPLIT_FIELD``
(``train_images``, ``train_labels``, ...), for the five splits of the artifact layout
(:data:`shortcutlab.data.dataset.SPLITS`). Each split holds

- ``images``: uint8 (N, H, W, 3), RGB in 0-255, the same H and W in every split;
- ``labels``: integers (N,) in 0..K-1;
- ``colors``: the bias attribute, integers (N,) in 0..K-1, where attribute ``c`` is the
  one that goes with class ``c`` (the shortcut: "class c mostly comes in color c");
- ``masks`` (optional): bool or 0/1 (N, H, W), the object's foreground.

Every field is checked, each problem with its own message that says what to change,
before anything is written. The output is the artifact every stage reads: the split
files in a fixed member order with their sha256 in ``meta.json``, the dataset id a hash
of the content, the measured bias per split, and ``renderable: false``: analyses that
re-render a split's digits in other colors (the color-swap test, the rendered hard modes,
the probe's color grid) need the generator's grayscale source and say so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shortcutlab.artifacts import NpzWriter, config_hash, read_json, write_json, writer_lock
from shortcutlab.data.dataset import SPLITS
from shortcutlab.data.palette import COLOR_NAMES, PALETTE
from shortcutlab.errors import ShortcutlabError

IMPORT_FORMAT = 1
FIELDS = ("images", "labels", "colors", "masks")
REQUIRED = ("images", "labels", "colors")


def read_source(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """``{split: {field: array}}`` from a directory of split files or one ``.npz``."""
    path = Path(path)
    if path.is_dir():
        splits = {}
        missing = [s for s in SPLITS if not (path / f"{s}.npz").is_file()]
        if missing:
            raise ShortcutlabError(
                f"{path} lacks {', '.join(m + '.npz' for m in missing)}; an imported dataset "
                f"needs all five splits ({', '.join(SPLITS)}): train and val are biased, "
                "test_easy follows the training bias, test_hard never shows a class with its "
                "own attribute, test_unbiased draws attributes uniformly")
        for split in SPLITS:
            splits[split] = _load(path / f"{split}.npz")
        return splits
    if path.suffix != ".npz" or not path.is_file():
        raise ShortcutlabError(f"{path} is neither a directory of split files nor an .npz file")
    arrays = _load(path)
    splits = {split: {} for split in SPLITS}
    for key, array in arrays.items():
        for split in SPLITS:
            prefix = f"{split}_"
            if key.startswith(prefix) and key[len(prefix):] in FIELDS:
                splits[split][key[len(prefix):]] = array
    empty = [split for split, fields in splits.items() if not fields]
    if empty:
        raise ShortcutlabError(
            f"{path} has no arrays for {', '.join(empty)}; name them SPLIT_FIELD, e.g. "
            f"{empty[0]}_images, {empty[0]}_labels, {empty[0]}_colors (it has: "
            f"{', '.join(sorted(arrays)) or 'nothing'})")
    return splits


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as exc:
        raise ShortcutlabError(f"{path} holds object arrays, which are never unpickled; store "
                               f"plain numeric arrays ({exc})") from None
    except (OSError, EOFError) as exc:
        raise ShortcutlabError(f"{path} is not a readable .npz file ({exc})") from None


def check_splits(splits: Mapping[str, Mapping[str, np.ndarray]],
                 classes: int | None = None) -> dict[str, Any]:
    """Check every field of every split; return ``classes``, ``image_shape``, ``masks``.

    Raises a ShortcutlabError for the first problem, naming the split, the field and
    what was expected.
    """
    for split in SPLITS:
        if split not in splits:
            raise ShortcutlabError(f"split {split!r} is missing; the layout needs "
                                   f"{', '.join(SPLITS)}")
        present = sorted(splits[split])
        for field in REQUIRED:
            if field not in splits[split]:
                raise ShortcutlabError(
                    f"{split} has no {field!r} array ({_describe(field)}); it has: "
                    f"{', '.join(present) or 'nothing'}")
    has_masks = ["masks" in splits[s] for s in SPLITS]
    if any(has_masks) and not all(has_masks):
        without = [s for s, has in zip(SPLITS, has_masks, strict=True) if not has]
        raise ShortcutlabError(f"masks are given for some splits but not for "
                               f"{', '.join(without)}; give them for every split or none")
    image_shape = None
    top = 0
    for split in SPLITS:
        fields = splits[split]
        images = fields["images"]
        if images.dtype != np.uint8:
            hint = (" (multiply floats in [0, 1] by 255 and round)"
                    if np.issubdtype(images.dtype, np.floating) else "")
            raise ShortcutlabError(f"{split} images are {images.dtype}; expected uint8 RGB "
                                   f"values in 0-255{hint}")
        if images.ndim != 4 or images.shape[-1] != 3:
            hint = (" (channels first? move them last with images.transpose(0, 2, 3, 1))"
                    if images.ndim == 4 and images.shape[1] == 3 else
                    " (grayscale? color it with shortcutlab data build, or stack three "
                    "channels)" if images.ndim == 3 else "")
            raise ShortcutlabError(f"{split} images have shape {images.shape}; expected "
                                   f"(N, H, W, 3){hint}")
        if image_shape is None:
            image_shape = images.shape[1:3]
        elif images.shape[1:3] != image_shape:
            raise ShortcutlabError(f"{split} images are {images.shape[1]}x{images.shape[2]} "
                                   f"but train's are {image_shape[0]}x{image_shape[1]}; every "
                                   "split needs the same image size")
        n = images.shape[0]
        if n == 0:
            raise ShortcutlabError(f"{split} has no images")
        for field in ("labels", "colors"):
            values = fields[field]
            if not np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_:
                raise ShortcutlabError(f"{split} {field} are {values.dtype}; expected integers "
                                       f"({_describe(field)})")
            if values.shape != (n,):
                raise ShortcutlabError(f"{split} {field} have shape {values.shape}; expected "
                                       f"({n},), one per image")
            if values.min() < 0:
                raise ShortcutlabError(f"{split} {field} go down to {values.min()}; they must "
                                       "be 0 or more")
            top = max(top, int(values.max()))
        if "masks" in fields:
            masks = fields["masks"]
            if masks.shape != images.shape[:3]:
                raise ShortcutlabError(f"{split} masks have shape {masks.shape}; expected "
                                       f"{images.shape[:3]}, one (H, W) mask per image")
            if masks.dtype != np.bool_ and not (np.issubdtype(masks.dtype, np.integer)
                                               and np.isin(masks, (0, 1)).all()):
                raise ShortcutlabError(f"{split} masks are {masks.dtype} with values other "
                                       "than 0 and 1; expected bool (True on the object)")
    count = top + 1 if classes is None else int(classes)
    if count < 2:
        raise ShortcutlabError(f"a dataset needs at least two classes, got {count}")
    for split in SPLITS:
        for field in ("labels", "colors"):
            values = splits[split][field]
            if values.max() >= count:
                raise ShortcutlabError(
                    f"{split} {field} go up to {values.max()}, out of range for {count} "
                    f"classes (0..{count - 1}); pass --classes K if there are more")
    missing = sorted(set(range(count)) - set(np.unique(splits["train"]["labels"]).tolist()))
    if missing:
        raise ShortcutlabError(f"class{'es' if len(missing) > 1 else ''} "
                               f"{', '.join(map(str, missing))} never occur in train; every "
                               "class needs training images")
    return {"classes": count, "image_shape": list(image_shape), "masks": all(has_masks)}


def _describe(field: str) -> str:
    return {"images": "uint8 (N, H, W, 3)", "labels": "integer class per image, (N,)",
            "colors": "the bias attribute: an integer per image, (N,), attribute c going "
                      "with class c", "masks": "bool (N, H, W)"}[field]


def import_dataset(source: str | os.PathLike, out_dir: str | os.PathLike, *,
                   classes: int | None = None, palette: list[list[int]] | None = None,
                   color_names: list[str] | None = None, force: bool = False) -> dict[str, Any]:
    """Check ``source`` and write it as a dataset directory; return its ``meta.json``."""
    splits = read_source(source)
    facts = check_splits(splits, classes)
    count = facts["classes"]
    if palette is None:
        if count > len(PALETTE):
            raise ShortcutlabError(
                f"{count} classes but the default palette has {len(PALETTE)} colors; pass "
                "--palette FILE (a JSON list of [r, g, b] per class, or {\"colors\": [...], "
                "\"names\": [...]})")
        palette = [list(c) for c in PALETTE[:count]]
        color_names = list(COLOR_NAMES[:count])
    if len(palette) != count:
        raise ShortcutlabError(f"the palette has {len(palette)} colors for {count} classes")
    names = list(color_names) if color_names else [f"attribute {c}" for c in range(count)]
    out_dir = Path(out_dir)
    with writer_lock(out_dir):
        meta_path = out_dir / "meta.json"
        if meta_path.exists() and not force:
            raise ShortcutlabError(f"{out_dir} already holds a dataset; choose another --out "
                                   "or pass --force")
        if not meta_path.exists() and out_dir.exists() and any(
                p.name != ".lock" for p in out_dir.iterdir()) and not force:
            raise ShortcutlabError(f"{out_dir} is not empty; choose another --out or pass "
                                   "--force")
        if meta_path.exists():
            meta_path.unlink()
        files, sizes, counts, bias = {}, {}, {}, {}
        for split in SPLITS:
            fields = splits[split]
            labels = fields["labels"].astype(np.int64)
            colors = fields["colors"].astype(np.int64)
            masks = (fields["masks"].astype(bool) if facts["masks"]
                     else np.zeros(fields["images"].shape[:3], dtype=bool))
            with NpzWriter(out_dir / f"{split}.npz") as npz:  # the member order data build uses
                npz.add("colors", colors)
                npz.add("images", fields["images"])
                npz.add("labels", labels)
                npz.add("masks", masks)
            files[f"{split}.npz"] = {"sha256": npz.sha256}
            sizes[split] = len(labels)
            table = np.zeros((count, count), dtype=np.int64)
            np.add.at(table, (labels, colors), 1)
            counts[split] = table.tolist()
            bias[split] = float(np.mean(labels == colors))
        identity = {"imported": {name: info["sha256"] for name, info in files.items()},
                    "palette": palette, "format": IMPORT_FORMAT}
        meta = {
            "dataset_id": config_hash(identity),
            "config": {"source": "imported", "bias": round(bias["train"], 6)},
            "imported": {"from": str(Path(source).resolve()), "format": IMPORT_FORMAT},
            "renderable": False,
            "masks": facts["masks"],
            "classes": count,
            "image_shape": facts["image_shape"],
            "bias": bias,
            "palette": [list(c) for c in palette],
            "color_names": names,
            "splits": list(SPLITS),
            "sizes": sizes,
            "counts": counts,
            "files": files,
        }
        write_json(meta_path, meta)
    return meta


def read_palette(text: str) -> tuple[list[list[int]], list[str] | None]:
    """``--palette``: a JSON file (a list of [r, g, b], or ``{"colors": ..., "names": ...}``)
    or an inline list of colors ``"#ff0000,#00ff00,..."``."""
    path = Path(text)
    if path.is_file():
        data = read_json(path)
        colors, names = (data.get("colors"), data.get("names")) if isinstance(data, dict) \
            else (data, None)
    else:
        colors, names = [_hex(part) for part in text.split(",") if part.strip()], None
    if not isinstance(colors, list) or not all(
            isinstance(c, list | tuple) and len(c) == 3 and all(
                isinstance(v, int) and 0 <= v <= 255 for v in c) for c in colors):
        raise ShortcutlabError(f"--palette {text}: expected a list of [r, g, b] with integers in "
                               "0-255, one per class")
    if names is not None and (not isinstance(names, list) or len(names) != len(colors)):
        raise ShortcutlabError(f"--palette {text}: \"names\" must list one name per color")
    return [list(c) for c in colors], names


def _hex(part: str) -> list[int]:
    value = part.strip().lstrip("#")
    if len(value) != 6:
        raise ShortcutlabError(f"--palette: {part!r} is not a color like #ff8800 (or give a "
                               "JSON file)")
    try:
        return [int(value[i:i + 2], 16) for i in (0, 2, 4)]
    except ValueError:
        raise ShortcutlabError(f"--palette: {part!r} is not a hex color like #ff8800") from None
