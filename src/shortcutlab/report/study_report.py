"""The study report: one section per task, built only from what the stages wrote.

Each section states what the task asked, what the study did, the figures and tables, and
one verdict line per numeric target. A stage that did not run yields "not measured"
verdicts rather than a missing section, so a miss is never hidden.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import read_json, write_bytes
from shortcutlab.data.dataset import SPLITS
from shortcutlab.errors import ShortcutlabError
from shortcutlab.report.document import Figure, Section, Table, Verdict, render_html

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


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def mean_std(values: dict[str, float] | None, key: str = "") -> str:
    if not values:
        return "n/a"
    return f"{100 * values['mean']:.1f} ± {100 * values['std']:.1f}%"


def check(target: str, value: float | None, passes: Callable[[float], bool],
          fmt: Callable[[float | None], str] = pct) -> Verdict:
    return Verdict(target, fmt(value), None if value is None else bool(passes(value)))


def section_data(study: StudyArtifacts) -> Section:
    stage = study.stage("data") or {}
    section = Section(
        "task0", "Task 0 — a dataset that lies",
        asked="Colored MNIST where each digit class has one dominant color in 95% of the easy "
              "training set, a hard test set where no digit carries its own color, and no flat "
              "solid background.",
        did="Built every split from the real digits with exact per-class counts; the color "
            "lives in a textured background (or the stroke), never a flat fill.",
    )
    config = stage.get("config", {})
    aligned = stage.get("aligned_share", {})
    section.verdicts = [
        check("95% of each class carries its color in the easy training set",
              aligned.get("train"), lambda v: abs(v - config.get("bias", 0.95)) < 0.005),
        check("no hard-set digit carries its own color", aligned.get("test_hard"),
              lambda v: v == 0.0),
        Verdict("no flat solid background", f"style {config.get('style', 'n/a')}",
                None if not config else config.get("style") != "solid"),
    ]
    if stage.get("sizes"):
        section.tables.append(Table("Splits", ["split", "images", "share in own color"], [
            [name, stage["sizes"][name], pct(aligned.get(name))]
            for name in SPLITS if name in stage["sizes"]]))
    section.figures = study.figures("data")
    return section


def section_train(study: StudyArtifacts) -> Section:
    lazy = study.stage("lazy") or {}
    standard = study.stage("standard") or {}
    metrics = lazy.get("metrics", {})
    section = Section(
        "task1", "Task 1 — the cheater",
        asked="Train a standard CNN on the easy set: above 95% on the easy training and "
              "validation sets, below 20% on the hard set, at exactly 95% bias. Show the "
              "confusion matrix and prove the model reads color: a red 1 is predicted 0.",
        did="cnn3 (three convolutions, a small fully connected head) trained with the lazy "
            "preset: the network learns color within its first few dozen steps and shape "
            "only later, so training stops at the first checkpoint whose accuracy on easy "
            "val and on the easy training split clears the bar. The hard set is never used "
            "for any choice. The standard preset trains the same model normally.",
    )
    section.verdicts = [
        check("easy training accuracy above 95%", metrics.get("easy_train"), lambda v: v > 0.95),
        check("easy validation accuracy above 95%", metrics.get("easy_val"),
              lambda v: v > 0.95),
        check("hard-set accuracy below 20%", metrics.get("hard"), lambda v: v < 0.20),
        check("it reads color: test digits rendered in another class's color are predicted "
              "as that class (color-swap test, mean over digit/color pairs)",
              lazy.get("color_swap_follows_color"), lambda v: v > 0.5),
    ]
    red_ones = lazy.get("red_one_predictions")
    if red_ones and sum(red_ones):
        total = sum(red_ones)
        top = sorted(range(len(red_ones)), key=lambda k: -red_ones[k])[:3]
        shares = ", ".join(f"{k}: {pct(red_ones[k] / total)}" for k in top if red_ones[k])
        section.notes.append(
            f"A red 1 (red is the color of class 0): predicted 0 in {pct(red_ones[0] / total)} "
            f"of {total} test 1s rendered red; most common predictions {shares}. Red 1s that "
            "are not called 0 usually go to the class of a neighboring color (7: pink, "
            "6: orange) — the lazy model has learned a little shape, typically enough to "
            "rule out one or two classes, and reads color for the rest.")
    names = ("easy_train", "easy_val", "test_easy", "hard", "unbiased", "color_following_rate")
    rows = []
    for label, stage in (("lazy", lazy), ("standard", standard)):
        values = stage.get("metrics", {})
        if values:
            rows.append([label, *(pct(values.get(n)) for n in names),
                         values.get("selected_step", "n/a")])
    if rows:
        section.tables.append(Table("Lazy vs standard training (seed 0)",
                                    ["preset", *names, "selected step"], rows))
    section.figures = study.figures("lazy")
    return section


SECTIONS: list[Callable[[StudyArtifacts], Section]] = [section_data, section_train]


def build_report(study_dir: str | Path) -> Path:
    """Write ``study_dir/report.html`` from the study's artifacts; return its path."""
    root = Path(study_dir)
    study = StudyArtifacts(root)
    sections = [make(study) for make in SECTIONS]
    mode = "quick study" if study.summary.get("quick") else "full study"
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    html = render_html("shortcutlab — the Lazy Artist study",
                       f"{mode}, report written {stamp} from {root.resolve()}", sections)
    path = root / REPORT_FILE
    write_bytes(path, html.encode())
    return path
