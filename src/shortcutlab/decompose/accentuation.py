"""``shortcutlab accentuate``: real images pushed along a direction, for one or two models.

A direction is named on the command line (:func:`parse_direction`):

- ``color:NAME`` (``color:yellow``): the mean activation of the validation images in that
  color minus that of the others (:func:`shortcutlab.probe.directions.color_direction`);
- ``class:A-B`` (``class:3-7``): the mean activation of class A's validation images minus
  class B's;
- ``feature:SAE_DIR:F``: the decoder row of feature F of a sparse autoencoder trained by
  ``shortcutlab sae train`` (its layer is the SAE's; one model only, the SAE's own).

Each model gets its own direction in its own layer, computed the same way, so that "the
lazy model's yellow" and "the cured model's yellow" are compared as what each model means
by it. Writes ``accentuate.json`` (per model: the objective before and after, the share of
the change that fell off the digit against the background's share of the pixels, the
target class's probability before and after, the mean change) and ``accentuate.png``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shortcutlab import models
from shortcutlab.artifacts import write_json
from shortcutlab.data import images_to_tensor, load_split
from shortcutlab.errors import ShortcutlabError
from shortcutlab.probe.directions import accentuate, color_direction, mean_difference
from shortcutlab.probe.objectives import Direction

PREVIEW = 6  # images per row of the figure (the first ones, never hand-picked)


@dataclass(frozen=True)
class AccentuateSettings:
    direction: str = "color:yellow"
    layer: str | None = None     # default: the model's last Conv2d (the SAE's for feature:)
    split: str = "test_hard"
    source: int = 7              # the class whose images are pushed
    target: int | None = 3       # whose probability is reported before and after
    images: int = 64
    steps: int = 200
    lr: float = 0.02
    closeness: float = 0.01
    seed: int = 0

    def validate(self) -> None:
        if self.images < 1 or self.steps < 1 or self.lr <= 0 or self.closeness < 0:
            raise ShortcutlabError("--images and --steps must be positive, --lr positive, "
                                   "--closeness 0 or more")
        kind = self.direction.partition(":")[0]
        if kind not in ("color", "class", "feature"):
            raise ShortcutlabError(f"unknown direction {self.direction!r}; use color:NAME, "
                                   "class:A-B or feature:SAE_DIR:F")


def parse_direction(spec: str, model: nn.Module, layer: str | None, data_dir: str | os.PathLike
                    ) -> Direction:
    """The direction ``spec`` names, in ``model``'s ``layer`` (see the module docstring)."""
    kind, _, rest = spec.partition(":")
    if kind == "feature":
        from shortcutlab.decompose.run import feature_direction

        sae_dir, _, index = rest.rpartition(":")
        if not sae_dir or not index.isdigit():
            raise ShortcutlabError(f"--direction {spec!r}: write feature:SAE_DIR:F, e.g. "
                                   "feature:runs/sae:12")
        direction = feature_direction(sae_dir, int(index))
        if layer is not None and layer != direction.layer:
            raise ShortcutlabError(f"the SAE in {sae_dir} reads {direction.layer!r}, not "
                                   f"{layer!r}; drop --layer")
        return direction
    layer = layer or models.last_conv(model)[0]
    models.get_layer(model, layer)  # a clear error for a misspelled layer
    if kind == "color":
        if not rest:
            raise ShortcutlabError("--direction color:NAME, e.g. color:yellow")
        return color_direction(model, layer, str(data_dir), rest)
    if kind == "class":
        first, sep, second = rest.partition("-")
        if not sep or not first.isdigit() or not second.isdigit():
            raise ShortcutlabError(f"--direction {spec!r}: write class:A-B, e.g. class:3-7")
        val = load_split(data_dir, "val")
        images = images_to_tensor(val.images[:3000])
        labels = torch.from_numpy(val.labels[:3000])
        a, b = int(first), int(second)
        return mean_difference(model, layer, images[labels == a], images[labels == b],
                               label=f"class {a} minus class {b}")
    raise ShortcutlabError(f"unknown direction {spec!r}; use color:NAME, class:A-B or "
                           "feature:SAE_DIR:F")


def accentuate_run(runs: dict[str, str | os.PathLike], data_dir: str | os.PathLike,
                   out_dir: str | os.PathLike, settings: AccentuateSettings = AccentuateSettings(),
                   device: str = "cpu") -> dict[str, Any]:
    """Accentuate the same images for each model of ``runs`` (label -> run directory);
    write and return ``accentuate.json``."""
    settings.validate()
    if settings.direction.startswith("feature:") and len(runs) > 1:
        raise ShortcutlabError("a feature: direction belongs to one model's SAE; attack one "
                               "model at a time, or compare with color: or class:")
    split = load_split(data_dir, settings.split)
    index = np.flatnonzero(split.labels == settings.source)[:settings.images]
    if index.size == 0:
        raise ShortcutlabError(f"{settings.split} has no image of class {settings.source}")
    chosen = split.subset(index)
    x = chosen.image_tensor(device)
    masks = torch.from_numpy(chosen.masks).to(device)
    torch.manual_seed(settings.seed)
    result: dict[str, Any] = {"settings": asdict(settings), "images": int(index.size),
                              "models": {}}
    shown = {"original": x[:PREVIEW].cpu()}
    for label, run in runs.items():
        model = models.load(run, device=device)
        direction = parse_direction(settings.direction, model, settings.layer, data_dir)
        accent = accentuate(model, x, direction, masks, steps=settings.steps, lr=settings.lr,
                            closeness=settings.closeness)
        entry = {
            "run": str(run), "layer": direction.layer, "direction": direction.label,
            "objective_before": float(accent.before.mean()),
            "objective_after": float(accent.after.mean()),
            "background_share_of_change": float(accent.background_share.mean()),
            "background_share_of_pixels": float(accent.area_share.mean()),
            "mean_abs_change": float((accent.images - x).abs().mean()),
        }
        if settings.target is not None:
            with torch.no_grad():
                entry["target_before"] = float(model(x).softmax(1)[:, settings.target].mean())
                entry["target_after"] = float(
                    model(accent.images).softmax(1)[:, settings.target].mean())
        result["models"][label] = entry
        shown[label] = accent.images[:PREVIEW].cpu()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot(out_dir / "accentuate.png", shown, settings)
    result["figures"] = ["accentuate.png"]
    write_json(out_dir / "accentuate.json", result)
    return result


def _plot(path: Path, rows: dict[str, torch.Tensor], settings: AccentuateSettings) -> None:
    from shortcutlab.figures import save_figure
    from shortcutlab.probe.figures import pyplot

    plt = pyplot()
    columns = min(PREVIEW, len(rows["original"]))
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.5 * columns, 1.6 * len(rows)),
                             squeeze=False)
    for row, (label, images) in enumerate(rows.items()):
        for column in range(columns):
            axes[row, column].imshow(images[column].permute(1, 2, 0).clamp(0, 1).numpy())
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
        axes[row, 0].set_ylabel(label)
    fig.suptitle(f"{settings.source}s of {settings.split} pushed along {settings.direction}")
    save_figure(fig, path)
