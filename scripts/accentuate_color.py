"""Feature accentuation on the study's models: push hard-set 7s along the "yellow minus
the other colors" direction of the last conv layer and measure where the change goes.

    python scripts/accentuate_color.py LAZY_RUN CURED_RUN DATA OUT

Writes OUT/accentuate.json and OUT/accentuate.png (originals and accentuated images).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from shortcutlab import models
from shortcutlab.data import load_split
from shortcutlab.figures import save_figure
from shortcutlab.probe.directions import accentuate, color_direction
from shortcutlab.probe.figures import pyplot

LAYER = "features.conv3"
IMAGES = 64
STEPS, LR, CLOSENESS = 200, 0.02, 0.01


def main() -> int:
    lazy_run, cured_run, data, out = sys.argv[1:5]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    split = load_split(data, "test_hard")
    chosen = split.subset(np.flatnonzero(split.labels == 7)[:IMAGES])
    x, masks = chosen.image_tensor(), torch.from_numpy(chosen.masks)
    result, shown = {}, {}
    for name, run in (("lazy", lazy_run), ("cured", cured_run)):
        model = models.load(run)
        direction = color_direction(model, LAYER, data, "yellow")
        accent = accentuate(model, x, direction, masks, steps=STEPS, lr=LR, closeness=CLOSENESS)
        with torch.no_grad():
            before = model(x).softmax(1)[:, 3]
            after = model(accent.images).softmax(1)[:, 3]
        result[name] = {
            "images": IMAGES, "layer": LAYER, "direction": direction.label, "steps": STEPS,
            "lr": LR, "closeness": CLOSENESS,
            "objective_before": float(accent.before.mean()),
            "objective_after": float(accent.after.mean()),
            "background_share_of_change": float(accent.background_share.mean()),
            "background_share_of_pixels": float(accent.area_share.mean()),
            "p3_before": float(before.mean()), "p3_after": float(after.mean()),
            "mean_abs_change": float((accent.images - x).abs().mean()),
        }
        shown[name] = accent.images[:6]
    (out / "accentuate.json").write_text(json.dumps(result, indent=2))
    plt = pyplot()
    fig, axes = plt.subplots(3, 6, figsize=(9, 4.8))
    for row, (label, images) in enumerate((("original", x[:6]), ("lazy", shown["lazy"]),
                                           ("cured", shown["cured"]))):
        for col in range(6):
            axes[row, col].imshow(images[col].permute(1, 2, 0).numpy())
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
        axes[row, 0].set_ylabel(label)
    fig.suptitle("7s pushed along 'yellow minus the other colors' (features.conv3)")
    save_figure(fig, out / "accentuate.png")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
