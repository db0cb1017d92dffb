"""Running sweeps: claiming trials, running them, recording what happened.

A worker loops: claim a trial (under the study's claim lock), build or reuse its dataset,
train, record every metric as a trial user attribute, tell Optuna the objective. A trial
that raises is told as FAIL with its error recorded, and the worker goes on to the next.

Grids use Optuna's GridSampler; the grid point of each trial is chosen by the claim (the
first point, in the sampler's seeded shuffled order, that no live or finished trial holds)
instead of the sampler's own lock-free guess, so concurrent workers never run a point
twice. A trial whose worker died (no heartbeat for ``GRACE_PERIOD_S``) or was interrupted
releases its point, which the next claim picks up again; a trial that failed with an
error keeps it, so a broken configuration is not retried forever. Searches use TPE with
the constant-liar heuristic (running trials count as bad guesses, so parallel workers
spread out) and stop after ``n_trials`` trials in total, across all workers.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import config_hash, write_json
from shortcutlab.errors import ShortcutlabError
from shortcutlab.sweep.datasets import dataset_identity, ensure_dataset
from shortcutlab.sweep.spec import SweepSpec
from shortcutlab.sweep.storage import (
    HEARTBEAT_INTERVAL_S,
    ClaimLock,
    default_url,
    normalize_url,
    open_storage,
    quiet_optuna,
    redact,
)

# run_trial(data_dir, run_dir, train_config) -> metrics (the content of metrics.json)
RunTrial = Callable[[Path, Path, dict[str, Any]], Mapping[str, Any]]

# User attributes the sweep itself writes; everything else a trial records is a metric.
BOOKKEEPING_ATTRS = (
    "dataset", "dataset_dir", "dataset_built", "run_dir", "worker", "duration_s", "error",
    "failure",
)
ERROR_CHARS = 2000


def train_trial(data_dir: Path, run_dir: Path, train: dict[str, Any]) -> Mapping[str, Any]:
    """The default trial: ``shortcutlab.train.train_run`` with the trial's settings.

    Always asked to resume: a run directory left by a worker that died continues where it
    stopped, a finished one returns its metrics, an empty one starts fresh.
    """
    try:
        from shortcutlab.train import train_run
    except ImportError as exc:
        raise ShortcutlabError(
            "this shortcutlab has no trainer (shortcutlab.train.train_run); "
            "set `runner:` in the spec to a function of your own"
        ) from exc
    config = dict(train)
    preset = config.pop("preset", "lazy")
    seed = config.pop("seed", 0)
    algorithm = config.pop("algorithm", None)
    # Settings given for one algorithm (``hparams.<algorithm>.<key>``) reach its trials only.
    config.update(config.pop("hparams", {}).get(algorithm or "erm", {}))
    return train_run(data_dir, run_dir, preset=preset, seed=seed, resume=True,
                     algorithm=algorithm, **config)


def resolve_runner(spec: SweepSpec, run_trial: RunTrial | None = None) -> RunTrial:
    if run_trial is not None:
        return run_trial
    if spec.runner is None:
        return train_trial
    module_name, _, attr = spec.runner.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ShortcutlabError(f"cannot import runner {spec.runner!r}: {exc}") from exc
    if not callable(function):
        raise ShortcutlabError(f"runner {spec.runner!r} is not callable")
    return function


@dataclass(frozen=True)
class SweepPaths:
    """Where a sweep writes: its output directory, trial runs, dataset cache, storage."""

    output: Path
    datasets: Path
    storage: str

    @property
    def runs(self) -> Path:
        return self.output / "runs"


def resolve_paths(spec: SweepSpec, output: str | os.PathLike | None = None,
                  storage: str | None = None, datasets: str | os.PathLike | None = None
                  ) -> SweepPaths:
    """Command line first, then the spec, then ``runs/sweeps/STUDY`` (relative to the cwd)."""
    out = Path(output or spec.output or Path("runs") / "sweeps" / spec.study).resolve()
    data = Path(datasets or spec.datasets or out / "datasets").resolve()
    url = normalize_url(storage or spec.storage) if (storage or spec.storage) else default_url(out)
    return SweepPaths(output=out, datasets=data, storage=url)


# ---------------------------------------------------------------------------- the study


def _trial_holds_point(trial: Any, retry_failed: bool = False) -> bool:
    """Whether a trial keeps its grid point (or search budget) from being claimed again.

    Died or interrupted workers release the point; so does an error, where the spec
    retries failed points (each worker at most once: see :func:`work`).
    """
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        return "error" in trial.user_attrs and not retry_failed
    return True


def _make_grid_sampler(spec: SweepSpec, grid_id: int | None = None) -> Any:
    from optuna.samplers import GridSampler

    class ClaimedGridSampler(GridSampler):
        """GridSampler whose point for the next trial was chosen under the claim lock."""

        def before_trial(self, study: Any, trial: Any) -> None:
            if grid_id is None:
                raise ShortcutlabError("grid trials are created by a sweep worker's claim only")
            study._storage.set_trial_system_attr(trial._trial_id, "search_space",
                                                 self._search_space)
            study._storage.set_trial_system_attr(trial._trial_id, "grid_id", grid_id)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            # GridSampler stops study.optimize here; workers stop when nothing is left
            # to claim instead (and study.stop() outside optimize raises)
            pass

    return ClaimedGridSampler(spec.grid_space(), seed=spec.seed)


def _make_search_sampler(spec: SweepSpec, number: int) -> Any:
    import optuna

    # a fresh seed per trial number: one worker reproduces its search, and parallel
    # workers (even on machines that cannot tell each other apart) do not propose alike
    return optuna.samplers.TPESampler(
        seed=(spec.seed * 1_000_003 + number) % 2**32, constant_liar=True
    )


def open_study(spec: SweepSpec, url: str) -> Any:
    """Create the study (or join it), refusing one that was made from a different spec."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    study = optuna.create_study(
        study_name=spec.study, storage=storage, direction=spec.direction, load_if_exists=True,
        sampler=_make_grid_sampler(spec) if spec.mode == "grid" else None,
    )
    identity = spec.identity()
    lock = ClaimLock(url, spec.study)
    try:
        with lock.hold():
            recorded = study.user_attrs.get("spec_hash")
            if recorded is None:
                study.set_user_attr("spec", identity)
                study.set_user_attr("spec_hash", config_hash(identity))
                study.set_user_attr("axes", spec.axis_names)
                study.set_user_attr("metric", spec.metric)
            elif recorded != config_hash(identity):
                raise ShortcutlabError(
                    f"study {spec.study!r} in {redact(url)} was made from a different spec "
                    "(other axes, fixed values, objective or seed); give this spec another "
                    "`study:` name, or delete the old study "
                    f"(optuna delete-study --study-name {spec.study} --storage URL)"
                )
    finally:
        lock.close()
    return study


