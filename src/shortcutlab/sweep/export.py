"""Turning a study into things people read: a CSV table, phase diagrams and a summary.

``trials.csv`` has one row per trial: its number, state, objective value, duration, every
parameter (full names, ``data.bias``), every metric it recorded and its bookkeeping (run
and dataset directories, worker, error). A phase diagram is a heatmap of a metric (hard
accuracy by default) over two axes, each cell the mean over the trials at that pair of
values, i.e. averaged over every other axis; ``main_effects.png`` shows each axis alone.
``summary.md`` ties them together.

Where a trial has ``easy_train``, ``easy_val`` and ``hard``, the table adds ``cheats``:
1 when the model meets Task 1's bars (easy train and validation accuracy above 0.95 and
hard accuracy below 0.20), so a heatmap of ``cheats`` shows where the network cheats.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import operator
import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import atomic_open, write_bytes, write_json
from shortcutlab.errors import ShortcutlabError
from shortcutlab.figures import STABLE_METADATA, save_figure
from shortcutlab.sweep.runner import BOOKKEEPING_ATTRS
from shortcutlab.sweep.storage import normalize_url, open_storage, redact

CHEAT_BARS = {"easy_train": 0.95, "easy_val": 0.95, "hard": 0.20}
MAX_DEFAULT_DIAGRAMS = 28
_STATE_WORDS = {"COMPLETE": "complete", "FAIL": "failed", "RUNNING": "running",
                "PRUNED": "pruned", "WAITING": "waiting"}
_LABELS = {
    "bias": "bias", "batch_size": "batch size", "kernel_size": "kernel size",
    "width": "width (filters)", "hidden": "hidden units", "lr": "learning rate",
    "epochs": "epochs", "steps": "steps", "model": "architecture", "optimizer": "optimizer",
    "noise_mix": "noise mix", "weight_decay": "weight decay", "preset": "preset",
    "hard": "hard accuracy", "easy_val": "easy validation accuracy",
    "easy_train": "easy train accuracy", "unbiased": "unbiased accuracy",
    "test_easy": "easy test accuracy", "cheats": "share of trials that cheat",
    "color_following_rate": "color-following rate",
}


def load_study(storage: str, study: str) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = normalize_url(storage)
    if url.startswith("sqlite"):
        from shortcutlab.sweep.storage import sqlite_path

        path = sqlite_path(url)
        if path is not None and not path.is_file():  # opening it would create it, empty
            raise ShortcutlabError(f"no sweep database at {path}: study {study!r} has not "
                                   "run there; run the sweep first, or pass --storage")
    backend = open_storage(url)
    names = optuna.get_all_study_names(backend)
    if study not in names:
        raise ShortcutlabError(
            f"no study {study!r} in {redact(url)}; studies there: "
            f"{', '.join(sorted(names)) or 'none'}"
        )
    return optuna.load_study(study_name=study, storage=backend)


def _scalar(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return value


def cheats(metrics: Mapping[str, Any]) -> float | None:
    """1.0 when a trial meets Task 1's bars, 0.0 when it misses one, None if unknown."""
    values = [metrics.get(key) for key in CHEAT_BARS]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    easy_train, easy_val, hard = values
    return float(easy_train > CHEAT_BARS["easy_train"] and easy_val > CHEAT_BARS["easy_val"]
                 and hard < CHEAT_BARS["hard"])


def trial_rows(study: Any) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """One dict per trial, plus the parameter names and the metric names, in order."""
    axes = list(study.user_attrs.get("axes", []))
    rows, params, metrics = [], list(axes), []
    for trial in study.get_trials(deepcopy=False):
        for name in trial.params:
            if name not in params:
                params.append(name)
        found = {k: v for k, v in trial.user_attrs.items() if k not in BOOKKEEPING_ATTRS}
        cheat = cheats(found)
        if cheat is not None:
            found["cheats"] = cheat
        for name in found:
            if name not in metrics:
                metrics.append(name)
        duration = trial.user_attrs.get("duration_s")
        if duration is None and trial.datetime_complete and trial.datetime_start:
            duration = (trial.datetime_complete - trial.datetime_start).total_seconds()
        row = {
            "number": trial.number,
            "state": trial.state.name,
            "value": trial.value,
            "duration_s": duration,
            "datetime_start": trial.datetime_start.isoformat(timespec="seconds")
            if trial.datetime_start else None,
            **trial.params,
            **{k: _scalar(v) for k, v in found.items()},
        }
        for key in BOOKKEEPING_ATTRS:
            if key not in ("duration_s",) and key in trial.user_attrs:
                row[key] = _scalar(trial.user_attrs[key])
        rows.append(row)
    metrics.sort(key=lambda m: (m not in _LABELS, m))
    return rows, params, metrics


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], params: Sequence[str],
              metrics: Sequence[str]) -> None:
    columns = ["number", "state", "value", "duration_s", "datetime_start", *params, *metrics,
               *[k for k in BOOKKEEPING_ATTRS if k != "duration_s"]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in columns})
    write_bytes(path, buffer.getvalue().encode())


