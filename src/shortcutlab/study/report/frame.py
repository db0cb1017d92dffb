"""The report frame: reading a study directory, the verdict helpers every task's section
uses, the study-run section, and writing ``report.html``.

Each task's own section lives in its task file (``shortcutlab/study/<task>.py``), next to
the stage whose summary it reads; :mod:`shortcutlab.study.run` hands the sections here in
task order. A stage that did not run yields "not measured" verdicts rather than a missing
section, so a miss is never hidden.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import read_json, write_bytes
from shortcutlab.errors import ShortcutlabError
from shortcutlab.study.report.document import Figure, Section, Table, Verdict, render_html

REPORT_FILE = "report.html"


class StudyArtifacts:
    """Read access to a study directory: stage summaries and files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        summary_path = root / "summary.json"
        if not summary_path.is_file():
            raise ShortcutlabError(f"{root} has no summary.json; run `shortcutlab study --out "
                                   f"{root}` first")
        self.summary = read_json(summary_path)
        self.stages: dict[str, dict[str, Any]] = self.summary.get("stages", {})

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.stages.get(name)

    def figures(self, name: str) -> list[Figure]:
        stage = self.stage(name) or {}
        return [Figure(self.root / name / item["path"], item["caption"])
                for item in stage.get("figures", [])]


def measured(value: Any) -> bool:
    """A number that was measured (not missing, not NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value)


def pct(value: float | None) -> str:
    return f"{100 * value:.1f}%" if measured(value) else "n/a"


def num(value: float | None, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if measured(value) else "n/a"


def mean_std(values: dict[str, float] | None, key: str = "") -> str:
    if not values:
        return "n/a"
    return f"{100 * values['mean']:.1f} ± {100 * values['std']:.1f}%"


def check(target: str, value: float | None, passes: Callable[[float], bool],
          fmt: Callable[[float | None], str] = pct) -> Verdict:
    return Verdict(target, fmt(value), bool(passes(value)) if measured(value) else None)


def with_figures(section: Section, study: StudyArtifacts, stage_name: str,
                  ran: bool) -> Section:
    """Attach a stage's figures to its section, saying so when the stage has not run."""
    if not ran:
        section.notes.append(f"The {stage_name} stage has not run: no results.")
    section.figures = study.figures(stage_name)
    return section


def models_of(stage: dict[str, Any], first: tuple[str | None, ...] = ("lazy",)
               ) -> dict[str, Any]:
    """A stage's per-model entries, the lazy model first (JSON files sort their keys)."""
    models = stage.get("models", {}) if isinstance(stage.get("models"), dict) else {}
    order = [name for name in first if name in models]
    return {name: models[name] for name in order + sorted(set(models) - set(order))}


def section_run(study: StudyArtifacts) -> Section:
    timings = study.summary.get("timings", {})
    load = study.summary.get("load_average")
    section = Section(
        "run", "The study run",
        asked="The whole study on a laptop CPU in minutes: the default within 15 minutes "
              "(goal 10) and --quick within 3 on a 2-core machine.",
        did="Each stage is keyed by its config and inputs and skipped when up to date; CPU "
            "seconds count every thread of the process and do not depend on other load.",
    )
    rows = [[name, num(t.get("seconds"), 0), num(t.get("cpu_seconds"), 0)]
            for name, t in timings.items()]
    if rows:
        section.tables.append(Table("Stage times of the run that produced them",
                                    ["stage", "wall s", "CPU s"], rows))
    if load:
        section.notes.append("Load average when the study finished (1, 5, 15 min): "
                             + ", ".join(f"{value:.1f}" for value in load) + ".")
    return section


def write_report(study_dir: str | Path,
                 sections: Sequence[Callable[[StudyArtifacts], Section]]) -> Path:
    """Write ``study_dir/report.html`` from the study's artifacts, one section per entry of
    ``sections`` (then the study-run section); return its path."""
    root = Path(study_dir)
    study = StudyArtifacts(root)
    sections = [make(study) for make in (*sections, section_run)]
    mode = "quick study" if study.summary.get("quick") else "full study"
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    html = render_html("shortcutlab — the Lazy Artist study",
                       f"{mode}, report written {stamp} from {root.resolve()}", sections)
    path = root / REPORT_FILE
    write_bytes(path, html.encode())
    return path
