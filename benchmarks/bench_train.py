"""Training throughput of the trainer against a bare PyTorch loop, and peak memory.

Both train the same model (cnn3 at its default width, SGD) with the same batch size on
the same in-memory tensors, in separate child processes (so each one's peak resident
memory is its own), alternating several times; the figure is the median images/s of
each. The trainer's time is its training loop up to the final evaluation (the log's
``elapsed_s``), so the ratio measures its bookkeeping: batch order, Batch objects, the lr
schedule, loss accumulation, the progress bar and the algorithm indirection.

    python benchmarks/bench_train.py [--data DIR] [--steps 200] [--repeats 3] [--threads 2]

Without ``--data`` a synthetic dataset is built in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from synthetic_data import dataset_or_synthetic  # noqa: E402  (beside this script)


def bare_loop(data: str, steps: int, batch_size: int, channels_last: bool) -> float:
    """The minimal loop: index tensors, forward, cross-entropy, backward, step."""
    import torch

    from shortcutlab import models
    from shortcutlab.data import load_split

    split = load_split(data, "train")
    images = split.image_tensor()
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.from_numpy(split.labels)
    torch.manual_seed(0)
    model = models.create("cnn3")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(labels), generator=generator)
    per_epoch = len(labels) // batch_size
    start = time.perf_counter()
    for step in range(steps):
        if step and step % per_epoch == 0:
            order = torch.randperm(len(labels), generator=generator)
        index = order[(step % per_epoch) * batch_size:(step % per_epoch + 1) * batch_size]
        loss = torch.nn.functional.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def trainer_loop(data: str, steps: int, batch_size: int) -> float:
    from shortcutlab.artifacts import read_jsonl
    from shortcutlab.train import train_run

    with tempfile.TemporaryDirectory() as out:
        train_run(data, out, preset=None, model="cnn3", optimizer="sgd", lr=0.01,
                  momentum=0.9, batch_size=batch_size, steps=steps, eval_every=steps,
                  select="last", device="cpu", force=True)
        return read_jsonl(Path(out) / "log.jsonl")[-1]["elapsed_s"]


def child(args: argparse.Namespace) -> None:
    import torch

    from shortcutlab.runtime import peak_memory_bytes

    torch.set_num_threads(args.threads)
    os.environ["SHORTCUTLAB_PROGRESS"] = "1"  # the trainer's bar is part of its cost
    if args.mode == "trainer":
        seconds = trainer_loop(args.data, args.steps, args.batch_size)
    else:
        seconds = bare_loop(args.data, args.steps, args.batch_size, args.mode == "bare-cl")
    peak_mib = peak_memory_bytes() / 2**20
    print(json.dumps({"mode": args.mode, "seconds": seconds,
                      "images_per_s": args.steps * args.batch_size / seconds,
                      "peak_rss_mib": peak_mib}))


def run_child(mode: str, args: argparse.Namespace, data: str) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--data", data,
               "--steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--threads", str(args.threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset directory (default: build a synthetic one)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", dest="mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        child(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = dataset_or_synthetic(args.data, tmp)
        results: dict[str, list[dict]] = {"bare": [], "bare-cl": [], "trainer": []}
        for _ in range(args.repeats):
            for mode in results:
                results[mode].append(run_child(mode, args, data))

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"threads {args.threads}; cnn3, SGD, batch {args.batch_size}, {args.steps} steps, "
          f"median of {args.repeats}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'loop':<34}{'images/s':>10}{'peak RSS MiB':>14}")
    names = {"bare": "bare PyTorch loop", "bare-cl": "bare loop, channels_last",
             "trainer": "shortcutlab trainer (channels_last)"}
    for mode, name in names.items():
        print(f"{name:<34}{median(mode, 'images_per_s'):>10.0f}"
              f"{median(mode, 'peak_rss_mib'):>14.0f}")
    same_layout = median("trainer", "images_per_s") / median("bare-cl", "images_per_s")
    default = median("trainer", "images_per_s") / median("bare", "images_per_s")
    print(f"trainer / bare loop, same memory layout: {same_layout:.2f}x (target >= 0.9x)")
    print(f"trainer / bare loop, PyTorch default layout: {default:.2f}x")


if __name__ == "__main__":
    main()
