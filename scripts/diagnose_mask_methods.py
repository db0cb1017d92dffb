"""Why the mask methods (RRR, saliency guidance) cure or fail: what their penalties see.

    python scripts/diagnose_mask_methods.py --data DATA --table results/intervene \
        --lazy study/lazy/run --out docs/figures/intervene_mask_diagnosis.png

For the lazy model and every finished run of the table (erm-control, rrr,
saliency-guide, color-consistency, jtt, the teacher), on the first 512 easy-validation
images, it measures the quantity each penalty minimizes:

- RRR's penalty: the squared input gradient of the summed log-probabilities on the
  background, summed over pixels (the value RRR adds to its loss, before its weight);
- where that gradient's mass sits: background, the digit's rim (the mask's outer pixel,
  where the white stroke blends with the background color) and the stroke's core;
- saliency guidance's penalty: the share of positive LRP-epsilon relevance (true class,
  epsilon 0.05) outside the digit, and its split over the same regions.

If a penalty is a faithful measure of color reliance, the color-reading lazy model has
the largest value and the shape readers (color consistency, the teacher) the smallest.
The figure plots each value against the run's hard-set accuracy, and the training logs
of rrr and saliency-guide (seed 0): where their evidence moved while they trained.
Writes the figure and ``mask_diagnosis.json`` next to the table.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

GROUPS = {  # table run group -> label on the figure
    "controls": "erm-control",
    "methods/rrr": "rrr",
    "methods/saliency-guide": "saliency-guide",
    "methods/color-consistency": "color-consistency",
    "methods/jtt": "jtt",
    "teacher": "teacher",
}
COLORS = {"lazy": "#d62728", "erm-control": "#888888", "rrr": "#ff7f0e",
          "saliency-guide": "#9467bd", "color-consistency": "#2ca02c", "jtt": "#17becf",
          "teacher": "#1f77b4"}
REGIONS = ("background", "rim", "core")


def measure(run_dir: Path, images, labels, masks) -> dict[str, float]:
    import torch

    from shortcutlab import models
    from shortcutlab.explain import lrp
    from shortcutlab.intervene.methods.rrr import background_gradient_penalty, region_shares

    model = models.load(run_dir).eval()
    _, penalty, gradient = background_gradient_penalty(model, images, labels, masks, "l2")
    relevance = lrp(model, images, labels, rule="epsilon", epsilon=0.05)
    positive = relevance.sum(1).clamp_min(0)
    per_image = (positive * (~masks).float()).flatten(1).sum(1) / (
        positive.flatten(1).sum(1) + 1e-8)
    with torch.no_grad():
        return {"rrr_penalty": float(penalty.detach()),
                **region_shares(gradient.pow(2).sum(1), masks, "grad"),
                "lrp_outside_share": float(per_image.mean()),
                **region_shares(positive, masks, "relevance")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the table's dataset directory")
    parser.add_argument("--table", required=True, type=Path, help="intervene --all --out")
    parser.add_argument("--lazy", required=True, type=Path, help="the lazy model's run")
    parser.add_argument("--out", type=Path,
                        default=Path("docs/figures/intervene_mask_diagnosis.png"))
    parser.add_argument("--images", type=int, default=512)
    args = parser.parse_args()

    import torch

    from shortcutlab.artifacts import read_json, write_json
    from shortcutlab.train.data import load_tensor_split

    torch.manual_seed(0)
    val = load_tensor_split(args.data, "val")
    batch = val.batch(torch.arange(min(args.images, len(val))))
    images, labels, masks = batch.images, batch.labels, batch.masks.bool()

    runs = [("lazy", args.lazy)]
    for group, label in GROUPS.items():
        for metrics_file in sorted((args.table / group).glob("**/metrics.json")):
            if (metrics_file.parent / "model.pt").is_file():
                runs.append((label, metrics_file.parent))
    rows = []
    for label, run_dir in runs:
        metrics = read_json(run_dir / "metrics.json")
        row = {"model": label, "run": str(run_dir), "hard": metrics["hard"],
               **measure(run_dir, images, labels, masks)}
        rows.append(row)
        print(f"{label:<18} hard {row['hard']:.3f}  rrr penalty {row['rrr_penalty']:9.2f}  "
              f"grad bg/rim/core {row['grad_background']:.2f}/{row['grad_rim']:.2f}/"
              f"{row['grad_core']:.2f}  lrp outside {row['lrp_outside_share']:.3f}  "
              f"rim {row['relevance_rim']:.2f}", flush=True)
    summary = {}
    for label in dict.fromkeys(row["model"] for row in rows):
        mine = [row for row in rows if row["model"] == label]
        summary[label] = {key: sum(row[key] for row in mine) / len(mine)
                          for key in mine[0] if isinstance(mine[0][key], float)}
        summary[label]["runs"] = len(mine)
    write_json(args.table / "mask_diagnosis.json", {"images": len(labels), "rows": rows,
                                                     "mean": summary})
    plot(args.out, rows, args.table)
    print(f"figure: {args.out}")
    return 0


def plot(path: Path, rows: list[dict], table: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shortcutlab.figures import save_figure
    from shortcutlab.intervene.convergence import read_log

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for ax, key, title, log in (
        (axes[0], "rrr_penalty", "RRR's penalty (squared background\ninput gradient)", True),
        (axes[1], "lrp_outside_share", "saliency guidance's penalty\n(LRP share outside the digit)",
         False),
    ):
        for label in dict.fromkeys(row["model"] for row in rows):
            mine = [row for row in rows if row["model"] == label]
            ax.scatter([100 * row["hard"] for row in mine], [row[key] for row in mine],
                       color=COLORS.get(label, "#000000"), label=label, s=28)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("hard-set accuracy, %")
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("on 512 easy-val images")
    axes[0].legend(fontsize=7, loc="best")
    for ax, method, prefix in ((axes[2], "rrr", "grad"),
                               (axes[3], "saliency-guide", "relevance")):
        records = read_log(table / "methods" / method / "seed0")
        steps = [r["step"] for r in records if f"train_{prefix}_background" in r]
        for region, style in zip(REGIONS, ("-", "--", ":"), strict=True):
            values = [r[f"train_{prefix}_{region}"] for r in records
                      if f"train_{prefix}_background" in r]
            if values and not any(math.isnan(v) for v in values):
                ax.plot(steps, values, style, color="#444444", label=region)
        ax.set_ylim(0, 1)
        ax.set_xlabel("training step")
        ax.set_title(f"{method} (seed 0): where its\n"
                     f"{'gradient' if prefix == 'grad' else 'relevance'} mass sits",
                     fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, tight=False)


if __name__ == "__main__":
    raise SystemExit(main())
