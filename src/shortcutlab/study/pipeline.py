"""A small resumable pipeline of stages keyed by the hash of their config and inputs.

Each stage owns a directory ``ROOT/<stage>/`` and a marker ``stage.json`` that records
the stage's key, its status and the summary it returned. A stage's key hashes its
config section together with the keys of the stages it reads, so:

- re-running a finished study skips every stage whose key is unchanged;
- changing one config section re-runs that stage and exactly the stages downstream;
- a stage interrupted mid-way (status ``running`` with the same key) is re-entered with
  ``resume=True`` so that it can pick up its own checkpoints;
- ``force`` re-runs the named stages and everything that depends on them.

Run-wide *runtime* options (the device) reach every stage through its context but never
enter a key: where a study runs does not change what it computes, so moving a finished
study to another device re-runs nothing (as ``train/config.py:RUNTIME_KEYS`` says of runs).

With ``workers`` above one, stages whose inputs are finished run side by side in worker
processes, each with its share of the CPU threads, the stage on the costliest chain first
(:func:`critical_path`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from shortcutlab import __version__
from shortcutlab.allocator import tune_allocator
from shortcutlab.artifacts import config_hash, read_json, write_json
from shortcutlab.errors import ShortcutlabError
from shortcutlab.progress import progress
from shortcutlab.runtime import peak_memory_bytes

MARKER = "stage.json"
log = logging.getLogger("shortcutlab.study.pipeline")


@dataclass(frozen=True)
class StageResult:
    """What a finished stage hands to the stages that read it."""

    name: str
    out: Path
    summary: dict[str, Any]


@dataclass
class StageContext:
    """Everything a stage function may use; it writes only below ``out``.

    Besides its config section and its inputs' results, a stage asks its context for what
    every stage needs: the study's dataset directory, the device (resolved once for the
    whole study), and a model stage's run directory and display label.
    """

    name: str
    out: Path
    config: dict[str, Any]
    inputs: dict[str, StageResult]
    settings: dict[str, Any]
    resume: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def input(self, name: str) -> StageResult:
        if name not in self.inputs:
            raise ShortcutlabError(f"stage {self.name!r} does not read stage {name!r}; "
                                   f"it reads {sorted(self.inputs) or 'nothing'}")
        return self.inputs[name]

    @property
    def dataset_dir(self) -> Path:
        """The dataset directory the ``data`` stage built (its summary's ``dataset``)."""
        data = self.input(DATA_STAGE)
        return data.out / data.summary["dataset"]

    def model_stages(self) -> dict[str, StageResult]:
        """The inputs that are model stages (they name a run directory), in input order."""
        return {name: result for name, result in self.inputs.items() if _is_model(result)}

    def run_dir(self, name: str) -> Path:
        """The run directory model stage ``name`` wrote (its summary's ``run``)."""
        return run_dir_of(self.input(name))

    def label(self, name: str) -> str:
        """How reports and figures name model stage ``name``: ``lazy``, ``cured (jtt)``."""
        method = self.input(name).summary.get("method")
        return f"{name} ({method})" if method else name


DATA_STAGE = "data"


def _is_model(result: StageResult) -> bool:
    return isinstance(result.summary.get("run"), str)


def run_dir_of(result: StageResult) -> Path:
    """The run directory a model stage wrote (its summary's ``run``, else its own dir)."""
    if _is_model(result):
        return result.out / result.summary["run"]
    return result.out


@dataclass(frozen=True)
class Stage:
    """A named step: ``run(context) -> summary`` reading the stages named in ``inputs``."""

    name: str
    run: Callable[[StageContext], dict[str, Any]]
    inputs: tuple[str, ...] = ()
    description: str = ""
    version: int = 1  # bump when the stage's code changes what it produces
    options: Any = None  # a study.options.LikeCommand: its section checked before any stage
    cost: float = 1.0  # its expected time relative to the others: orders the start, no more


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
                 only: Iterable[str] | None = None,
                 device: torch.device | str = "cpu", workers: int = 1,
                 log_file: str | Path | None = None) -> PipelineReport:
    """Run ``stages`` under ``root``; see the module docstring for the rules.

    ``settings`` are run-wide options that every stage's key depends on (e.g. quick
    mode); ``only`` limits the run to the named stages and what they need; ``device``
    reaches every stage's context and no key. ``workers`` above one runs independent
    stages side by side in worker processes (``log_file``: where they log too); the
    report lists stages in ``stages`` order whatever order they finished in.
    """
    root = Path(root)
    device = torch.device(device)
    settings = dict(settings or {})
    keys = stage_keys(stages, config, settings)
    forced = downstream(stages, force)
    wanted = _needed(stages, only) if only is not None else {stage.name for stage in stages}
    selected = [stage for stage in stages if stage.name in wanted]
    report = PipelineReport()
    bar = progress(total=len(selected), desc="study", unit="stage", leave=True)
    try:
        finished = {stage.name: done for stage in selected
                    if (done := _up_to_date(root, stage, keys[stage.name],
                                            stage.name in forced)) is not None}
        if workers <= 1 or len(selected) - len(finished) <= 1:  # nothing to share cores
            for stage in selected:
                bar.set_postfix_str(stage.name)
                if stage.name in finished:
                    _record(report, finished[stage.name], False)
                else:
                    _record(report, _run_stage(root, stage, keys[stage.name], config, settings,
                                               report.results, stage.name in forced, device),
                            True)
                bar.update(1)
        else:
            _run_side_by_side(root, selected, keys, config, settings, finished, forced,
                              device, workers, log_file, report, bar)
    finally:
        bar.close()
    order = [stage.name for stage in selected]
    report.ran.sort(key=order.index)
    report.skipped.sort(key=order.index)
    report.results = {name: report.results[name] for name in order if name in report.results}
    return report


