"""The whole study, wired: the one place that lists the tasks, the order their stages run
in, and ``run_study``. The machinery (keys, resume, skipping) lives in
:mod:`shortcutlab.study.pipeline`; each task's stage, summary and report section live in
its own file; the stages' work lives in the library packages.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import write_json
from shortcutlab.errors import ShortcutlabError
from shortcutlab.runtime import resolve_device, set_threads
from shortcutlab.study import attack, cured, data, explain, probe, sae, train
from shortcutlab.study.config import load_config
from shortcutlab.study.options import check_study_options
from shortcutlab.study.pipeline import PipelineReport, Stage, run_pipeline, stage_timings
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
    _log_to(out / "study.log")
    set_threads(study.get("threads") or None)
    started = time.time()
    report = run_pipeline(out, STAGES, config, settings={"quick": quick}, force=force,
                          only=only, device=device)
    summary = {name: result.summary for name, result in report.results.items()}
    write_json(out / "summary.json", {
        "quick": quick, "seed": study["seed"], "device": str(device),
        "headline": study_headline(summary), "stages": summary,
        "ran": report.ran, "skipped": report.skipped,
        "timings": stage_timings(out, summary), "seconds": time.time() - started,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "peak_memory_bytes": peak_memory_bytes(),
    })
    build_report(out)
    return report


def peak_memory_bytes() -> int | None:
    """This process's peak resident memory so far (the whole study when it ran in one
    command; a resumed study's counts only this command), None where it is not known."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # Linux: KiB


def _log_to(path: Path) -> None:
    logger = logging.getLogger("shortcutlab")
    logger.setLevel(logging.INFO)
    if not any(getattr(h, "baseFilename", None) == str(path.resolve()) for h in logger.handlers):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
