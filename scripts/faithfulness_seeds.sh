#!/usr/bin/env bash
# Deletion curves of Grad-CAM and LRP for the lazy model against the cured one, three seeds,
# both fills: the numbers of docs/results.md#explain ("Is the evidence faithful?").
#
#   bash scripts/faithfulness_seeds.sh DATA CURED_ROOT OUT
#
# DATA: the study's dataset; CURED_ROOT: a directory with seed0..seed2 runs of the cured
# method (results/intervene/methods/color-consistency); OUT: where lazy runs (trained here
# when missing) and explain outputs go. Finished pieces are skipped, so it resumes.
set -euo pipefail
DATA=${1:?dataset directory}
CURED=${2:?directory with seed0..seed2 cured runs}
OUT=${3:?output directory}
PY=${PYTHON:-python}
IMAGES=${IMAGES:-200}
for seed in 0 1 2; do
  lazy="$OUT/lazy-s$seed"
  if [ ! -f "$lazy/metrics.json" ]; then
    $PY -m shortcutlab train --data "$DATA" --out "$lazy" --preset lazy --seed "$seed" --force
  fi
  for method in gradcam lrp; do
    for fill in mean road; do
      dest="$OUT/s$seed/$method-$fill"
      [ -f "$dest/explain.json" ] && continue
      $PY -m shortcutlab explain "$lazy" --compare "$CURED/seed$seed" --data "$DATA" \
        --method "$method" --label lazy --compare-label cured --splits test_hard \
        --limit "$IMAGES" --sanity-images 0 --examples 0 --faithfulness "$IMAGES" \
        --removal-steps 10 --fill "$fill" --seed "$seed" --out "$dest"
    done
  done
done
$PY - "$OUT" <<'EOF'
"""Mean +- std over the seeds of every deletion AUC, as a markdown table."""
import json
import sys
from pathlib import Path

import numpy as np

out = Path(sys.argv[1])
rows = {}
for path in sorted(out.glob("s*/*/explain.json")):
    method, fill = path.parent.name.split("-")
    summary = json.loads(path.read_text())
    for role, curves in summary["faithfulness"].items():
        key = (method, fill, summary["models"][role]["label"])
        rows.setdefault(key, []).append(curves)
orders = ["map", "random", "background-first", "digit-first"]
print("| method | fill | model | seeds | " + " | ".join(orders)
      + " | background removed | digit removed | expected order |")
print("|" + " --- |" * (len(orders) + 7))
for (method, fill, label), runs in sorted(rows.items()):
    def stat(values):
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}"
    aucs = {order: [run["auc"][order] for run in runs] for order in orders}
    background, digit = np.array(aucs["background-first"]), np.array(aucs["digit-first"])
    holds = (background < digit) if label == "lazy" else (digit < background)
    print(f"| {method} | {fill} | {label} | {len(runs)} | "
          + " | ".join(stat(aucs[order]) for order in orders)
          + f" | {stat([r['only_background_removed'] for r in runs])}"
          + f" | {stat([r['only_digit_removed'] for r in runs])}"
          + f" | {int(holds.sum())} of {len(runs)} |")
EOF
