"""Train presets over seeds and print the tables of docs/results.md (section train).

    python scripts/train_presets.py --data /path/to/cmnist --out runs/presets \
        [--presets lazy standard] [--seeds 0 1 2 3 4] [--jobs 2] [--threads 1]

Finished runs are reused (``resume=True``), so an interrupted sweep continues. Prints a
markdown table of mean +- sample std over seeds for every metric and the time taken,
then one row per run, and writes ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

METRICS = ("easy_train", "easy_val", "test_easy", "hard", "unbiased", "color_following_rate")
BARS = {"easy_train": (">", 0.95), "easy_val": (">", 0.95), "hard": ("<", 0.20)}


def run_one(job: tuple[str, str, str, int, int]) -> dict:
    data, out, preset, seed, threads = job
    from shortcutlab.train import train_run

    metrics = train_run(data, Path(out) / f"{preset}-s{seed}", preset=preset, seed=seed,
                        resume=True, device="cpu", threads=threads)
    return {"preset": preset, "seed": seed, "load_after": os.getloadavg()[0], **metrics}


def mean_std(values: list[float], digits: int = 4) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def meets(metrics: dict) -> bool:
    return all((metrics[k] > v) if op == ">" else (metrics[k] < v) for k, (op, v) in BARS.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--presets", nargs="+", default=["lazy", "standard"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("SHORTCUTLAB_PROGRESS", "0")
    jobs = [(args.data, args.out, p, s, args.threads) for p in args.presets for s in args.seeds]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_one, jobs))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    slim = [{k: v for k, v in r.items() if k != "splits"} for r in results]
    (Path(args.out) / "summary.json").write_text(json.dumps(slim, indent=2) + "\n")

    print("| preset | " + " | ".join(METRICS) + " | selected step | wall s | CPU s |")
    print("|---" * (len(METRICS) + 4) + "|")
    for preset in args.presets:
        rows = [r for r in results if r["preset"] == preset]
        cells = [mean_std([r[m] for r in rows]) for m in METRICS]
        cells.append(mean_std([r["selected_step"] for r in rows], 0))
        cells.append(mean_std([r["total_seconds"] for r in rows], 0))
        cells.append(mean_std([r["cpu_seconds"] for r in rows], 0))
        print(f"| {preset} | " + " | ".join(cells) + " |")
    print()
    print("| preset | seed | " + " | ".join(METRICS) + " | selected step | wall s | CPU s "
          "| load | bars met |")
    print("|---" * (len(METRICS) + 7) + "|")
    for r in results:
        cells = [f"{r[m]:.4f}" for m in METRICS]
        print(f"| {r['preset']} | {r['seed']} | " + " | ".join(cells)
              + f" | {r['selected_step']} | {r['total_seconds']:.0f} | {r['cpu_seconds']:.0f}"
              f" | {r['load_after']:.1f} | {'yes' if meets(r) else 'no'} |")


if __name__ == "__main__":
    main()
