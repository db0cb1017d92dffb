"""``shortcutlab intervene --all``: every method next to its control, over seeds, as a table.

Layout of the output directory::

    OUT/teacher/seed<S>/            the shape teacher of seed S (when a method needs one)
    OUT/methods/<method>/seed<S>/   one run directory per method and seed
    OUT/controls/<key>/seed<S>/     one erm-control per distinct optimizer setting
    OUT/table.md, table.csv         mean +- std over seeds, each method followed by its control
    OUT/table.json                  every run's metrics, and the pairing
    OUT/table.png                   hard-set accuracy of each method next to its control
    OUT/convergence/<method>.png    learning curves of each method and its control, every seed
    OUT/sweep.db                    the sweep storage (unless --storage names another)
    OUT/runs/<hash>/                each trial's record (sweep_trial.json, sweep_error.json)

The runs are trials of the sweep machinery (:mod:`shortcutlab.sweep`), one grid study per
stage (the teachers, then the methods and controls, which read the teachers): local
workers are processes, and with a PostgreSQL ``--storage`` every machine that runs the
same command on the same shared ``OUT`` takes its share of the runs, as ``shortcutlab
benchmark`` does. A machine that finishes its teachers waits for those others still
train before it starts the methods. A run that failed with an error is tried again by the
next command.

A control is plain cross-entropy with exactly its method's optimizer keys
(:data:`~shortcutlab.intervene.hparams.OPTIMIZER_KEYS`), named by the hash of those
settings, so methods that train with the same settings share one control. Re-running
skips finished runs and resumes interrupted ones. Every finished run is checked for
convergence (:func:`shortcutlab.intervene.convergence.assess`); the undertrained ones are
logged, listed in ``table.json`` (``convergence.undertrained``) and under the table.

A run that diverges (:class:`~shortcutlab.errors.TrainingDiverged`) does not stop the
table: its error is kept in ``RUN/diverged.json``, the other runs go on, and the table
counts and lists it (column ``seeds``, ``table.json`` ``diverged``). Re-running skips it,
since training is deterministic; delete ``diverged.json`` (or change the method's
settings) to train it again.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import config_hash, read_json, write_bytes, write_json
from shortcutlab.errors import ShortcutlabError, TrainingDiverged
from shortcutlab.figures import save_figure
from shortcutlab.intervene import convergence
from shortcutlab.intervene.hparams import EPOCHS, control_settings, resolve_hparams
from shortcutlab.intervene.registry import USES, get_method, list_methods
from shortcutlab.intervene.run import finished, intervene_run

COLUMNS: tuple[tuple[str, str, bool], ...] = (
    # (metrics key, header, shown as a percentage)
    ("easy_val", "easy val", True),
    ("hard", "hard (random)", True),
    ("hard_inverted", "hard (inverted)", True),
    ("unbiased", "unbiased", True),
    ("background_share", "background share (Grad-CAM)", True),
    ("steps_trained", "steps", False),
    ("train_seconds", "train time (s)", False),
)
DIVERGED = "diverged.json"


@dataclass(frozen=True)
class Job:
    """One training run of the table."""

    kind: str            # "teacher" | "method" | "control"
    name: str            # method name, or the control's key
    seed: int
    run_dir: Path
    method: str          # the registered method trained
    overrides: dict[str, Any] = field(default_factory=dict)
    teacher_dir: Path | None = None


def control_key(hparams: dict[str, Any]) -> str:
    """The name of the control for these optimizer settings (a short hash of them)."""
    return "erm-" + config_hash(control_settings(hparams), length=8)


def plan(out: Path, methods: Sequence[str], seeds: Sequence[int],
         overrides: dict[str, dict[str, Any]] | None = None,
         teacher_dir: Path | None = None) -> tuple[list[Job], dict[str, str]]:
    """The jobs of the table and the pairing ``method -> control key``.

    Teachers come first (TEA reads them); controls shared by several methods appear once.
    """
    overrides = overrides or {}
    pairing: dict[str, str] = {}
    jobs: list[Job] = []
    needs_teacher = any("teacher" in get_method(m).uses for m in methods)
    for seed in seeds:
        teacher = teacher_dir
        if needs_teacher and teacher_dir is None:
            teacher = out / "teacher" / f"seed{seed}"
            jobs.append(Job("teacher", "teacher", seed, teacher, "teacher",
                            dict(overrides.get("teacher", {}))))
        seen_controls: set[str] = set()
        for method in methods:
            method_overrides = dict(overrides.get(method, {}))
            hparams = resolve_hparams(method, method_overrides)
            uses_teacher = "teacher" in get_method(method).uses
            jobs.append(Job("method", method, seed, out / "methods" / method / f"seed{seed}",
                            method, method_overrides, teacher if uses_teacher else None))
            key = control_key(hparams)
            pairing[method] = key
            if key not in seen_controls:
                seen_controls.add(key)
                jobs.append(Job("control", key, seed, out / "controls" / key / f"seed{seed}",
                                "erm-control", control_settings(hparams)))
    return jobs, pairing


def run_job(job: Job, data_dir: str, trainer_options: dict[str, Any]) -> dict[str, Any]:
    """Train one job; a finished run is returned as it is, an interrupted one resumed.

    The trainer refuses to resume or reuse a run directory trained with other settings,
    so changing a hyperparameter never silently mixes old runs into a new table.
    """
    try:
        return intervene_run(data_dir, job.run_dir, job.method, seed=job.seed,
                             teacher_dir=job.teacher_dir, overrides=job.overrides,
                             resume=True, **trainer_options)
    except TrainingDiverged as error:
        record = {"diverged": str(error), "kind": job.kind, "name": job.name,
                  "seed": job.seed, "overrides": job.overrides}
        write_json(job.run_dir / DIVERGED, record)
        return record


def diverged(job: Job) -> dict[str, Any] | None:
    """The divergence record of ``job`` when it diverged with these settings, else None."""
    path = job.run_dir / DIVERGED
    if not path.is_file():
        return None
    record = read_json(path)
    same = json.dumps(record.get("overrides"), sort_keys=True) == json.dumps(
        json.loads(json.dumps(job.overrides)), sort_keys=True)
    return record if same and record.get("seed") == job.seed else None


def outcome(job: Job) -> dict[str, Any] | None:
    """A finished run's metrics, a diverged run's record, or None (still to train)."""
    return finished(job.run_dir) or diverged(job)


def _job_record(job: Job) -> dict[str, Any]:
    return {"kind": job.kind, "name": job.name, "seed": job.seed, "run_dir": str(job.run_dir),
            "method": job.method, "overrides": job.overrides,
            "teacher_dir": None if job.teacher_dir is None else str(job.teacher_dir)}


def _job_from_record(record: dict[str, Any]) -> Job:
    return Job(record["kind"], record["name"], int(record["seed"]), Path(record["run_dir"]),
               record["method"], dict(record["overrides"]),
               None if record["teacher_dir"] is None else Path(record["teacher_dir"]))


def job_id(job: Job) -> str:
    return f"{job.kind}/{job.name}/seed{job.seed}"


def sweep_trial(data_dir: Path, run_dir: Path, train: dict[str, Any]) -> dict[str, Any]:
    """The sweep runner of ``intervene --all``: train the trial's job into the table's
    layout (``run_dir``, the sweep's own record of the trial, holds only that record).

    Returns the run's headline metrics, ``finished`` (the sweep's objective: 1) and
    ``diverged`` (1 when the run diverged; its record stays in the run directory).
    """
    job = _job_from_record(train["jobs"][train["job"]])
    warnings.simplefilter("ignore", convergence.UndertrainedWarning)  # run_all reports them
    metrics = outcome(job) or run_job(job, str(data_dir), dict(train["trainer_options"]))
    headline = {key: metrics[key] for key in ("easy_val", "hard", "hard_inverted", "unbiased")
                if isinstance(metrics.get(key), int | float)}
    return {"finished": 1.0, "diverged": int("diverged" in metrics), **headline}


def stage_spec(out: Path, stage: str, jobs: Sequence[Job], data_dir: str,
               trainer_options: dict[str, Any]) -> Any:
    """The grid sweep that runs ``jobs``: one point per job, named by all of them (so
    every machine running the same table joins the same study)."""
    from shortcutlab.sweep.spec import Axis, SweepSpec

    records = {job_id(job): _job_record(job) for job in jobs}
    fixed_train = {"jobs": records, "trainer_options": dict(trainer_options)}
    name = f"intervene-{stage}-" + config_hash(
        {"data": data_dir, "out": str(out), "train": fixed_train}, length=12)
    return SweepSpec(
        study=name, mode="grid", axes=(Axis("train", "job", values=tuple(records)),),
        fixed_data={"dir": data_dir}, fixed_train=fixed_train, metric="finished",
        direction="maximize", runner="shortcutlab.intervene.table:sweep_trial",
        description=f"intervene --all, {stage}: {len(records)} runs", retry_failed=True)


def run_all(data_dir: str | os.PathLike, out: str | os.PathLike, *, seeds: Sequence[int],
            methods: Sequence[str] | None = None,
            overrides: dict[str, dict[str, Any]] | None = None,
            teacher_dir: str | os.PathLike | None = None, workers: int = 1,
            log: Callable[[str], None] = print, train: bool = True,
            storage: str | None = None, **trainer_options: Any) -> dict[str, Any]:
    """Train every method and its control for every seed, then write the table.

    With ``train=False`` nothing is trained: the table is written from the runs already
    finished (each row says over how many seeds), and the missing ones are listed.
    """
    out = Path(out)
    methods = list(methods or list_methods())
    for method in methods:
        if get_method(method).role != "method":
            raise ShortcutlabError(f"{method!r} is not a table method; choose from "
                                   f"{', '.join(list_methods())}")
    jobs, pairing = plan(out, methods, seeds, overrides,
                         Path(teacher_dir) if teacher_dir else None)
    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    failures: dict[tuple[str, str, int], dict[str, Any]] = {}
    todo = [job for job in jobs if outcome(job) is None]
    log(f"{len(jobs)} runs, {len(jobs) - len(todo)} already finished")
    if not train:
        for job in todo:
            log(f"missing: {job.kind} {job.name} seed {job.seed} ({job.run_dir})")
        jobs = [job for job in jobs if job not in todo]
        todo = []
    data_dir = str(data_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", convergence.UndertrainedWarning)  # reported below
        # Teachers first: the methods that distill them cannot start before.
        for stage, kinds in (("teachers", ("teacher",)), ("methods", ("method", "control"))):
            batch = [job for job in jobs if job.kind in kinds]
            for job, metrics in _execute(batch, data_dir, trainer_options, workers, out,
                                         stage, storage, log=log):
                if "diverged" in metrics:
                    failures[(job.kind, job.name, job.seed)] = metrics
                    log(f"{job.kind} {job.name} seed {job.seed} diverged: "
                        f"{metrics['diverged']} (kept in {job.run_dir / DIVERGED}; "
                        "delete it to train this run again)")
                else:
                    results[(job.kind, job.name, job.seed)] = metrics
                    if job in todo:
                        log(f"{job.kind} {job.name} seed {job.seed}: hard "
                            f"{metrics.get('hard', float('nan')):.3f}")
    table = summarize(results, methods, pairing, seeds, failures)
    table["convergence"] = check_convergence(out, jobs, results, methods, pairing, seeds)
    for run in table["convergence"]["undertrained"]:
        log(f"warning: {run['kind']} {run['name']} seed {run['seed']} looks undertrained: "
            f"{run['reason']}; raise the budget: {run['advice']}")
    for method, path in table["convergence"]["figures"].items():
        log(f"convergence of {method}: {out / path}")
    write_table(out, table)
    return table


def epochs_advice(job: Job, pairing: dict[str, str], epochs: int) -> str:
    """The ``--set`` options that give ``job`` a budget of ``epochs``: a control follows
    the epochs of its method(s)."""
    if job.kind == "control":
        names = [method for method, key in pairing.items() if key == job.name]
    else:
        names = [job.name]
    return " ".join(f"--set {name}.epochs={epochs}" for name in names)


def check_convergence(out: Path, jobs: Sequence[Job],
                      results: dict[tuple[str, str, int], dict[str, Any]],
                      methods: Sequence[str], pairing: dict[str, str],
                      seeds: Sequence[int]) -> dict[str, Any]:
    """Draw ``convergence/METHOD.png`` (each method and its control, every finished seed)
    and list the finished runs that look undertrained."""
    logs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    undertrained = []
    for job in jobs:
        key = (job.kind, job.name, job.seed)
        if key not in results:
            continue
        logs[key] = convergence.read_log(job.run_dir)
        verdict = convergence.assess(logs[key], results[key])
        if verdict["undertrained"]:
            epochs = verdict["suggested_epochs"] or convergence.suggested_epochs(EPOCHS)
            undertrained.append({
                "kind": job.kind, "name": job.name, "seed": job.seed,
                "run": str(job.run_dir.relative_to(out)), "reason": verdict["reason"],
                "suggested_epochs": epochs,
                "advice": epochs_advice(job, pairing, epochs),
            })
    figures = {}
    for method in methods:
        series = []
        for kind, name, label, color in (
            ("method", method, method, "#1f77b4"),
            ("control", pairing[method], f"erm-control {pairing[method]}", "#888888"),
        ):
            for index, seed in enumerate(seeds):
                records = logs.get((kind, name, seed))
                if records:
                    series.append(convergence.Series(
                        f"{label}, seed {seed}", records,
                        results[(kind, name, seed)].get("selected_step"), color,
                        convergence.LINESTYLES[index % len(convergence.LINESTYLES)]))
        if series:
            path = Path("convergence") / f"{method}.png"
            convergence.plot_convergence(out / path, series,
                                         f"{method} and its control, seeds "
                                         f"{', '.join(str(s) for s in seeds)}")
            figures[method] = path.as_posix()
    return {"rule": convergence.assess([], {})["rule"], "figures": figures,
            "undertrained": undertrained}


def _execute(jobs: list[Job], data_dir: str, trainer_options: dict[str, Any], workers: int,
             out: Path, stage: str, storage: str | None = None,
             wait_seconds: float = 10.0, log: Callable[[str], None] = print):
    """Run the jobs without an outcome as trials of a grid sweep; yield every job with its
    metrics (or divergence record). Raises when some job failed, naming its error file."""
    pending = [job for job in jobs if outcome(job) is None]
    if pending:
        from shortcutlab.sweep.runner import open_study, resolve_paths, run_sweep

        spec = stage_spec(out, stage, jobs, str(Path(data_dir).resolve()), trainer_options)
        run_sweep(spec, output=out, storage=storage, workers=workers,
                  threads=1 if workers > 1 else None)
        # Other machines may still train some of this stage's runs: the next stage reads
        # them (TEA its teacher), so wait until none is running any more.
        study = open_study(spec, resolve_paths(spec, out, storage).storage)
        while _running(study):
            log(f"waiting for {_running(study)} run(s) of the {stage} on other workers")
            time.sleep(wait_seconds)
        failed = [job for job in pending if outcome(job) is None]
        if failed:
            raise ShortcutlabError(
                f"{len(failed)} run(s) failed: "
                + "; ".join(f"{job.kind} {job.name} seed {job.seed}" for job in failed)
                + f". Their errors are in {out / 'runs'}/*/sweep_error.json; runs that "
                "finished are kept, and running the command again retries the failed ones")
    for job in jobs:
        yield job, outcome(job)


def _running(study: Any) -> int:
    from optuna.trial import TrialState

    return sum(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _uses_text(uses: Sequence[str]) -> str:
    return ", ".join(uses)


def summarize(results: dict[tuple[str, str, int], dict[str, Any]], methods: Sequence[str],
              pairing: dict[str, str], seeds: Sequence[int],
              failures: dict[tuple[str, str, int], dict[str, Any]] | None = None
              ) -> dict[str, Any]:
    """Rows (each method, then its control) with mean and std of every column; a row
    also counts its diverged runs, which enter no mean."""
    rows = []
    failures = failures or {}

    def row(kind: str, name: str, label: str, uses: Sequence[str], paired: str) -> dict:
        runs = [results[(kind, name, seed)] for seed in seeds if (kind, name, seed) in results]
        stats = {key: _mean_std([run.get(key) for run in runs]) for key, _, _ in COLUMNS}
        lost = [seed for seed in seeds if (kind, name, seed) in failures]
        return {"kind": kind, "name": name, "label": label, "uses": list(uses),
                "paired_with": paired, "seeds": len(runs), "diverged_seeds": lost,
                "stats": stats}

    for method in methods:
        rows.append(row("method", method, method, get_method(method).uses, pairing[method]))
        key = pairing[method]
        rows.append(row("control", key, f"erm-control {key}", ("none",), method))
    teachers = [results[("teacher", "teacher", s)] for s in seeds
                if ("teacher", "teacher", s) in results]
    teacher_row = None
    if teachers:
        teacher_row = row("teacher", "teacher", "teacher (privileged)", ("recolored-digits",),
                          "tea")
    return {"seeds": list(seeds), "rows": rows, "teacher": teacher_row,
            "targets": targets(rows),
            "runs": {f"{k}/{n}/seed{s}": m for (k, n, s), m in results.items()},
            "diverged": [failures[key] for key in sorted(failures)]}


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The table's targets, checked on mean hard-set accuracy over seeds: at least five
    methods at 90%, a method using no extra information at 95%, and every method above
    its own control (same optimizer, schedule, batch size and steps)."""
    methods = [r for r in rows if r["kind"] == "method" and r["seeds"]]
    controls = {r["name"]: r for r in rows if r["kind"] == "control" and r["seeds"]}
    hard = {r["name"]: r["stats"]["hard"][0] for r in methods}
    blind = {r["name"]: hard[r["name"]] for r in methods if r["uses"] == ["none"]}
    best = max(hard, key=lambda n: hard[n]) if hard else None
    best_blind = max(blind, key=lambda n: blind[n]) if blind else None
    below = sorted(r["name"] for r in methods if r["paired_with"] in controls
                   and not hard[r["name"]] > controls[r["paired_with"]]["stats"]["hard"][0])
    return {
        "at_least_90": sorted(n for n, v in hard.items() if v >= 0.90),
        "best": best, "best_hard": hard.get(best) if best else None,
        "best_blind": best_blind, "best_blind_hard": blind.get(best_blind) if best_blind else None,
        "five_at_90": sum(v >= 0.90 for v in hard.values()) >= 5,
        "blind_at_95": bool(best_blind) and blind[best_blind] >= 0.95,
        "not_above_control": below,
        "diverged": sorted({r["name"] for r in rows if r.get("diverged_seeds")}),
    }


