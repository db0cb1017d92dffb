"""Did an intervention run converge? Its learning curves, and the undertrained check.

A run directory's ``log.jsonl`` holds one record per evaluation of the easy validation
split (``step``, ``easy_val``, ``easy_val_aligned``, ``easy_val_conflicting``, ...; see
``docs/artifacts.md``). From it:

- :func:`plot_convergence` draws easy-val accuracy and easy-val color-conflicting accuracy
  against training steps, for one run or for a method and its erm-control on the same
  axes (``convergence.png`` in a run directory, ``convergence/METHOD.png`` beside an
  ``--all`` table);
- :func:`assess` says whether the run looks undertrained.

The undertrained rule: a run is **undertrained** when the checkpoint its selection rule
kept is the last evaluation and the selection metric was still rising there
(:func:`still_rising`): the last value is at least each of the previous ``window``
values and exceeds their mean by more than ``tolerance`` (:data:`WINDOW` = 3 evaluations,
i.e. 1.5 epochs at two evaluations per epoch; :data:`TOLERANCE` = 0.005, half a
percentage point). A plateau, where the last evaluations lie within the tolerance of
each other, never fires, nor does a run whose best checkpoint came earlier; with fewer
than two evaluations there is nothing to compare and the rule stays silent. The cure is
a longer budget: ``--set epochs=N``, N suggested as twice the current epochs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import read_json, read_jsonl
from shortcutlab.figures import save_figure

WINDOW = 3
"""How many evaluations before the last one the still-rising rule compares it with."""

TOLERANCE = 0.005
"""How far (as a fraction) the last value must exceed their mean to count as rising."""

FIGURE = "convergence.png"
"""The convergence figure of a single run, inside its run directory."""

LOG = "log.jsonl"
LINESTYLES = ("-", "--", ":", "-.")
"""Line styles of successive seeds on one figure."""
CURVES: tuple[tuple[str, str], ...] = (
    # (log.jsonl key, panel title)
    ("easy_val", "easy val"),
    ("easy_val_conflicting", "easy val, color-conflicting images"),
)


class UndertrainedWarning(UserWarning):
    """The selected checkpoint is the last evaluation and the selection metric still rose."""


def still_rising(values: Sequence[float | None], *, window: int = WINDOW,
                 tolerance: float = TOLERANCE) -> bool:
    """Whether the last of ``values`` (in evaluation order) says training was not done.

    True when the last value is at least each of the ``window`` values before it and
    exceeds their mean by more than ``tolerance``. Missing values (None, NaN) are skipped;
    fewer than two values give False (nothing to compare).
    """
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if len(kept) < 2 or window < 1:
        return False
    last, previous = kept[-1], kept[-1 - window:-1]
    return last >= max(previous) and last - sum(previous) / len(previous) > tolerance


def read_log(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The evaluation records of a run directory, in step order ([] without a log)."""
    path = Path(run_dir) / LOG
    if not path.is_file():
        return []
    return sorted(read_jsonl(path), key=lambda record: record["step"])