def short_name(name: str, names: Sequence[str]) -> str:
    """``train.model_kwargs.width`` -> ``width``, unless two parameters would collide."""
    short = name.rsplit(".", 1)[-1]
    if sum(other.rsplit(".", 1)[-1] == short for other in names) > 1:
        return name.replace("model_kwargs.", "")
    return short


def label(name: str, names: Sequence[str] = ()) -> str:
    short = short_name(name, names) if names else name
    return _LABELS.get(short, short.replace("_", " ").replace(".", " "))


def resolve_axis(name: str, params: Sequence[str]) -> str:
    """An axis by full name (``train.lr``) or unique last part (``lr``)."""
    if name in params:
        return name
    matches = [p for p in params if p.rsplit(".", 1)[-1] == name or p.endswith("." + name)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ShortcutlabError(f"no axis {name!r} in this study; axes: {', '.join(params)}")
    raise ShortcutlabError(f"axis {name!r} is ambiguous ({', '.join(matches)}); give the full name")


def format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            mantissa, exponent = f"{value:.0e}".split("e")
            return f"{mantissa}e{int(exponent)}"
        return f"{value:g}"
    return str(value)


def _sorted_values(values: Sequence[Any]) -> list[Any]:
    unique = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in unique):
        return sorted(unique)
    return sorted(unique, key=str)


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def cell_means(rows: Sequence[Mapping[str, Any]], x: str, y: str, metric: str
               ) -> tuple[list[Any], list[Any], list[list[float]], list[list[int]]]:
    """Mean of ``metric`` over the completed trials at each (y, x) pair."""
    usable = [r for r in rows if r["state"] == "COMPLETE" and _numeric(r.get(metric)) is not None
              and x in r and y in r]
    xs = _sorted_values([r[x] for r in usable])
    ys = _sorted_values([r[y] for r in usable])
    sums = [[0.0] * len(xs) for _ in ys]
    counts = [[0] * len(xs) for _ in ys]
    for row in usable:
        i, j = ys.index(row[y]), xs.index(row[x])
        sums[i][j] += float(row[metric])
        counts[i][j] += 1
    means = [[s / c if c else math.nan for s, c in zip(srow, crow, strict=True)]
             for srow, crow in zip(sums, counts, strict=True)]
    return xs, ys, means, counts


def _unit_range(metric: str, means: Sequence[Sequence[float]]) -> tuple[float, float]:
    finite = [v for row in means for v in row if math.isfinite(v)]
    if finite and min(finite) >= 0 and max(finite) <= 1:
        return 0.0, 1.0  # accuracies and rates: the same color means the same everywhere
    return (min(finite), max(finite)) if finite else (0.0, 1.0)


