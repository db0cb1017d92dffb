"""Time per epoch of every intervention relative to plain ERM, measured in the same run.

Each method takes the same training steps on the same batches (cnn3 at its default
width, the method's own batch size); ERM is measured in turns with the methods, so
load on a shared machine hits both alike and the ratio stays meaningful. TEA's ratio
is the price of its double backpropagation (LRP heatmaps built with a graph, then
differentiated again). TEA's teacher is an untrained cnn3: timing does not depend on
its weights.

    python benchmarks/bench_intervene.py [--data DIR] [--steps 20] [--threads 1] \
        [--device cuda]

On a GPU (``--device cuda``) the data and the models live on it and every timing waits
for the GPU to finish (``torch.cuda.synchronize``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from shortcutlab import models
from shortcutlab.data import BuildConfig, build_dataset, load_meta, load_source
from shortcutlab.intervene import get_method, list_methods, resolve_hparams
from shortcutlab.train.algorithm import TrainContext
from shortcutlab.train.data import load_tensor_split


def make_algorithm(method: str, data_dir: Path, train, teacher_dir: Path, total: int,
                   device: torch.device):
    torch.manual_seed(0)
    overrides = {"teacher": str(teacher_dir)} if method == "tea" else {}
    hparams = resolve_hparams(method, overrides)
    algorithm = get_method(method)(models.create("cnn3").to(device), hparams)
    algorithm.setup(TrainContext(
        num_train=len(train), total_steps=total, device=device,
        train=train.as_dict(), generator=torch.Generator().manual_seed(0), seed=0,
        data_dir=data_dir, steps_per_epoch=len(train) // hparams["batch_size"],
        batch_size=hparams["batch_size"]))
    algorithm.train()
    return algorithm, hparams


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(algorithm, train, batch_size: int, steps: int, first_step: int,
               device: torch.device) -> float:
    """Seconds per step over ``steps`` steps (after one warm-up step)."""
    generator = torch.Generator().manual_seed(1)
    batches = [train.batch(torch.randint(0, len(train), (batch_size,),
                                         generator=generator).to(device))
               for _ in range(steps + 1)]
    algorithm.update(batches[0], first_step)
    synchronize(device)
    start = time.perf_counter()
    for offset, batch in enumerate(batches[1:], start=1):
        algorithm.update(batch, first_step + offset)
    synchronize(device)
    return (time.perf_counter() - start) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset directory (default: a synthetic one)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per method")
    parser.add_argument("--rounds", type=int, default=2,
                        help="times each method is measured (ERM before each)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", help="comma-separated subset")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from shortcutlab.runtime import resolve_device

    device = resolve_device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = Path(args.data) if args.data else tmp / "data"
        if not args.data:
            config = BuildConfig(source="synthetic", limit=4000)
            build_dataset(config, data_dir, load_source("synthetic", limit=4000))
        train = load_tensor_split(data_dir, "train", device=device, channels_last=True)
        teacher_dir = tmp / "teacher"
        torch.manual_seed(0)
        models.save(models.create("cnn3"), teacher_dir)
        methods = args.methods.split(",") if args.methods else list_methods()
        erm_times, rows = [], []
        for method in methods:
            times = []
            for _ in range(args.rounds):
                erm, erm_hparams = make_algorithm("erm-control", data_dir, train, teacher_dir,
                                                  10**6, device)
                erm_times.append(time_steps(erm, train, erm_hparams["batch_size"], args.steps, 0,
                                            device))
                # JTT is timed in its second stage (its steady state): switch at step 1.
                total = 2 if method == "jtt" else 10**6
                algorithm, hparams = make_algorithm(method, data_dir, train, teacher_dir, total,
                                                    device)
                first = 1 if method == "jtt" else 0
                if method == "jtt":
                    algorithm.update(train.batch(torch.arange(hparams["batch_size"],
                                                              device=device)), 0)
                per_step = time_steps(algorithm, train, hparams["batch_size"], args.steps, first,
                                      device)
                # Compare per image, since batch sizes may differ between methods.
                times.append(per_step / hparams["batch_size"] * erm_hparams["batch_size"])
                ratio = times[-1] / erm_times[-1]
                print(f"  {method:<18} {per_step * 1000:8.1f} ms/step  x{ratio:.2f} ERM",
                      flush=True)
            rows.append((method, statistics.median(times), hparams["batch_size"]))
        erm_step = statistics.median(erm_times)

    num_train = int(load_meta(args.data)["sizes"]["train"]) if args.data else 50000
    print()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {args.threads} thread(s)"
    print(f"machine: {where}, torch "
          f"{torch.__version__}; {args.steps} steps x "
          f"{args.rounds} rounds; epoch = {num_train} images")
    print(f"{'method':<18} {'s/epoch':>9} {'x ERM':>7}")
    print(f"{'erm (reference)':<18} {erm_step * num_train / 128:9.1f} {1.0:7.2f}")
    for method, per_step, _batch in rows:
        print(f"{method:<18} {per_step * num_train / 128:9.1f} {per_step / erm_step:7.2f}")
    tea = [row for row in rows if row[0] == "tea"]
    if tea:
        print(f"TEA double-backpropagation factor: {tea[0][1] / erm_step:.2f}x ERM per image")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
