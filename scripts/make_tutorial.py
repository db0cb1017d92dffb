"""Write docs/tutorial.ipynb from the cells below (the notebook is generated, not edited).

Run ``python scripts/make_tutorial.py`` after changing a cell; ``make test`` executes the
notebook (tests/test_tutorial.py), so it cannot go stale.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

CELLS: list[tuple[str, str]] = [
    ("md", """# shortcutlab in a notebook: make a network cheat, prove it, cure it, fool it

This tutorial runs the study's core in library calls, on a laptop CPU in a few minutes:

1. build a biased Colored-MNIST dataset (95% of each digit in its own color),
2. train a CNN that learns the color instead of the digit,
3. look at where it looks, with Grad-CAM and LRP,
4. cure it with one intervention (no grayscale, no changes to the data),
5. attack both models: how little noise turns a 7 into a 3?

Everything comes from `shortcutlab.api`. Set `SHORTCUTLAB_TUTORIAL_SOURCE=synthetic` to
run it offline on procedural digits (that is how the test suite runs it)."""),
    ("code", """import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from shortcutlab.api import (BuildConfig, background_share, build_dataset, grad_cam,
                             intervene_run, load_model, load_source, load_split, lrp,
                             minimal_epsilon, train_run)

SOURCE = os.environ.get("SHORTCUTLAB_TUTORIAL_SOURCE", "mnist")
LIMIT = 6000 if SOURCE == "synthetic" else 20000   # source images per split
WORK = Path(os.environ.get("SHORTCUTLAB_TUTORIAL_DIR", "tutorial-work"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
os.environ.setdefault("SHORTCUTLAB_PROGRESS", "0")"""),
    ("md", """## 1. A biased dataset

In `train`, `val` and `test_easy` each class has exactly 95% of its images in its own
color; `test_hard` never shows a digit in its own color. The same config and seed give
the same bytes."""),
    ("code", """data = WORK / "data"
meta = build_dataset(BuildConfig(source=SOURCE, bias=0.95, limit=LIMIT), data,
                     load_source(SOURCE, limit=LIMIT))
print("dataset", meta["dataset_id"], meta["sizes"])
easy, hard = load_split(data, "test_easy"), load_split(data, "test_hard")
fig, axes = plt.subplots(2, 10, figsize=(12, 2.8))
for digit in range(10):
    axes[0, digit].imshow(easy.images[np.flatnonzero(easy.labels == digit)[0]])
    axes[1, digit].imshow(hard.images[np.flatnonzero(hard.labels == digit)[0]])
    axes[0, digit].set_title(str(digit))
for axis in axes.flat:
    axis.axis("off")
axes[0, 0].text(-20, 14, "easy", fontsize=11)
axes[1, 0].text(-20, 14, "hard", fontsize=11)
plt.show()"""),
    ("md", """## 2. The cheater

The `lazy` recipe stops as soon as easy-validation accuracy reaches what the color alone
gives: the model is right on 95% of the easy images and wrong on almost every hard one."""),
    ("code", """# resume=True: a second run of the notebook reuses the finished run
metrics = train_run(data, WORK / "lazy", preset="lazy", seed=0, resume=True)
print(f"easy {metrics['test_easy']:.1%}   hard {metrics['hard']:.1%}   "
      f"follows the color on hard images {metrics['color_following_rate']:.1%}")
lazy = load_model(WORK / "lazy")"""),
    ("md", """## 3. Where does it look?

Grad-CAM (from the last convolution) and LRP (relevance down to the pixels) for the
model's own prediction on hard images; the background share is the fraction of positive
attribution outside the digit (the background is about 80% of the image)."""),
    ("code", """x = hard.image_tensor()[:6]
masks = torch.from_numpy(hard.masks[:6])
cam = grad_cam(lazy, x)
relevance = lrp(lazy, x).sum(1)
print("background share, Grad-CAM:", background_share(cam, masks).numpy().round(2))
print("background share, LRP:     ", background_share(relevance, masks).numpy().round(2))
predicted = lazy(x).argmax(1)
fig, axes = plt.subplots(3, 6, figsize=(10, 5.2))
for i in range(6):
    axes[0, i].imshow(hard.images[i]); axes[0, i].set_title(f"{hard.labels[i]} -> {predicted[i]}")
    axes[1, i].imshow(cam[i].detach(), cmap="jet")
    limit = float(relevance[i].abs().max()) or 1.0
    axes[2, i].imshow(relevance[i].detach(), cmap="bwr", vmin=-limit, vmax=limit)
for axis in axes.flat:
    axis.axis("off")
axes[1, 0].set_title("Grad-CAM", loc="left"); axes[2, 0].set_title("LRP", loc="left")
plt.show()"""),
    ("md", """## 4. A cure without grayscale or new data

`color-consistency` trains on the same biased images, plus a loss that asks the model to
give the same answer when an image's colors are permuted. (`shortcutlab intervene --list`
shows the others.)"""),
    ("code", """cured_metrics = intervene_run(data, WORK / "cured", "color-consistency", seed=0,
                              overrides={"epochs": 3}, resume=True)
print(f"cured: easy val {cured_metrics['easy_val']:.1%}   hard {cured_metrics['hard']:.1%}"
      f"   (lazy: hard {metrics['hard']:.1%})")
cured = load_model(WORK / "cured")"""),
    ("md", """## 5. Fool them: a 7 that reads as a 3

For each 7 of the hard set, the smallest L-inf budget at which a targeted PGD attack
makes the model say 3 with 90% confidence. A model that reads color is fooled by
repainting the background; one that reads shape needs its strokes changed."""),
    ("code", """sevens = hard.image_tensor()[torch.from_numpy(hard.labels == 7)][:8]
results = {name: minimal_epsilon(model, sevens, target=3, confidence=0.9, steps=10,
                                 precision=0.01)
           for name, model in (("lazy", lazy), ("cured", cured))}
for name, result in results.items():
    print(f"{name}: median minimal epsilon {np.median(result.eps):.3f}")
fig, axes = plt.subplots(3, 4, figsize=(7, 5.4))
for column in range(2):
    for row, (name, result) in enumerate(results.items()):
        delta = (result.adversarial[column] - sevens[column]).permute(1, 2, 0)
        axes[row + 1, 2 * column].imshow(result.adversarial[column].permute(1, 2, 0))
        axes[row + 1, 2 * column].set_title(f"{name}, eps {result.eps[column]:.2f}", fontsize=8)
        axes[row + 1, 2 * column + 1].imshow((0.5 + 4 * delta).clamp(0, 1))
        axes[row + 1, 2 * column + 1].set_title("perturbation x4", fontsize=8)
    axes[0, 2 * column].imshow(sevens[column].permute(1, 2, 0))
    axes[0, 2 * column].set_title("original", fontsize=8)
for axis in axes.flat:
    axis.axis("off")
plt.show()"""),
    ("md", """## Where next

`shortcutlab study` runs all seven tasks (feature visualization, the full intervention
table, the attack ensemble, sparse autoencoders) and writes an HTML report; every stage is
also a command (`shortcutlab --help`) and your own network trains with
`--model package.module:factory`."""),
]


def build() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    notebook.cells = [nbformat.v4.new_markdown_cell(text) if kind == "md"
                      else nbformat.v4.new_code_cell(text) for kind, text in CELLS]
    for index, cell in enumerate(notebook.cells):  # stable ids: the file does not churn
        cell["id"] = f"cell-{index:02d}"
    return notebook


def main() -> None:
    path = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"
    nbformat.write(build(), path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
