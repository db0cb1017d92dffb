"""Task 0, a dataset that lies: the ``data`` stage builds the biased Colored-MNIST dataset
from the ``[data]`` table, and its report section checks the bias counts."""

from __future__ import annotations

from typing import Any

from shortcutlab.data.dataset import SPLITS
from shortcutlab.study.options import LikeCommand
from shortcutlab.study.pipeline import Stage, StageContext
from shortcutlab.study.report.document import Section, Table, Verdict
from shortcutlab.study.report.frame import StudyArtifacts, check, pct
from shortcutlab.study.task import Summaries, Task, dig

CAPTION = ("One row per digit: examples in the class's own color (aligned) and in another "
           "color (conflicting), per split.")


def stage_data(ctx: StageContext) -> dict[str, Any]:
    """Build the dataset into ``data/dataset/`` and a sample grid."""
    from shortcutlab.data import BuildConfig, build_dataset, load_source
    from shortcutlab.data.show import save_grid

    options = dict(ctx.config)
    options["limit"] = options.get("limit") or None
    config = BuildConfig(**options)
    meta = build_dataset(config, ctx.out / "dataset", load_source(config.source, config.limit),
                         force=True)
    save_grid(ctx.out / "dataset", ctx.out / "samples.png")
    aligned = {split: sum(table[c][c] for c in range(len(table))) / meta["sizes"][split]
               for split, table in meta["counts"].items()}
    return {"dataset_id": meta["dataset_id"], "sizes": meta["sizes"], "config": meta["config"],
            "aligned_share": aligned, "dataset": "dataset",
            "figures": [{"path": "samples.png", "caption": CAPTION}]}


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


def headline(stages: Summaries) -> dict[str, Any]:
    return {"train_aligned_share": dig(stages, "data", "aligned_share", "train"),
            "hard_aligned_share": dig(stages, "data", "aligned_share", "test_hard")}


TASK = Task("task0", (Stage("data", stage_data,
                             description="Task 0: build the biased Colored-MNIST dataset",
                             options=LikeCommand(("data", "build"),
                                                 unset={"seed": -1, "limit": 0})),),
            section_data, headline)
