"""Feature visualization throughput: units visualized per second, batched vs one at a time.

Both runs optimize the same units of the same model for the same number of steps with
the default Fourier parametrization and transformations; the batched run puts them all
in one batch, the reference visualizes them one by one. One line per layer of cnn3 that
`shortcutlab probe` visualizes: an early layer's units cut the forward pass short (both
ways), so per-step overheads dominate there, while a deep layer's units pay for most of
the network, which bounds what batching can win on a CPU. Target: batched >= 5x.

    python benchmarks/bench_probe.py [--units 32] [--steps 16] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

from shortcutlab import models
from shortcutlab.probe.objectives import Channel
from shortcutlab.probe.visualize import VisConfig, visualize


def units_per_second(model, objectives, config: VisConfig, device) -> float:
    start = time.perf_counter()
    visualize(model, objectives, config, device=device, show_progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(objectives) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("SHORTCUTLAB_PROGRESS", "0")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = models.create("cnn3").to(device).eval()
    layers = ("features.conv1", "features.conv2", "features.conv3", "classifier.fc1")
    workloads = {layer: [Channel(layer, u) for u in range(args.units)] for layer in layers}
    visualize(model, [Channel(layer, 0) for layer in layers], VisConfig(steps=2),
              device=device, show_progress=False)
    print(f"machine: {platform.machine()} {platform.processor() or ''} "
          f"{os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s), "
          f"device {device}")
    print(f"cnn3, {args.units} units x {args.steps} steps per layer, Fourier + jitter/scale/"
          f"rotate, best of {args.repeats}")
    batched = VisConfig(steps=args.steps, batch_units=args.units)
    single = VisConfig(steps=args.steps, batch_units=1)
    seconds_fast = seconds_slow = 0.0
    for name, objectives in workloads.items():
        fast, slow = [], []
        for _ in range(args.repeats):  # interleaved, so load changes hit both alike
            fast.append(units_per_second(model, objectives, batched, device))
            slow.append(units_per_second(model, objectives, single, device))
        best_fast, best_slow = max(fast), max(slow)
        seconds_fast += len(objectives) / best_fast
        seconds_slow += len(objectives) / best_slow
        print(f"{name:16s} batched {best_fast:.2f} units/s, one at a time {best_slow:.2f} "
              f"units/s, ratio {best_fast / best_slow:.1f}x (target >= 5x)")
    print(f"{'all four layers':16s} ratio {seconds_slow / seconds_fast:.1f}x "
          f"(the probe's workload: equal units per layer)")


if __name__ == "__main__":
    main()
