"""A small resumable pipeline of stages keyed by the hash of their config and inputs.

Each stage owns a directory ``ROOT/<stage>/`` and a marker ``stage.json`` that records
the stage's key, its status and the summary it returned. A stage's key hashes its
config section together with the keys of the stages it reads, so:

- re-running a finished study skips every stage whose key is unchanged;
- changing one config section re-runs that stage and exactly the stages downstream;
- a stage interrupted mid-way (status ``running`` with the same key) is re-entered with
  ``resume=True`` so that it can pick up its own checkpoints;
- ``force`` re-runs the named stages and everything that depends on them.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shortcutlab import __version__
from shortcutlab.artifacts import config_hash, read_json, write_json
from shortcutlab.errors import ShortcutlabError
from shortcutlab.progress import progress

MARKER = "stage.json"
log = logging.getLogger("shortcutlab.pipeline")


@dataclass(frozen=True)
class StageResult:
    """What a finished stage hands to the stages that read it."""

    name: str
    out: Path
    summary: dict[str, Any]


@dataclass
class StageContext:
    """Everything a stage function may use; it writes only below ``out``."""

    name: str
    out: Path
    config: dict[str, Any]
    inputs: dict[str, StageResult]
    settings: dict[str, Any]
    resume: bool = False

    def input(self, name: str) -> StageResult:
        return self.inputs[name]


@dataclass(frozen=True)
class Stage:
    """A named step: ``run(context) -> summary`` reading the stages named in ``inputs``."""

    name: str
    run: Callable[[StageContext], dict[str, Any]]
    inputs: tuple[str, ...] = ()
    description: str = ""
    version: int = 1  # bump when the stage's code changes what it produces


@dataclass
class PipelineReport:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    results: dict[str, StageResult] = field(default_factory=dict)


def stage_keys(stages: Iterable[Stage], config: Mapping[str, Any],
               settings: Mapping[str, Any]) -> dict[str, str]:
    """Each stage's key: its config section, the shared settings, and its inputs' keys."""
    keys: dict[str, str] = {}
    for stage in stages:
        missing = [name for name in stage.inputs if name not in keys]
        if missing:
            raise ValueError(f"stage {stage.name!r} reads {missing}, which do not run before it")
        keys[stage.name] = config_hash({
            "stage": stage.name,
            "version": [__version__, stage.version],
            "config": config.get(stage.name, {}),
            "settings": dict(settings),
            "inputs": {name: keys[name] for name in stage.inputs},
        })
    return keys


def downstream(stages: list[Stage], names: Iterable[str]) -> set[str]:
    """The named stages and every stage that reads them, directly or not."""
    selected = set(names)
    known = {stage.name for stage in stages}
    unknown = selected - known
    if unknown:
        raise ShortcutlabError(f"unknown stage(s) {sorted(unknown)}; stages are {sorted(known)}")
    for stage in stages:
        if selected.intersection(stage.inputs):
            selected.add(stage.name)
    return selected


def run_pipeline(root: str | Path, stages: list[Stage], config: Mapping[str, Any],
                 settings: Mapping[str, Any] | None = None, force: Iterable[str] = (),
                 only: Iterable[str] | None = None) -> PipelineReport:
    """Run ``stages`` in order under ``root``; see the module docstring for the rules.

    ``settings`` are run-wide options that every stage's key depends on (e.g. quick
    mode); ``only`` limits the run to the named stages and what they need.
    """
    root = Path(root)
    settings = dict(settings or {})
    keys = stage_keys(stages, config, settings)
    forced = downstream(stages, force)
    wanted = _needed(stages, only) if only is not None else {stage.name for stage in stages}
    report = PipelineReport()
    bar = progress(total=len(wanted), desc="study", unit="stage", leave=True)
    try:
        for stage in stages:
            if stage.name not in wanted:
                continue
            bar.set_postfix_str(stage.name)
            result, ran = _run_stage(root, stage, keys[stage.name], config, settings,
                                     report.results, stage.name in forced)
            report.results[stage.name] = result
            (report.ran if ran else report.skipped).append(stage.name)
            bar.update(1)
    finally:
        bar.close()
    return report


def stage_timings(root: str | Path, names: Iterable[str]) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds of each finished stage, as its marker recorded them."""
    timings = {}
    for name in names:
        path = Path(root) / name / MARKER
        marker = read_json(path) if path.is_file() else {}
        if marker.get("status") == "done":
            timings[name] = {"seconds": marker.get("seconds"),
                             "cpu_seconds": marker.get("cpu_seconds")}
    return timings


def _needed(stages: list[Stage], only: Iterable[str]) -> set[str]:
    by_name = {stage.name: stage for stage in stages}
    unknown = set(only) - set(by_name)
    if unknown:
        raise ShortcutlabError(f"unknown stage(s) {sorted(unknown)}; stages are {sorted(by_name)}")
    needed: set[str] = set()
    pending = list(only)
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending.extend(by_name[name].inputs)
    return needed


def _run_stage(root: Path, stage: Stage, key: str, config: Mapping[str, Any],
               settings: dict[str, Any], results: dict[str, StageResult],
               forced: bool) -> tuple[StageResult, bool]:
    out = root / stage.name
    marker_path = out / MARKER
    marker = read_json(marker_path) if marker_path.is_file() else None
    same_key = marker is not None and marker.get("key") == key
    if same_key and marker.get("status") == "done" and not forced:
        log.info("stage %s: up to date (key %s), skipped", stage.name, key)
        return StageResult(stage.name, out, marker.get("summary", {})), False
    resume = same_key and marker.get("status") == "running" and not forced
    if out.exists() and not resume:
        shutil.rmtree(out)  # outputs of another config (or a forced re-run) must not leak in
    out.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.time(), time.process_time()
    write_json(marker_path, {"stage": stage.name, "key": key, "status": "running",
                             "started": started})
    log.info("stage %s: %s (key %s)", stage.name, "resuming" if resume else "running", key)
    context = StageContext(
        name=stage.name, out=out, config=dict(config.get(stage.name, {})),
        inputs={name: results[name] for name in stage.inputs}, settings=settings, resume=resume,
    )
    summary = stage.run(context) or {}
    seconds = time.time() - started
    # CPU time of this process, all threads: comparable across loads on a shared machine
    cpu_seconds = time.process_time() - cpu_started
    write_json(marker_path, {"stage": stage.name, "key": key, "status": "done",
                             "started": started, "seconds": seconds,
                             "cpu_seconds": cpu_seconds, "summary": summary})
    log.info("stage %s: done in %.1f s (%.1f s CPU)", stage.name, seconds, cpu_seconds)
    return StageResult(stage.name, out, summary), True
