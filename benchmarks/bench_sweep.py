"""What a sweep costs per trial beyond the training itself, against plain Optuna.

Both run the same 48-point grid of a no-op objective that records ten metrics as user
attributes, on a fresh SQLite study each:

- reference: ``study.optimize`` with Optuna's ``GridSampler`` (one process, no lock, no
  heartbeat, no dataset cache: what a hand-written Optuna loop does);
- shortcutlab: ``run_sweep`` with one worker (claim lock, stale-trial check, heartbeat,
  dataset cache lookup, ``sweep_trial.json``, bookkeeping attributes).

It prints the milliseconds per trial of each and their ratio. The number that matters is
the absolute overhead: a real trial trains for seconds to minutes, so tens of
milliseconds of bookkeeping are noise.

    python benchmarks/bench_sweep.py [--points 48]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SHORTCUTLAB_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

METRICS = {"easy_train": 0.97, "easy_val": 0.96, "test_easy": 0.96, "hard": 0.1,
           "unbiased": 0.5, "color_following_rate": 0.9, "selected_step": 100,
           "epochs_trained": 1.0, "method": "erm", "preset": "lazy"}


def noop_trial(data_dir, run_dir, train):
    return dict(METRICS, hard=train["lr"] * train["batch_size"] / 1000)


def grid(points: int) -> dict:
    lrs = [0.001 * (i + 1) for i in range(points // 4)]
    return {"train.lr": lrs, "train.batch_size": [32, 64], "train.model_kwargs.width": [8, 16]}


def reference(points: int, folder: Path) -> float:
    import optuna

    space = grid(points)

    def objective(trial):
        params = {name: trial.suggest_categorical(name, values) for name, values in space.items()}
        metrics = noop_trial(None, None, {"lr": params["train.lr"],
                                          "batch_size": params["train.batch_size"]})
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        return metrics["hard"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'reference.db'}")
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.GridSampler(space))
    start = time.perf_counter()
    study.optimize(objective)
    elapsed = time.perf_counter() - start
    assert len(study.trials) == points
    return elapsed


def shortcutlab_sweep(points: int, folder: Path) -> float:
    from shortcutlab.sweep import parse_spec, run_sweep
    from shortcutlab.sweep.datasets import ensure_dataset
    from shortcutlab.sweep.runner import open_study, resolve_paths

    space = grid(points)
    spec = parse_spec({
        "study": "bench",
        "fixed": {"data": {"source": "synthetic", "limit": 20}},
        "axes": {"train": {"lr": space["train.lr"], "batch_size": space["train.batch_size"],
                           "model_kwargs.width": space["train.model_kwargs.width"]}},
    })
    paths = resolve_paths(spec, folder / "sweep")
    ensure_dataset(dict(spec.fixed_data), paths.datasets)  # built before the clock starts
    open_study(spec, paths.storage)  # so is the study, as in the reference
    start = time.perf_counter()
    summary = run_sweep(spec, output=paths.output, run_trial=noop_trial)
    elapsed = time.perf_counter() - start
    assert summary["done"] == points
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=48, help="grid points (a multiple of 4)")
    args = parser.parse_args()
    import optuna

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shortcutlab_sweep(8, folder / "warmup")  # imports and first-use costs out of the way
        reference_s = reference(args.points, folder)
        ours_s = shortcutlab_sweep(args.points, folder)
    per = 1000 / args.points
    print(f"machine: {platform.node()}, {os.cpu_count()} cpus, python {platform.python_version()},"
          f" optuna {optuna.__version__}")
    print(f"{args.points} grid points, no-op trials, SQLite")
    print(f"plain Optuna (GridSampler + optimize): {reference_s * per:7.1f} ms/trial")
    print(f"shortcutlab sweep (1 worker):          {ours_s * per:7.1f} ms/trial")
    print(f"ratio (shortcutlab / plain Optuna):    {ours_s / reference_s:7.2f}x")
    print(f"overhead: {(ours_s - reference_s) * per:.1f} ms per trial")


if __name__ == "__main__":
    main()
