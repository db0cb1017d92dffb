"""How a study's two models answer the explorer's "paint this 0 another color" question,
for the first N hard-set 0s that both models read as a 0 when they are red, in every
palette color: the share each model reads as the color's class, and as a 0.

    python scripts/explore_recolor.py STUDY_DIR [--limit 200] [--out results/explore/recolor.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from shortcutlab.artifacts import write_json
from shortcutlab.explore import Explorer, ImageSpec
from shortcutlab.study.explore import study_inputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--out", default="results/explore/recolor.json")
    args = parser.parse_args()
    inputs = study_inputs(args.study)
    explorer = Explorer(inputs.data_dir, inputs.runs, inputs.saes)
    labels = list(explorer.models)
    hard = explorer.split("test_hard")
    chosen = []
    for index in np.flatnonzero(hard.labels == 0):
        x, _, _ = explorer.image(ImageSpec("test_hard", int(index), color=0))
        if all(p["predicted"] == 0 for p in explorer.predict(x).values()):
            chosen.append(int(index))
        if len(chosen) == args.limit:
            break
    rows = []
    for color, name in enumerate(explorer.color_names):
        counts = {label: {"color_class": 0, "zero": 0} for label in labels}
        for index in chosen:
            x, _, _ = explorer.image(ImageSpec("test_hard", index, color=color))
            for label, answer in explorer.predict(x).items():
                counts[label]["color_class"] += answer["predicted"] == color
                counts[label]["zero"] += answer["predicted"] == 0
        rows.append({"color": name, **{label: {k: v / len(chosen) for k, v in c.items()}
                                        for label, c in counts.items()}})
    write_json(args.out, {"study": args.study, "images": len(chosen), "split": "test_hard",
                          "models": labels, "rows": rows})
    print(f"{len(chosen)} hard-set 0s read as 0 in red by both models; painted in each color:")
    print("| color | " + " | ".join(f"{m}: its class | {m}: still 0" for m in labels) + " |")
    print("| --- |" + " ---: |" * (2 * len(labels)))
    for row in rows:
        cells = " | ".join(f"{100 * row[m]['color_class']:.0f}% | {100 * row[m]['zero']:.0f}%"
                           for m in labels)
        print(f"| {row['color']} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
