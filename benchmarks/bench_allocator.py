"""The C allocator's settings (shortcutlab.allocator.tune_allocator) against glibc's defaults.

The same training run (the ``standard`` preset for a fixed number of steps, then its
evaluation of every split) in child processes, one with the settings and one with
``SHORTCUTLAB_MALLOC=0``, alternating; the figures are the median of each: wall time,
user and system CPU time, peak resident memory, and the model's SHA-256 (which must be
the same: the allocator changes where memory comes from, not what is computed).

    python benchmarks/bench_allocator.py [--data DIR] [--steps 120] [--repeats 3] [--threads 2]

Without ``--data`` a synthetic dataset of 10,000 images per split is built in a temporary
directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from synthetic_data import dataset_or_synthetic  # noqa: E402  (beside this script)


def child(args: argparse.Namespace) -> None:
    from shortcutlab.allocator import tune_allocator

    tuned = tune_allocator()
    import torch

    from shortcutlab.runtime import peak_memory_bytes
    from shortcutlab.train import train_run

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        train_run(args.data, out, preset="standard", steps=args.steps, device="cpu",
                  force=True, early_stop=False)
        seconds = time.perf_counter() - start
        digest = hashlib.sha256((Path(out) / "model.pt").read_bytes()).hexdigest()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"tuned": tuned, "seconds": seconds, "user": usage.ru_utime,
                      "system": usage.ru_stime, "peak_rss_mib": peak_memory_bytes() / 2**20,
                      "sha256": digest}))


def run_child(tuned: bool, args: argparse.Namespace, data: str) -> dict:
    command = [sys.executable, __file__, "--child", "--data", data, "--steps", str(args.steps),
               "--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SHORTCUTLAB_PROGRESS": "0",
           "SHORTCUTLAB_MALLOC": "1" if tuned else "0"}
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset directory (default: build a synthetic one)")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = dataset_or_synthetic(args.data, tmp, limit=10000)
        results: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(args.repeats):
            for tuned in results:
                results[tuned].append(run_child(tuned, args, data))

    def median(tuned: bool, key: str) -> float:
        return statistics.median(r[key] for r in results[tuned])

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"threads {args.threads}; standard preset, {args.steps} steps and its evaluation, "
          f"median of {args.repeats}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'allocator':<28}{'wall s':>8}{'user s':>8}{'system s':>10}{'peak RSS MiB':>14}")
    names = {False: "glibc defaults", True: "tune_allocator()"}
    for tuned, name in names.items():
        print(f"{name:<28}{median(tuned, 'seconds'):>8.1f}{median(tuned, 'user'):>8.1f}"
              f"{median(tuned, 'system'):>10.1f}{median(tuned, 'peak_rss_mib'):>14.0f}")
    if not all(r["tuned"] for r in results[True]):
        print("tune_allocator() did not apply here (not glibc?): both rows are the defaults")
    digests = {r["sha256"] for rows in results.values() for r in rows}
    print(f"same model bytes in every run: {len(digests) == 1}")
    print(f"wall time, tuned / defaults: "
          f"{median(True, 'seconds') / median(False, 'seconds'):.2f}x (lower is faster)")


if __name__ == "__main__":
    main()