def phase_diagram(rows: Sequence[Mapping[str, Any]], x: str, y: str, metric: str,
                  params: Sequence[str], path: Path, study_name: str) -> dict[str, Any]:
    """A heatmap of the mean ``metric`` over axes ``x`` and ``y``; returns the cells."""
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt

    xs, ys, means, counts = cell_means(rows, x, y, metric)
    if not xs or not ys:
        raise ShortcutlabError(f"no completed trial has {metric!r}, {x} and {y}")
    vmin, vmax = _unit_range(metric, means)
    width = max(4.5, 1.0 + 0.9 * len(xs))
    height = max(3.2, 1.2 + 0.6 * len(ys))
    figure, axis = plt.subplots(figsize=(width, height))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")  # grey: no trial there
    image = axis.imshow(means, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", aspect="auto")
    axis.set_xticks(range(len(xs)), [format_value(v) for v in xs])
    axis.set_yticks(range(len(ys)), [format_value(v) for v in ys])
    axis.set_xlabel(label(x, params))
    axis.set_ylabel(label(y, params))
    uneven = len({c for row in counts for c in row if c}) > 1
    for i, j in itertools.product(range(len(ys)), range(len(xs))):
        if counts[i][j]:
            value = means[i][j]
            text = f"{value:.2f}" + (f"\nn={counts[i][j]}" if uneven else "")
            shade = (value - vmin) / (vmax - vmin) if vmax > vmin else 0.5
            axis.text(j, i, text, ha="center", va="center", fontsize=8,
                      color="black" if shade > 0.6 else "white")
    n_cell = sorted({c for row in counts for c in row if c})
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    others = [p for p in params if p not in (x, y)
              and len({json.dumps(r.get(p)) for r in complete}) > 1]
    count = str(n_cell[0]) if len(n_cell) == 1 else f"{n_cell[0]}-{n_cell[-1]}"
    subtitle = (f"mean over {count} trial{'s' if n_cell[-1] > 1 else ''} per cell"
                + (f", averaging over {', '.join(label(p, params) for p in others)}"
                   if others else ""))
    wrapped = textwrap.fill(subtitle, width=max(50, int(width * 11)))
    axis.set_title(f"{study_name}: {label(metric)}\n{wrapped}", fontsize=9)
    figure.colorbar(image, ax=axis, label=label(metric))
    save_figure(figure, path, metadata=STABLE_METADATA)
    return {"x": x, "y": y, "metric": metric, "x_values": xs, "y_values": ys,
            "mean": means, "count": counts, "file": path.name}


def main_effects(rows: Sequence[Mapping[str, Any]], params: Sequence[str],
                 metrics: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """For each axis and value: mean, std and count of each metric over completed trials."""
    effects: dict[str, list[dict[str, Any]]] = {}
    done = [r for r in rows if r["state"] == "COMPLETE"]
    for param in params:
        entries = []
        for value in _sorted_values([r[param] for r in done if param in r]):
            at_value = [r for r in done if r.get(param) == value]
            entry: dict[str, Any] = {"value": value, "n": len(at_value)}
            for metric in metrics:
                numbers = [float(r[metric]) for r in at_value
                           if _numeric(r.get(metric)) is not None]
                if numbers:
                    mean = sum(numbers) / len(numbers)
                    std = math.sqrt(sum((v - mean) ** 2 for v in numbers) / len(numbers))
                    entry[metric] = {"mean": mean, "std": std}
            entries.append(entry)
        if len(entries) > 1:
            effects[param] = entries
    return effects


def cheat_window_figure(rows: Sequence[Mapping[str, Any]], params: Sequence[str], path: Path,
                        study_name: str, min_easy: float = 0.85) -> dict[str, int] | None:
    """Hard against easy-validation accuracy, one point per trial, with Task 1's window.

    Color is the number of training steps when the trainer recorded it, the marker the
    bias when the study varies it. Trials below ``min_easy`` (they have not even learned
    the color) are counted in the title but not drawn, so the window stays readable.
    """
    from shortcutlab.figures import headless

    headless()
    import matplotlib.lines
    import matplotlib.patches
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from matplotlib.colors import LogNorm

    done = [r for r in rows if r["state"] == "COMPLETE"
            and _numeric(r.get("easy_val")) is not None and _numeric(r.get("hard")) is not None]
    if not done:
        return None
    shown = [r for r in done if float(r["easy_val"]) >= min_easy]
    bias = next((p for p in params if p.rsplit(".", 1)[-1] == "bias"), None)
    groups = _sorted_values([r.get(bias) for r in shown]) if bias else [None]
    steps = [_numeric(r.get("steps_trained")) for r in shown]
    use_steps = bool(shown) and all(v is not None and v > 0 for v in steps)
    figure, axis = plt.subplots(figsize=(6.4, 4.6))
    axis.add_patch(matplotlib.patches.Rectangle(
        (CHEAT_BARS["easy_val"], 0), 1 - CHEAT_BARS["easy_val"], CHEAT_BARS["hard"],
        color="#2ca02c", alpha=0.15, lw=0))
    image = None
    for group, marker in zip(groups, ("o", "^", "s", "D", "v", "P"), strict=False):
        members = [r for r in shown if not bias or r.get(bias) == group]
        coloring: dict[str, Any] = {"color": "#1f77b4"}
        if use_steps:
            coloring = {"c": [float(r["steps_trained"]) for r in members], "cmap": "viridis",
                        "norm": LogNorm(min(steps), max(steps)) if min(steps) < max(steps)
                        else None}
        image = axis.scatter([float(r["easy_val"]) for r in members],
                             [float(r["hard"]) for r in members], marker=marker,
                             edgecolors="black", linewidths=0.4, s=36, **coloring)
    if use_steps and image is not None:
        distinct = sorted({int(v) for v in steps if v is not None})
        bar = figure.colorbar(image, ax=axis, label="training steps",
                              ticks=distinct if len(distinct) <= 8 else None)
        bar.ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        bar.ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    # legend markers stand for a bias, not a step count: grey stand-ins
    handles = [matplotlib.patches.Patch(color="#2ca02c", alpha=0.15)]
    names = [f"Task 1 (cheats): easy > {CHEAT_BARS['easy_val']}, hard < {CHEAT_BARS['hard']}"]
    if bias:
        for group, marker in zip(groups, ("o", "^", "s", "D", "v", "P"), strict=False):
            handles.append(matplotlib.lines.Line2D(
                [], [], marker=marker, linestyle="", markerfacecolor="#bbbbbb",
                markeredgecolor="black", markeredgewidth=0.4))
            names.append(f"{label(bias, params)} {format_value(group)}")
    axis.set_xlim(min_easy, 1.0)
    axis.set_ylim(0, max(0.3, max((float(r["hard"]) for r in shown), default=0) + 0.05))
    axis.set_xlabel(label("easy_val"))
    axis.set_ylabel(label("hard"))
    hidden = len(done) - len(shown)
    axis.set_title(f"{study_name}: where the cheaters are\n{len(shown)} trials"
                   + (f" ({hidden} more below {min_easy} easy accuracy, not drawn)"
                      if hidden else ""), fontsize=9)
    axis.legend(handles, names, fontsize=7, loc="upper left")
    axis.grid(alpha=0.3)
    save_figure(figure, path, metadata=STABLE_METADATA)
    return {"shown": len(shown), "hidden": hidden}


def main_effects_figure(effects: Mapping[str, list[dict[str, Any]]], params: Sequence[str],
                        metrics: Sequence[str], path: Path, study_name: str) -> None:
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt

    names = list(effects)
    columns = min(4, len(names))
    rows_n = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows_n, columns, figsize=(3.4 * columns, 2.8 * rows_n),
                                squeeze=False, sharey=True)
    for index, name in enumerate(names):
        axis = axes[index // columns][index % columns]
        entries = effects[name]
        positions = range(len(entries))
        styles = ("o-", "s--", "^:", "d-.")
        for rank, (metric, style) in enumerate(zip(metrics, styles, strict=False)):
            means = [e.get(metric, {}).get("mean", math.nan) for e in entries]
            # a std of a 0/1 outcome says nothing the rate does not: no bars for it
            stds = None if metric == "cheats" else [
                e.get(metric, {}).get("std", math.nan) for e in entries]
            shift = 0.06 * (rank - (len(metrics) - 1) / 2)  # keep the bars apart
            axis.errorbar([p + shift for p in positions], means, yerr=stds, fmt=style,
                          capsize=3, elinewidth=1, alpha=0.85, label=label(metric))
        axis.set_xticks(list(positions), [format_value(e["value"]) for e in entries],
                        rotation=30 if len(entries) > 4 else 0)
        axis.set_xlim(-0.4, len(entries) - 0.6)
        axis.set_xlabel(label(name, params))
        axis.set_ylim(-0.05, 1.05)
        axis.grid(alpha=0.3)
    for index in range(len(names), rows_n * columns):
        axes[index // columns][index % columns].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8,
                  frameon=False)
    figure.suptitle(f"{study_name}: each axis alone (mean ± std over the other axes)",
                    fontsize=10)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(figure, path, metadata=STABLE_METADATA)


def _table(header: Sequence[str], body: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in body]
    return lines


def _fmt(value: Any) -> str:
    number = _numeric(value)
    return f"{number:.3f}" if number is not None and not isinstance(value, int) else str(value)


def summary_markdown(study: Any, rows: Sequence[Mapping[str, Any]], params: Sequence[str],
                     metrics: Sequence[str], effects: Mapping[str, Any],
                     diagrams: Sequence[Mapping[str, Any]], url: str,
                     where: Sequence[str] = (), window: bool = False) -> str:
    direction = study.direction.name.lower()
    objective = study.user_attrs.get("metric", "value")
    states: dict[str, int] = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    compute = sum(float(r["duration_s"] or 0) for r in rows)
    lines = [
        f"# Sweep `{study.study_name}`",
        "",
        f"- storage: `{redact(url)}`",
        f"- trials: {len(rows)} ("
        f"{', '.join(f'{n} {_STATE_WORDS.get(s, s.lower())}' for s, n in sorted(states.items()))})",
        f"- objective: {direction} `{objective}`",
        *([f"- only the trials with {' and '.join(f'`{w}`' for w in where)}"] if where else []),
        f"- compute: {compute / 60:.1f} min of trial time in total",
        "",
    ]
    key_metrics = [m for m in ("easy_train", "easy_val", "hard", "unbiased", "cheats")
                   if m in metrics]
    complete = [r for r in rows if r["state"] == "COMPLETE" and r.get("value") is not None]
    if complete:
        best = sorted(complete, key=lambda r: r["value"], reverse=direction == "maximize")[:5]
        lines += ["## Best trials", ""]
        header = ["#", *[label(p, params) for p in params], *key_metrics]
        body = [[r["number"], *[format_value(r.get(p)) for p in params],
                 *[_fmt(r.get(m)) for m in key_metrics]] for r in best]
        lines += [*_table(header, body), ""]
    if effects:
        lines += ["## Each axis alone", "",
                  "Mean ± std over every other axis, completed trials only.", ""]
        shown = [m for m in ("hard", "easy_val", "cheats") if m in metrics] or list(metrics)[:3]
        for name, entries in effects.items():
            header = [label(name, params), "n", *[label(m) for m in shown]]
            body = [[format_value(e["value"]), e["n"],
                     *[f"{e[m]['mean']:.3f} ± {e[m]['std']:.3f}" if m in e else "" for m in shown]]
                    for e in entries]
            lines += [*_table(header, body), ""]
        lines += ["![each axis alone](main_effects.png)", ""]
    if window:
        lines += ["## Where the cheaters are", "",
                  "Hard against easy accuracy, one point per trial; the green box is Task 1's "
                  "bar.", "", "![where the cheaters are](cheat_window.png)", ""]
    if diagrams:
        lines += ["## Phase diagrams", ""]
        for diagram in diagrams:
            title = (f"{label(diagram['metric'])}: {label(diagram['y'], params)} "
                     f"x {label(diagram['x'], params)}")
            lines += [f"![{title}]({diagram['file']})", ""]
    failed = [r for r in rows if r["state"] == "FAIL"]
    if failed:
        lines += ["## Failed trials", ""]
        body = [[r["number"], ", ".join(f"{short_name(p, params)}={format_value(r.get(p))}"
                                        for p in params if p in r),
                 str(r.get("error") or r.get("failure") or "worker lost").replace("|", "/")[:200]]
                for r in failed]
        lines += [*_table(["#", "parameters", "error"], body), ""]
    return "\n".join(lines)


_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|!=|=|>|<)\s*(\S.*?)\s*$")
_OPERATORS = {"=": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
              ">": operator.gt, "<": operator.lt}


def parse_condition(text: str, params: Sequence[str], metrics: Sequence[str]
                    ) -> tuple[str, str, Any]:
    """``"bias=0.95"``, ``"easy_val>=0.9"`` -> (column, operator, value)."""
    match = _CONDITION.match(text)
    if not match:
        raise ShortcutlabError(
            f"cannot read the condition {text!r}; write NAME=VALUE or NAME>=VALUE "
            "(also <=, >, <, !=), e.g. bias=0.95 or easy_val>=0.9"
        )
    name, op, raw = match.groups()
    column = name if name in metrics else resolve_axis(name, params)
    try:
        value: Any = float(raw)
    except ValueError:
        value = raw
    return column, op, value


def matches(row: Mapping[str, Any], condition: tuple[str, str, Any]) -> bool:
    column, op, value = condition
    have = row.get(column)
    if have is None:
        return False
    if isinstance(value, float):
        number = _numeric(have)
        return number is not None and _OPERATORS[op](number, value)
    return _OPERATORS[op](str(have), value) if op in ("=", "!=") else False


def export_study(storage: str, study_name: str, out_dir: str | os.PathLike,
                 x: str | None = None, y: str | None = None,
                 metrics: Sequence[str] | None = None,
                 where: Sequence[str] = ()) -> dict[str, Any]:
    """Write ``trials.csv``, phase diagrams, ``main_effects.png`` and ``summary.md``.

    ``where`` conditions (``"bias=0.95"``, ``"easy_val>=0.9"``) restrict the figures and
    the summary to the trials that meet them all; the CSV always holds every trial.
    """
    url = normalize_url(storage)
    study = load_study(url, study_name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, params, found_metrics = trial_rows(study)
    if not rows:
        raise ShortcutlabError(f"study {study_name!r} has no trials yet; run the sweep first")
    write_csv(out / "trials.csv", rows, params, found_metrics)
    conditions = [parse_condition(text, params, found_metrics) for text in where]
    if conditions:
        rows = [row for row in rows if all(matches(row, c) for c in conditions)]
        if not rows:
            raise ShortcutlabError(f"no trial meets {' and '.join(where)}")

    numeric_metrics = [m for m in found_metrics
                       if any(_numeric(r.get(m)) is not None for r in rows)]
    if metrics:
        for metric in metrics:
            if metric not in numeric_metrics:
                raise ShortcutlabError(
                    f"no trial recorded a numeric {metric!r}; metrics: {', '.join(numeric_metrics)}"
                )
        plot_metrics = list(metrics)
    else:
        plot_metrics = [m for m in ("hard", "cheats") if m in numeric_metrics]
        if not plot_metrics and numeric_metrics:
            plot_metrics = [study.user_attrs.get("metric", numeric_metrics[0])]
            plot_metrics = [m for m in plot_metrics if m in numeric_metrics] or numeric_metrics[:1]

    varied = [p for p in params if len({json.dumps(r.get(p)) for r in rows if p in r}) > 1]
    if (x is None) != (y is None):
        raise ShortcutlabError("give both --x and --y (or neither, for every pair of axes)")
    if x is not None and y is not None:
        pairs = [(resolve_axis(x, params), resolve_axis(y, params))]
        if pairs[0][0] == pairs[0][1]:
            raise ShortcutlabError("--x and --y must be different axes")
    else:
        pairs = list(itertools.combinations(varied, 2))[:MAX_DEFAULT_DIAGRAMS]

    diagrams = []
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    if complete:
        for metric in plot_metrics:
            for x_axis, y_axis in pairs:
                name = (f"phase_{metric}_{short_name(y_axis, params)}"
                        f"_vs_{short_name(x_axis, params)}.png")
                diagrams.append(phase_diagram(rows, x_axis, y_axis, metric, params,
                                              out / name, study.study_name))
    effects = main_effects(rows, varied, numeric_metrics)
    effect_metrics = [m for m in ("hard", "easy_val", "cheats") if m in numeric_metrics]
    if effects and (effect_metrics or plot_metrics):
        main_effects_figure(effects, params, effect_metrics or plot_metrics,
                            out / "main_effects.png", study.study_name)
    else:
        effects = {}
    window = cheat_window_figure(rows, params, out / "cheat_window.png", study.study_name)
    write_json(out / "phase_diagrams.json", {"study": study.study_name, "diagrams": diagrams,
                                             "main_effects": effects})
    text = summary_markdown(study, rows, params, found_metrics, effects, diagrams, url,
                            where=where, window=window is not None)
    with atomic_open(out / "summary.md", "w") as handle:
        handle.write(text + "\n")
    return {
        "csv": str(out / "trials.csv"),
        "summary": str(out / "summary.md"),
        "figures": [str(out / d["file"]) for d in diagrams]
        + ([str(out / "main_effects.png")] if effects else [])
        + ([str(out / "cheat_window.png")] if window else []),
        "trials": len(rows),
    }