def _record(report: PipelineReport, result: StageResult, ran: bool) -> None:
    report.results[result.name] = result
    (report.ran if ran else report.skipped).append(result.name)


def _run_side_by_side(root: Path, selected: list[Stage], keys: dict[str, str],
                      config: Mapping[str, Any], settings: dict[str, Any],
                      finished: dict[str, StageResult], forced: set[str],
                      device: torch.device, workers: int,
                      log_file: str | Path | None, report: PipelineReport, bar: Any) -> None:
    """Each stage starts as soon as the stages it reads are done, in one of ``workers``
    processes (started once: each imports torch, which costs seconds); a failed stage lets
    the running ones finish, starts nothing more and raises its error."""
    threads = max(1, torch.get_num_threads() // workers)
    rank = critical_path(selected)
    pending = sorted(selected, key=lambda stage: -rank[stage.name])  # stable: ties keep order
    running: dict[Future, str] = {}
    context = multiprocessing.get_context("spawn")  # fork is unsafe once torch has threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        failure: BaseException | None = None
        while pending or running:
            ready = [stage for stage in pending if failure is None
                     and all(name in report.results for name in stage.inputs)]
            while ready:  # an up-to-date stage may make the next one ready at once
                stage = ready.pop(0)
                pending.remove(stage)
                if stage.name in finished:
                    _record(report, finished[stage.name], False)
                    bar.update(1)
                    ready = [stage for stage in pending
                             if all(name in report.results for name in stage.inputs)]
                    continue
                inputs = {name: report.results[name] for name in stage.inputs}
                future = pool.submit(_stage_in_worker, root, stage, keys[stage.name],
                                     dict(config), settings, inputs, stage.name in forced,
                                     str(device), threads,
                                     None if log_file is None else str(log_file))
                running[future] = stage.name
            if not running:
                if failure is not None:
                    raise failure
                if pending:  # cannot happen with stage_keys' order check; never spin
                    names = ", ".join(stage.name for stage in pending)
                    raise ShortcutlabError(f"stages {names} wait on stages that never ran")
                break
            bar.set_postfix_str(", ".join(sorted(running.values())))
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                running.pop(future)
                try:
                    result = future.result()
                except BaseException as error:  # re-raised once the others end
                    failure = failure or error
                    continue
                _record(report, result, True)
                bar.update(1)


def critical_path(stages: list[Stage]) -> dict[str, float]:
    """Each stage's ``cost`` plus the costliest chain of stages that read it: the stage with
    the longest such chain starts first, so that the study ends with no core waiting on
    one long stage that could have started earlier."""
    rank: dict[str, float] = {}
    for stage in reversed(stages):
        readers = [rank[other.name] for other in stages if stage.name in other.inputs]
        rank[stage.name] = stage.cost + max(readers, default=0.0)
    return rank


def _stage_in_worker(root: Path, stage: Stage, key: str, config: Mapping[str, Any],
                     settings: dict[str, Any], inputs: dict[str, StageResult], forced: bool,
                     device: str, threads: int, log_file: str | None) -> StageResult:
    """One stage in a worker process: its threads, its log, no progress bars of its own
    (several stages' bars would interleave; the study's bar names the running stages)."""
    os.environ["SHORTCUTLAB_PROGRESS"] = "0"
    tune_allocator()
    torch.set_num_threads(threads)
    if log_file is not None:
        log_to(Path(log_file))
    return _run_stage(root, stage, key, config, settings, inputs, forced,
                      torch.device(device))


def log_to(path: Path) -> None:
    """Append the library's log records to ``path`` (once per process and path)."""
    logger = logging.getLogger("shortcutlab")
    logger.setLevel(logging.INFO)
    if not any(getattr(h, "baseFilename", None) == str(path.resolve()) for h in logger.handlers):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)


