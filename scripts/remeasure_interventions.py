"""Measure again the extras (inverted hard set, Grad-CAM background share) of finished runs.

    python scripts/remeasure_interventions.py --data DATA runs/intervene

Runs measured before the background share left out images without any positive
Grad-CAM attribution carry a NaN share; this rewrites ``hard_inverted`` and
``background_share`` in each finished run's ``metrics.json`` (atomically), then
``shortcutlab intervene --all --table-only`` rebuilds the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table_dir", type=Path)
    parser.add_argument("--data", required=True)
    args = parser.parse_args()

    from shortcutlab.artifacts import write_json
    from shortcutlab.intervene.measure import extra_metrics

    for metrics_file in sorted(args.table_dir.glob("*/**/metrics.json")):
        run_dir = metrics_file.parent
        metrics = json.loads(metrics_file.read_text())
        metrics.update(extra_metrics(run_dir, args.data))
        write_json(metrics_file, metrics)
        print(f"{run_dir}: background share {metrics['background_share']:.3f}, "
              f"hard inverted {metrics['hard_inverted']:.3f}")


if __name__ == "__main__":
    main()