def curve(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of ``key`` over the records that logged it."""
    points = [(int(r["step"]), float(r[key])) for r in records if r.get(key) is not None]
    return [s for s, _ in points], [v for _, v in points]


def selection_metric(selection: str) -> str | None:
    """The metric a selection rule maximizes (``last``: easy_val); None for ``first:``."""
    from shortcutlab.train.config import parse_selection

    rule = parse_selection(selection)
    if rule.kind == "first":
        return None
    return rule.metric


def suggested_epochs(epochs: float) -> int:
    """A budget worth trying next: twice the current one (a whole number of epochs)."""
    return max(1, math.ceil(2 * float(epochs)))


def assess(records: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any], *,
           epochs: float | None = None, window: int = WINDOW,
           tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Whether the run of ``records`` (its log) and ``metrics`` (its metrics.json) is
    undertrained, as a JSON-ready dict: ``undertrained``, ``reason`` and ``advice`` (None
    when it is not), the numbers behind it and the ``rule``.

    ``epochs`` is the run's budget (default: ``hparams.epochs``, else ``epochs_trained``).
    """
    metric = selection_metric(str(metrics.get("selection", "best-val")))
    if epochs is None:
        epochs = (metrics.get("hparams") or {}).get("epochs", metrics.get("epochs_trained"))
    result: dict[str, Any] = {
        "undertrained": False, "reason": None, "advice": None, "metric": metric,
        "rule": f"selected checkpoint is the last evaluation and the metric is at least each "
                f"of the {window} evaluations before it and exceeds their mean by more than "
                f"{tolerance:g}",
        "window": window, "tolerance": tolerance, "last_step": None,
        "selected_step": metrics.get("selected_step"), "epochs": epochs,
        "suggested_epochs": None,
    }
    if metric is None or not records:
        return result
    steps, values = curve(records, metric)
    if not steps:
        return result
    result["last_step"] = steps[-1]
    previous = values[-1 - window:-1]
    result["last"] = values[-1]
    result["previous_mean"] = sum(previous) / len(previous) if previous else None
    selected = metrics.get("selected_step")
    if selected is None or int(selected) != steps[-1]:
        return result
    if not still_rising(values, window=window, tolerance=tolerance):
        return result
    result["undertrained"] = True
    result["reason"] = (
        f"the selected checkpoint is the last evaluation (step {steps[-1]}) and {metric} was "
        f"still rising: {values[-1]:.4f} against {result['previous_mean']:.4f}, the mean of "
        f"the {len(previous)} evaluation(s) before it"
    )
    if epochs is not None:
        result["suggested_epochs"] = suggested_epochs(epochs)
        result["advice"] = (f"raise the budget: --set epochs={result['suggested_epochs']} "
                            f"(now {epochs:g})")
    else:
        result["advice"] = "raise the budget (--set epochs=N)"
    return result


def assess_run(run_dir: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """:func:`assess` of a finished run directory (its log.jsonl and metrics.json)."""
    run_dir = Path(run_dir)
    return assess(read_log(run_dir), read_json(run_dir / "metrics.json"), **options)


def warning_text(label: str, assessment: Mapping[str, Any]) -> str:
    """One line for a user: which run, why it looks undertrained, what to raise."""
    return f"{label} looks undertrained: {assessment['reason']}; {assessment['advice']}"


@dataclass(frozen=True)
class Series:
    """One run's curves on a convergence figure."""

    label: str
    records: Sequence[Mapping[str, Any]]
    selected_step: int | None = None
    color: str = "#1f77b4"
    linestyle: str = "-"


def plot_convergence(path: str | os.PathLike, series: Sequence[Series], title: str) -> None:
    """Easy-val and easy-val color-conflicting accuracy against steps, every series on the
    same two panels; a series' selected checkpoint is marked with a circle."""
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.2), sharex=True)
    labelled: set[tuple[str, str]] = set()
    for ax, (key, panel) in zip(axes, CURVES, strict=True):
        for one in series:
            steps, values = curve(one.records, key)
            if not steps:
                continue
            label = one.label if (key, one.label) not in labelled else None
            labelled.add((key, one.label))
            ax.plot(steps, [100 * v for v in values], color=one.color, lw=1.2,
                    linestyle=one.linestyle, marker="." if len(steps) < 30 else None, label=label)
            if one.selected_step in steps:
                at = steps.index(one.selected_step)
                ax.plot([steps[at]], [100 * values[at]], "o", color=one.color, mfc="none",
                        ms=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("accuracy, %")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{title} (circle: selected checkpoint)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plot_run(run_dir: str | os.PathLike, label: str | None = None,
             metrics: Mapping[str, Any] | None = None) -> Path | None:
    """Write ``convergence.png`` into a run directory (None when it has no log)."""
    run_dir = Path(run_dir)
    records = read_log(run_dir)
    if not records:
        return None
    if metrics is None:
        metrics = read_json(run_dir / "metrics.json")
    label = label or str(metrics.get("method", run_dir.name))
    path = run_dir / FIGURE
    plot_convergence(path, [Series(label, records, metrics.get("selected_step"))],
                     f"{label}, seed {metrics.get('seed', '?')}")
    return path
