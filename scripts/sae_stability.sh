#!/usr/bin/env bash
# Three SAE seeds on the last conv layer of each given model (the study's [sae] settings),
# the first one labelled, and the features matched across the seeds: the numbers of
# docs/results.md#decompose ("Do the features come back?").
#
#   bash scripts/sae_stability.sh OUT NAME=RUN [NAME=RUN ...]
#
# SAE_ARGS adds options to `sae train` (e.g. SAE_ARGS="--activation topk --k 8").
# Finished pieces are skipped, so it resumes.
set -euo pipefail
OUT=${1:?output directory}
shift
PY=${PYTHON:-python}
for pair in "$@"; do
  name=${pair%%=*}
  run=${pair#*=}
  dirs=()
  for seed in 0 1 2; do
    dest="$OUT/$name/seed$seed"
    if [ ! -f "$dest/sae.json" ]; then
      $PY -m shortcutlab sae train "$run" --out "$dest" --steps 2000 --images 3000 \
        --expansion 8 --seed "$seed" ${SAE_ARGS:-}
    fi
    dirs+=("$dest")
  done
  [ -f "$OUT/$name/seed0/labels.json" ] || $PY -m shortcutlab sae label "$OUT/$name/seed0"
  $PY -m shortcutlab sae stability "${dirs[@]}" --out "$OUT/$name"
done
$PY - "$OUT" <<'PYEOF'
"""One row per model: the SAE's quality on every seed and the features that recur."""
import json
import sys
from pathlib import Path

import numpy as np

out = Path(sys.argv[1])
print("| model | seeds | r2 | fidelity | L0 | dead | dense | color features recurring "
      "(cosine > 0.9 in both other seeds) | each color's strongest feature recurring | "
      "all live features recurring | median cosine |")
print("|" + " --- |" * 11)
for model in sorted(p for p in out.iterdir() if (p / "stability.json").is_file()):
    metas = [json.loads((d / "sae.json").read_text()) for d in sorted(model.glob("seed*"))]

    def stat(values, digits=3):
        return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"
    stable = json.loads((model / "stability.json").read_text())
    color = stable["by_kind"]["color"]
    print(f"| {model.name} | {len(metas)} | {stat([m['r2'] for m in metas])} | "
          f"{stat([m['fidelity']['score'] for m in metas])} | "
          f"{stat([m['l0'] for m in metas], 1)} | {stat([m['dead_fraction'] for m in metas])} | "
          f"{stat([m['dense_fraction'] for m in metas])} | {color['recurring']} of "
          f"{color['n']} | {stable['strongest_recurring']} of "
          f"{len(stable['strongest_per_color'])} | {stable['recurring_alive']} of {stable['alive']} | "
          f"{stable['median_cosine_alive']:.3f} |")
PYEOF
