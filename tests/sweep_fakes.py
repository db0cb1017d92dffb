"""Fast stand-ins for training, importable by the sweep's worker processes.

The metrics are a deterministic function of the trial's settings, so tests can check that
each trial got the settings of its grid point.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

FAILING_LR = 0.5
_ARRIVED = False


def fake_metrics(data_dir: Path, train: dict[str, Any]) -> dict[str, Any]:
    bias = json.loads((Path(data_dir) / "meta.json").read_text())["config"]["bias"]
    lr = float(train.get("lr", 0.01))
    width = int(train.get("model_kwargs", {}).get("width", 8))
    hard = round(min(1.0, (1.0 - bias) * 2 + lr + width / 100), 6)
    return {"easy_train": 0.97, "easy_val": 0.96, "test_easy": 0.96, "hard": hard,
            "unbiased": (hard + 0.96) / 2, "color_following_rate": 1 - hard,
            "per_class": {"0": hard}}


def fake_trial(data_dir: Path, run_dir: Path, train: dict[str, Any]) -> dict[str, Any]:
    """Fails (as a broken configuration would) when lr is FAILING_LR."""
    if train.get("lr") == FAILING_LR:
        raise ValueError(f"training diverged at lr={FAILING_LR}")
    return fake_metrics(data_dir, train)


def barrier_trial(data_dir: Path, run_dir: Path, train: dict[str, Any]) -> dict[str, Any]:
    """Like fake_trial, but each worker's first trial waits until every worker has one.

    ``SWEEP_BARRIER`` is a directory and ``SWEEP_BARRIER_N`` the number of workers; the
    workers are then certainly claiming concurrently.
    """
    global _ARRIVED
    barrier = os.environ.get("SWEEP_BARRIER")
    if barrier and not _ARRIVED:
        _ARRIVED = True
        Path(barrier, str(os.getpid())).touch()
        deadline = time.monotonic() + 120
        while len(os.listdir(barrier)) < int(os.environ["SWEEP_BARRIER_N"]):
            if time.monotonic() > deadline:
                raise TimeoutError("the other workers never started")
            time.sleep(0.02)
    return fake_trial(data_dir, run_dir, train)


def interrupting_trial(data_dir: Path, run_dir: Path, train: dict[str, Any]) -> dict[str, Any]:
    """Interrupted once, when SWEEP_INTERRUPT names a file: by Ctrl-C (KeyboardInterrupt),
    or by a SIGTERM to this process when the file says ``sigterm``."""
    flag = os.environ.get("SWEEP_INTERRUPT")
    if flag and Path(flag).exists():
        how = Path(flag).read_text()
        Path(flag).unlink()
        if how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal handler raises long before this ends
        raise KeyboardInterrupt
    return fake_trial(data_dir, run_dir, train)