def claim_trial(study: Any, spec: SweepSpec, lock: ClaimLock,
                skip: frozenset[int] = frozenset()) -> Any | None:
    """Create the next trial with all its parameters set, or None when nothing is left.

    ``skip``: grid points this worker will not take again (those that failed in it).
    """
    import optuna

    with lock.hold(), quiet_optuna():
        optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        holding = [t for t in trials if _trial_holds_point(t, spec.retry_failed)]
        if spec.mode == "grid":
            taken = {t.system_attrs.get("grid_id") for t in holding} | set(skip)
            free = [g for g in range(spec.grid_size()) if g not in taken]
            if not free:
                return None
            study.sampler = _make_grid_sampler(spec, grid_id=free[0])
        else:
            if len(holding) >= int(spec.n_trials or 0):
                return None
            study.sampler = _make_search_sampler(spec, len(trials))
        trial = study.ask()
        # a first heartbeat now: Optuna only ever fails trials that have one, so a
        # worker dying before its heartbeat thread starts must not leave a zombie
        study._storage.record_heartbeat(trial._trial_id)
        suggest_params(trial, spec)
    return trial


def suggest_params(trial: Any, spec: SweepSpec) -> dict[str, Any]:
    params = {}
    for axis in spec.axes:
        if axis.values is not None:
            params[axis.name] = trial.suggest_categorical(axis.name, list(axis.values))
        elif axis.is_int_range:
            params[axis.name] = trial.suggest_int(axis.name, int(axis.low), int(axis.high),
                                                  step=int(axis.step or 1), log=axis.log)
        else:
            params[axis.name] = trial.suggest_float(axis.name, float(axis.low), float(axis.high),
                                                    step=axis.step, log=axis.log)
    return params


# ---------------------------------------------------------------------------- one trial


