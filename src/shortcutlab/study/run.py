"""The whole study, wired: the one place that lists the tasks, the order their stages run
in, and ``run_study``. The machinery (keys, resume, skipping) lives in
:mod:`shortcutlab.study.pipeline`; each task's stage, summary and report section live in
its own file; the stages' work lives in the library packages.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from shortcutlab.artifacts import write_json
from shortcutlab.errors import ShortcutlabError
from shortcutlab.runtime import peak_memory_bytes, resolve_device, set_threads
from shortcutlab.study import attack, cured, data, explain, probe, sae, train
from shortcutlab.study.config import load_config
from shortcutlab.study.options import check_study_options
from shortcutlab.study.pipeline import (
    PipelineReport,
    Stage,
    log_to,
    run_pipeline,
    stage_timings,
)
from shortcutlab.study.report.frame import write_report
from shortcutlab.study.task import Summaries, Task

TASKS: tuple[Task, ...] = (data.TASK, train.TASK, probe.TASK, explain.TASK, cured.TASK,
                           attack.TASK, sae.TASK)
"""The tasks in report order (Task 0 to Task 6)."""

# Run order: a stage runs after the stages it reads. Tasks 2 and 3 read the cured model of
# Task 4, so the cured stage runs before them.
STAGES: list[Stage] = [stage for task in (data.TASK, train.TASK, cured.TASK, probe.TASK,
                                          explain.TASK, attack.TASK, sae.TASK)
                       for stage in task.stages]


def study_headline(stages: Summaries) -> dict[str, Any]:
    """The headline numbers of every task, from the stages' summaries (what ran)."""
    return {task.key: task.headline(stages) for task in TASKS}


def build_report(study_dir: str | Path) -> Path:
    """Write ``study_dir/report.html`` from the study's artifacts; return its path."""
    return write_report(study_dir, [task.section for task in TASKS])


def run_study(out: str | Path, config_path: str | Path | None = None, quick: bool = False,
              force: tuple[str, ...] = (), only: tuple[str, ...] | None = None,
              seed: int | None = None,
              runtime: Mapping[str, Any] | None = None) -> PipelineReport:
    """Run (or resume) the study into ``out`` and write ``summary.json`` and the report.

    ``seed`` replaces ``[study] seed``, which every stage's seed defaults to; ``runtime``
    (``device``, ``threads``) replaces ``[study]``'s where not None.
    """
    out = Path(out)
    config = load_config(config_path, quick=quick, seed=seed, runtime=runtime)
    # every section, also of the stages --only leaves out: a bad config is refused whole
    check_study_options(config, {stage.name: stage.options for stage in STAGES
                                 if stage.options is not None})
    study = config["study"]
    device = resolve_device(study.get("device", "auto"))  # once, for every stage
    names = {stage.name for stage in STAGES}
    unknown = sorted((set(force) | set(only or ())) - names)
    if unknown:  # before anything is written
        raise ShortcutlabError(f"unknown stage(s) {', '.join(unknown)}; stages are "
                               f"{', '.join(stage.name for stage in STAGES)}")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config)
    log_to(out / "study.log")
    set_threads(study.get("threads") or None)
    workers = study_workers(study.get("workers", 0), device)
    started = time.time()
    report = run_pipeline(out, STAGES, config, settings={"quick": quick}, force=force,
                          only=only, device=device, workers=workers,
                          log_file=out / "study.log")
    summary = {name: result.summary for name, result in report.results.items()}
    timings = stage_timings(out, summary)
    write_json(out / "summary.json", {
        "quick": quick, "seed": study["seed"], "device": str(device), "workers": workers,
        "headline": study_headline(summary), "stages": summary,
        "ran": report.ran, "skipped": report.skipped,
        "timings": timings, "seconds": time.time() - started,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "peak_memory_bytes": study_peak_memory(timings, report.ran),
    })
    build_report(out)
    return report


def study_workers(workers: int, device: torch.device) -> int:
    """``[study] workers``: 0 picks one stage process per two cores on the CPU (at most
    four) and one on a GPU, where a stage is not CPU-bound.

    One per core was measured and lost: on 2 cores a study stage on one thread takes about
    1.6x its time on two, and the study's longest chain (data, cured, sae) is over half of
    its work, so the quick study took 404 s with two one-thread workers against 342 s with
    one two-thread process."""
    if workers < 0:
        raise ShortcutlabError(f"[study] workers must be 0 (auto) or at least 1, got {workers}")
    if workers:
        return workers
    return 1 if device.type != "cpu" else max(1, min(4, (os.cpu_count() or 1) // 2))


def study_peak_memory(timings: Mapping[str, Mapping[str, Any]], ran: list[str]) -> int | None:
    """The most resident memory the study held at once, as far as this command ran it:
    this process's peak when the stages ran in it, else an upper bound, this process's peak
    plus each worker process's (the largest its stages' markers recorded)."""
    own = peak_memory_bytes()
    if own is None:
        return None
    pid = os.getpid()
    workers: dict[int, int] = {}
    for name, entry in timings.items():
        process = entry.get("process")
        if name in ran and process not in (None, pid):
            workers[process] = max(workers.get(process, 0), entry.get("peak_memory_bytes") or 0)
    return own + sum(workers.values())
