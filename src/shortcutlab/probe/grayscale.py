"""An independent judge of shape: a small classifier trained on the grayscale source only.

To ask whether a class-logit visualization *looks like* its digit we need an observer that
has never seen color. This classifier is trained on the grayscale source's training split
(never its test split, which only measures it), deterministically, and cached in the
shortcutlab cache directory under a hash of its recipe and of the source, with its test
accuracy recorded beside the weights.

The judge is trained on the dataset's own source (:func:`judge_recipe`): an MNIST digit
classifier says nothing about a picture of a Fashion-MNIST sneaker.

A colored image is shown to it as its per-pixel minimum over the three channels: the
datasets lay a white digit over a colored background in which at least one channel is
dark, so the minimum recovers "white digit on black", which is what MNIST looks like.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from shortcutlab import models
from shortcutlab.artifacts import config_hash, read_json, write_json
from shortcutlab.data.build import source_checksum
from shortcutlab.data.fetch import cache_dir
from shortcutlab.data.sources import load_source
from shortcutlab.models.registry import MODEL_META
from shortcutlab.progress import progress
from shortcutlab.runtime import seed_everything


@dataclass(frozen=True)
class GrayRecipe:
    source: str = "mnist"
    model: str = "cnn3"
    width: int = 8
    hidden: int = 64
    epochs: int = 4
    batch_size: int = 128
    lr: float = 3e-3
    shift: int = 2  # random translations of up to this many pixels, for robustness
    seed: int = 0
    version: int = 1


def judge_recipe(data_dir: str | os.PathLike) -> GrayRecipe:
    """The judge's recipe for a dataset: trained on the grayscale source it was built from.

    An imported dataset has no grayscale source to train one on: a ShortcutlabError says
    so (turn the judge off with ``--no-judge`` / ``judge = false``)."""
    from shortcutlab.data import load_meta
    from shortcutlab.data.sources import SOURCES
    from shortcutlab.errors import ShortcutlabError

    source = load_meta(data_dir).get("config", {}).get("source")
    if source not in SOURCES:
        raise ShortcutlabError(
            f"{data_dir} has no grayscale source ({source!r}) to train the grayscale judge "
            "on; run the probe without the judge")
    return GrayRecipe(source=source)


def to_gray(images: Tensor) -> Tensor:
    """Colored images (N, 3, H, W) in [0, 1] -> the classifier's input (N, 3, H, W)."""
    return images.amin(dim=1, keepdim=True).expand(-1, 3, -1, -1)


def _gray_tensor(array: np.ndarray) -> Tensor:
    return torch.from_numpy(array).float().div(255.0)[:, None].expand(-1, 3, -1, -1)


def _shift(images: Tensor, pixels: int, generator: torch.Generator) -> Tensor:
    if pixels == 0:
        return images
    dy, dx = torch.randint(-pixels, pixels + 1, (2,), generator=generator).tolist()
    return torch.roll(images, shifts=(dy, dx), dims=(2, 3))


def train_gray_classifier(source: dict[str, np.ndarray], recipe: GrayRecipe,
                          show_progress: bool = True) -> tuple[nn.Module, float]:
    """Train on ``train_images`` only; return the model and its test-split accuracy."""
    generator = seed_everything(recipe.seed)
    model = models.create(recipe.model, width=recipe.width, hidden=recipe.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    images = _gray_tensor(source["train_images"])
    labels = torch.from_numpy(source["train_labels"].astype(np.int64))
    steps_per_epoch = len(labels) // recipe.batch_size
    quiet = {} if show_progress else {"disable": True}
    model.train()
    for _ in progress(range(recipe.epochs), desc=f"gray {recipe.source} judge", unit="epoch",
                      **quiet):
        order = torch.randperm(len(labels), generator=generator)
        for step in range(steps_per_epoch):
            index = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            batch = _shift(images[index], recipe.shift, generator)
            loss = nn.functional.cross_entropy(model(batch), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    test_images = _gray_tensor(source["test_images"])
    test_labels = torch.from_numpy(source["test_labels"].astype(np.int64))
    with torch.no_grad():
        predictions = torch.cat([model(chunk).argmax(1) for chunk in test_images.split(1000)])
    return model, float((predictions == test_labels).float().mean())


def gray_classifier(recipe: GrayRecipe = GrayRecipe(), source: dict[str, np.ndarray] | None = None,
                    show_progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """The cached grayscale judge (trained on first use) and its record.

    The cache key hashes the recipe and the source arrays, so a different recipe or a
    different source never reuses a stale model.
    """
    source = load_source(recipe.source) if source is None else source
    key = config_hash({"recipe": asdict(recipe), "source": source_checksum(source)})
    folder = Path(cache_dir()) / "probe" / f"gray-{recipe.source}-{key}"
    info_path = folder / "judge.json"
    if info_path.is_file() and (folder / MODEL_META).is_file():
        return models.load(folder), read_json(info_path)
    model, accuracy = train_gray_classifier(source, recipe, show_progress)
    models.save(model, folder)
    info = {"recipe": asdict(recipe), "key": key, "test_accuracy": accuracy,
            "trained_on": f"{recipe.source} train split (grayscale)", "path": str(folder)}
    write_json(info_path, info)
    return model.eval(), info


@torch.no_grad()
def judge(model: nn.Module, images: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Predicted digit and its probability for colored images (N, 3, H, W) in [0, 1]."""
    probabilities = torch.softmax(model(to_gray(images)), dim=1)
    confidence, digit = probabilities.max(dim=1)
    return digit.numpy(), confidence.numpy()