class _Heartbeat:
    """Records the trial's heartbeat while it runs, so a dead worker is noticed."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id), daemon=True)

    def _beat(self, storage: Any, trial_id: int) -> None:
        while True:
            # a missed beat (a database restart, a locked SQLite file) is retried at the
            # next one; only GRACE_PERIOD_S without any makes the trial stale
            with contextlib.suppress(Exception):
                storage.record_heartbeat(trial_id)
            if self._stop.wait(HEARTBEAT_INTERVAL_S):
                return

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted keys; scalars and lists stay as they are."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, name + "."))
        elif hasattr(value, "item") and callable(value.item):  # numpy/torch scalars
            flat[name] = value.item()
        else:
            flat[name] = value
    return flat


def _objective_value(spec: SweepSpec, metrics: Mapping[str, Any]) -> float:
    """The objective from the trial's metrics; a dotted name reaches into nested ones
    (``splits.test_unbiased.cell_mean``)."""
    metrics = flatten_metrics(metrics)
    if spec.metric not in metrics:
        raise ShortcutlabError(
            f"the trial's metrics have no {spec.metric!r} (the spec's objective); "
            f"they are: {', '.join(sorted(metrics))}"
        )
    value = metrics[spec.metric]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ShortcutlabError(f"objective {spec.metric} = {value!r} is not a finite number")
    return float(value)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_claimed_trial(study: Any, trial: Any, spec: SweepSpec, paths: SweepPaths,
                      run_trial: RunTrial) -> str:
    """Run one claimed trial and tell Optuna how it ended; return the final state's name."""
    from optuna.trial import TrialState

    data, train = spec.trial_config(trial.params)
    trial.set_user_attr("worker", worker_name())
    start = time.monotonic()
    run_dir: Path | None = None
    with _Heartbeat(study._storage, trial._trial_id):
        try:
            data_dir, built = ensure_dataset(data, paths.datasets)
            key = dataset_identity(data)
            trial.set_user_attr("dataset", key)
            trial.set_user_attr("dataset_dir", str(data_dir))
            trial.set_user_attr("dataset_built", built)
            # named by its configuration, so a point re-run after a dead worker resumes
            run_dir = paths.runs / config_hash({"dataset": key, "train": train})
            trial.set_user_attr("run_dir", str(run_dir))
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / "sweep_trial.json", {
                "study": spec.study, "trial": trial.number, "params": trial.params,
                "data": data, "train": train,
            })
            metrics = run_trial(Path(data_dir), run_dir, dict(train))
            if not isinstance(metrics, Mapping):
                raise ShortcutlabError(f"the trial returned {type(metrics).__name__}, not metrics")
            value = _objective_value(spec, metrics)
            for key_, metric in flatten_metrics(metrics).items():
                if key_ not in BOOKKEEPING_ATTRS:
                    trial.set_user_attr(key_, metric)
        except KeyboardInterrupt:
            trial.set_user_attr("failure", "interrupted")
            trial.set_user_attr("duration_s", round(time.monotonic() - start, 3))
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("error", message[:ERROR_CHARS])
            trial.set_user_attr("failure", "error")
            trial.set_user_attr("duration_s", round(time.monotonic() - start, 3))
            if run_dir is not None:
                write_json(run_dir / "sweep_error.json",
                           {"error": message, "traceback": traceback.format_exc()})
            study.tell(trial, state=TrialState.FAIL)
            return "FAIL"
        trial.set_user_attr("duration_s", round(time.monotonic() - start, 3))
        study.tell(trial, value)
    return "COMPLETE"


# ---------------------------------------------------------------------------- workers