def _cell(stats: tuple[float, float], percent: bool) -> str:
    mean, std = stats
    if math.isnan(mean):
        return "-"
    if percent:
        return f"{100 * mean:.1f} ± {100 * std:.1f}"
    return f"{mean:.0f} ± {std:.0f}"


def render_markdown(table: dict[str, Any]) -> str:
    headers = ["method", "extra information", "seeds", *(h for _, h, _ in COLUMNS)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    rows = list(table["rows"]) + ([table["teacher"]] if table.get("teacher") else [])
    for r in rows:
        label = f"`{r['label']}`" if r["kind"] != "control" else f"↳ {r['label']}"
        lost = r.get("diverged_seeds") or []
        count = f"{r['seeds']} (+{len(lost)} diverged)" if lost else str(r["seeds"])
        cells = [label, _uses_text(r["uses"]), count]
        cells += [_cell(r["stats"][key], pct) for key, _, pct in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    t = table["targets"]
    seeds = ", ".join(str(s) for s in table["seeds"])
    lines += [
        "",
        f"Accuracies in %, mean ± std over the finished runs of seeds {seeds} (column "
        "`seeds`: how many); each method is followed by its "
        "erm-control (same optimizer, lr, schedule, batch size and steps: its own budget; "
        "identical controls are shared). Columns `steps` and `train time (s)` are each "
        "row's budget. Model selection: best easy-val accuracy.",
        "",
        f"Targets: five methods at >= 90% hard: {'yes' if t['five_at_90'] else 'no'} "
        f"({', '.join(t['at_least_90']) or 'none'}; best {t['best']}, "
        f"{_pct(t['best_hard'])}); a method using no extra information at >= 95%: "
        f"{'yes' if t['blind_at_95'] else 'no'} ({t['best_blind']}, "
        f"{_pct(t['best_blind_hard'])}); every method above its own control: "
        f"{'yes' if not t['not_above_control'] else 'no, not ' + ', '.join(t['not_above_control'])}"
        f"; no run diverged: "
        f"{'yes' if not t.get('diverged') else 'no, ' + ', '.join(t['diverged'])}.",
        "",
        "Extra information: " + "; ".join(f"`{k}`: {v}" for k, v in USES.items()) + ".",
    ]
    lines += convergence_lines(table.get("convergence"))
    if table.get("diverged"):
        lines += ["", "Diverged (stopped before writing a model; in no mean):"]
        lines += [f"- {run['kind']} `{run['name']}` seed {run['seed']}: {run['diverged']}"
                  for run in table["diverged"]]
    return "\n".join(lines) + "\n"


def convergence_lines(checked: dict[str, Any] | None) -> list[str]:
    """The learning-curve figures and the undertrained runs, as lines under the table."""
    if not checked:
        return []
    lines = []
    if checked["figures"]:
        lines += ["", "Learning curves (easy val and its color-conflicting images against "
                      "steps, each method with its control): "
                  + ", ".join(f"`{path}`" for path in checked["figures"].values()) + "."]
    if checked["undertrained"]:
        lines += ["", "Undertrained (the selected checkpoint is the last evaluation and easy "
                      "val was still rising; keep one budget for every method):"]
        lines += [f"- {run['kind']} `{run['name']}` seed {run['seed']}: {run['reason']}; "
                  f"raise the budget: `{run['advice']}`" for run in checked["undertrained"]]
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def render_csv(table: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["kind", "name", "paired_with", "uses", "seeds"]
    for key, _, _ in COLUMNS:
        header += [f"{key}_mean", f"{key}_std"]
    writer.writerow(header)
    rows = list(table["rows"]) + ([table["teacher"]] if table.get("teacher") else [])
    for r in rows:
        line = [r["kind"], r["name"], r["paired_with"], ";".join(r["uses"]), r["seeds"]]
        for key, _, _ in COLUMNS:
            line += [f"{value:.6g}" for value in r["stats"][key]]
        writer.writerow(line)
    return buffer.getvalue()


def write_table(out: Path, table: dict[str, Any]) -> None:
    write_bytes(out / "table.md", render_markdown(table).encode())
    write_bytes(out / "table.csv", render_csv(table).encode())
    write_json(out / "table.json", {**table, "written": time.time()})
    plot_table(out / "table.png", table)


def plot_table(path: Path, table: dict[str, Any]) -> None:
    """Hard-set accuracy of every method beside its control (error bars: std over seeds)."""
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt

    methods = [r for r in table["rows"] if r["kind"] == "method"]
    controls = {r["paired_with"]: r for r in table["rows"] if r["kind"] == "control"}
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(methods), 3.6))
    xs = range(len(methods))
    for offset, label, color, pick in (
        (-0.2, "method", "#1f77b4", lambda r: r),
        (0.2, "its erm-control", "#bbbbbb", lambda r: controls.get(r["name"])),
    ):
        chosen = [pick(r) for r in methods]
        means = [100 * c["stats"]["hard"][0] if c else 0 for c in chosen]
        stds = [100 * c["stats"]["hard"][1] if c else 0 for c in chosen]
        ax.bar([x + offset for x in xs], means, width=0.4, yerr=stds, color=color,
               label=label, capsize=2)
    ax.axhline(90, color="#2ca02c", lw=0.8, ls="--")
    ax.axhline(97, color="#d62728", lw=0.8, ls=":")
    ax.set_xticks(list(xs), [r["name"] for r in methods], rotation=30, ha="right")
    ax.set_ylabel("hard (random) accuracy, %")
    ax.set_ylim(0, 100)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, tight=False)