def stage_timings(root: str | Path, names: Iterable[str]) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds of each finished stage, as its marker recorded them."""
    timings = {}
    for name in names:
        path = Path(root) / name / MARKER
        marker = read_json(path) if path.is_file() else {}
        if marker.get("status") == "done":
            timings[name] = {"seconds": marker.get("seconds"),
                             "cpu_seconds": marker.get("cpu_seconds"),
                             "peak_memory_bytes": marker.get("peak_memory_bytes"),
                             "process": marker.get("process")}
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


def _up_to_date(root: Path, stage: Stage, key: str, forced: bool) -> StageResult | None:
    """The stage's result when its marker says it finished with this key (and it is not
    forced), else None."""
    marker_path = root / stage.name / MARKER
    marker = read_json(marker_path) if marker_path.is_file() else None
    if marker is not None and marker.get("key") == key and marker.get("status") == "done" \
            and not forced:
        log.info("stage %s: up to date (key %s), skipped", stage.name, key)
        return StageResult(stage.name, root / stage.name, marker.get("summary", {}))
    return None


def _run_stage(root: Path, stage: Stage, key: str, config: Mapping[str, Any],
               settings: dict[str, Any], results: Mapping[str, StageResult],
               forced: bool, device: torch.device) -> StageResult:
    """Run a stage that is not up to date, resuming its interrupted run unless ``forced``."""
    out = root / stage.name
    marker_path = out / MARKER
    marker = read_json(marker_path) if marker_path.is_file() else None
    resume = (marker is not None and marker.get("key") == key
              and marker.get("status") == "running" and not forced)
    if out.exists() and not resume:
        shutil.rmtree(out)  # outputs of another config (or a forced re-run) must not leak in
    out.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.time(), time.process_time()
    write_json(marker_path, {"stage": stage.name, "key": key, "status": "running",
                             "started": started})
    log.info("stage %s: %s (key %s, %d thread(s))", stage.name,
             "resuming" if resume else "running", key, torch.get_num_threads())
    context = StageContext(
        name=stage.name, out=out, config=dict(config.get(stage.name, {})),
        inputs={name: results[name] for name in stage.inputs}, settings=settings, resume=resume,
        device=device,
    )
    summary = stage.run(context) or {}
    seconds = time.time() - started
    # CPU time of this process, all threads: comparable across loads on a shared machine
    cpu_seconds = time.process_time() - cpu_started
    write_json(marker_path, {"stage": stage.name, "key": key, "status": "done",
                             "started": started, "seconds": seconds,
                             "cpu_seconds": cpu_seconds, "threads": torch.get_num_threads(),
                             "process": os.getpid(),
                             "peak_memory_bytes": peak_memory_bytes(), "summary": summary})
    log.info("stage %s: done in %.1f s (%.1f s CPU)", stage.name, seconds, cpu_seconds)
    return StageResult(stage.name, out, summary)