def work(spec: SweepSpec, paths: SweepPaths, run_trial: RunTrial | None = None,
         max_trials: int | None = None,
         on_trial: Callable[[Any, str], None] | None = None, study: Any = None) -> int:
    """One worker: claim and run trials until none is left; return how many it ran."""
    runner = resolve_runner(spec, run_trial)
    if study is None:
        study = open_study(spec, paths.storage)
    lock = ClaimLock(paths.storage, spec.study)
    done = 0
    failed_here: set[int] = set()  # with retry_failed, not retried by this worker again
    try:
        while max_trials is None or done < max_trials:
            trial = claim_trial(study, spec, lock, frozenset(failed_here))
            if trial is None:
                break
            state = run_claimed_trial(study, trial, spec, paths, runner)
            if state == "FAIL" and spec.mode == "grid":
                grid_id = study._storage.get_trial_system_attrs(trial._trial_id).get("grid_id")
                failed_here.add(int(grid_id))
            done += 1
            if on_trial is not None:
                on_trial(trial, state)
    finally:
        lock.close()
    return done


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so a killed worker records its trial as interrupted
    (releasing its grid point at once) instead of leaving it to the heartbeat timeout."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _worker_process(spec: SweepSpec, paths: SweepPaths, run_trial: RunTrial | None,
                    max_trials: int | None, threads: int) -> None:
    os.environ["SHORTCUTLAB_PROGRESS"] = "0"  # one bar, the parent's
    from shortcutlab.allocator import tune_allocator
    from shortcutlab.runtime import set_threads

    tune_allocator()
    set_threads(threads)
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        work(spec, paths, run_trial=run_trial, max_trials=max_trials)
    except ShortcutlabError as exc:
        print(f"shortcutlab: error: {multiprocessing.current_process().name}: {exc}",
              file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def study_counts(study: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def points_done(study: Any, spec: SweepSpec) -> int:
    """Grid points (or search trials) that are finished for good."""
    from optuna.trial import TrialState

    finished = [t for t in study.get_trials(deepcopy=False)
                if t.state != TrialState.RUNNING and _trial_holds_point(t)]
    if spec.mode == "grid":
        return len({t.system_attrs.get("grid_id") for t in finished})
    return len(finished)


def run_sweep(spec: SweepSpec, *, output: str | os.PathLike | None = None,
              storage: str | None = None, datasets: str | os.PathLike | None = None,
              workers: int = 1,
              run_trial: RunTrial | None = None, max_trials: int | None = None,
              threads: int | None = None) -> dict[str, Any]:
    """Run a sweep with ``workers`` local processes (1: in this process); return a summary.

    With several workers, ``run_trial`` must be importable by name (a module-level
    function), since each worker is a fresh process.
    """
    from shortcutlab.progress import progress

    if workers < 1:
        raise ShortcutlabError(f"--workers must be at least 1, got {workers}")
    paths = resolve_paths(spec, output, storage, datasets)
    if run_trial is None and spec.runner is None:
        from shortcutlab.sweep.spec import check_trials

        check_trials(spec)  # the trainer's own checks, before a trial is claimed
    paths.output.mkdir(parents=True, exist_ok=True)
    study = open_study(spec, paths.storage)
    resolve_runner(spec, run_trial)  # fail now on a bad runner, not in every worker
    total = spec.planned_trials()
    started = time.monotonic()
    shown = points_done(study, spec)
    bar = progress(total=total, initial=shown, desc=f"sweep {spec.study}", unit="trial")

    def refresh(note: str = "") -> None:
        nonlocal shown
        done = points_done(study, spec)
        if done != shown:
            bar.update(done - shown)  # a disabled bar counts nothing, hence ``shown``
            if bar.disable:  # no bar (logs, SHORTCUTLAB_PROGRESS=0): one line instead
                print(f"{done}/{total} done{note}", flush=True)
            shown = done

    with interrupt_on_sigterm():
        try:
            if workers == 1:
                if threads is not None:
                    from shortcutlab.runtime import set_threads

                    set_threads(threads)

                def advance(trial: Any, state: str) -> None:
                    bar.set_postfix_str(f"last: #{trial.number} {state.lower()}")
                    refresh(f" (trial {trial.number} {state.lower()})")

                work(spec, paths, run_trial=run_trial, max_trials=max_trials, on_trial=advance,
                     study=study)
            else:
                _run_processes(spec, paths, run_trial, workers, max_trials, threads, refresh)
        finally:
            bar.close()
    return summarize(study, spec, paths, time.monotonic() - started)


def _run_processes(spec: SweepSpec, paths: SweepPaths, run_trial: RunTrial | None,
                   workers: int, max_trials: int | None, threads: int | None,
                   tick: Callable[[], None]) -> None:
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # no forked torch or database state
    processes = [
        context.Process(
            target=_worker_process, name=f"sweep-worker-{index}",
            args=(spec, paths, run_trial, max_trials, threads),
        )
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        while any(process.is_alive() for process in processes):
            for process in processes:
                process.join(timeout=1.0 / workers)
            tick()
    except KeyboardInterrupt:
        # Ctrl-C reaches the workers too, but a kill of this process alone does not
        for process in processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join()  # each records its trial as interrupted, then exits
        raise
    tick()
    failed = [f"{p.name} (exit code {p.exitcode})" for p in processes if p.exitcode != 0]
    if failed:
        raise ShortcutlabError(
            f"sweep worker(s) stopped with an error: {', '.join(failed)}; see the messages "
            "above. Trials they finished are kept; re-run the command to continue"
        )


def summarize(study: Any, spec: SweepSpec, paths: SweepPaths, elapsed: float) -> dict[str, Any]:
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    best = None
    if complete:
        pick = min if spec.direction == "minimize" else max
        best_trial = pick(complete, key=lambda t: t.value)
        best = {"number": best_trial.number, "value": best_trial.value,
                "params": best_trial.params}
    return {
        "study": spec.study,
        "storage": redact(paths.storage),
        "output": str(paths.output),
        "planned": spec.planned_trials(),
        "done": points_done(study, spec),
        "states": study_counts(study),
        "best": best,
        "elapsed_s": round(elapsed, 1),
    }
