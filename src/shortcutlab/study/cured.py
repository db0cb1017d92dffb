"""Task 4, the intervention: the ``cured`` stage trains the interventions that make the lazy
model read shape, and its report section compares them with the lazy and standard models.

It trains each method of the ``[cured]`` table with :func:`intervene_run` on the study's
dataset into ``cured/<method>/`` (a method that distills a teacher gets one trained first
into ``cured/teacher/``) and points the stage's ``run`` at the method whose model scores
best on the *conflicting* images of the easy validation split: the only split-and-subset
the choice may look at that asks for shape (the hard and unbiased test splits choose
nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shortcutlab.errors import ShortcutlabError
from shortcutlab.study.options import LikeCommand
from shortcutlab.study.pipeline import Stage, StageContext
from shortcutlab.study.report.document import Section, Table, Verdict
from shortcutlab.study.report.frame import StudyArtifacts, check, measured, num, pct, with_figures
from shortcutlab.study.task import Summaries, Task, dig

SELECTION = "easy_val_conflicting"
SPLIT_KEYS = ("easy_train", "easy_val", "easy_val_conflicting", "test_easy", "hard",
              "hard_inverted", "unbiased", "background_share", "color_following_rate")
FIGURE = "methods.png"


def _val_conflicting(metrics: dict[str, Any]) -> float | None:
    return metrics.get("splits", {}).get("val", {}).get("conflicting")


def method_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """What the study keeps of one intervention run's ``metrics.json``."""
    row = {key: metrics.get(key) for key in SPLIT_KEYS if key != "easy_val_conflicting"}
    row["easy_val_conflicting"] = _val_conflicting(metrics)
    row.update(uses=list(metrics.get("uses", [])), epochs=metrics.get("epochs_trained"),
               selected_step=metrics.get("selected_step"),
               train_seconds=metrics.get("train_seconds"), cpu_seconds=metrics.get("cpu_seconds"))
    return row


def choose(rows: dict[str, dict[str, Any]]) -> str:
    """The method with the best easy-val accuracy on color-conflicting images (first wins
    ties, so the config's order decides between equals)."""
    scored = {name: row[SELECTION] for name, row in rows.items() if row[SELECTION] is not None}
    if not scored:
        raise ShortcutlabError("no intervention has conflicting images in easy val to be "
                               "chosen by; build the dataset with bias < 1")
    return max(scored, key=lambda name: (scored[name], -list(rows).index(name)))


def stage_cured(ctx: StageContext) -> dict[str, Any]:
    from shortcutlab.intervene.registry import get_method
    from shortcutlab.intervene.run import intervene_run

    dataset = ctx.dataset_dir
    device = str(ctx.device)
    options = dict(ctx.config)
    methods = list(options.pop("methods"))
    seed = int(options.pop("seed"))
    epochs = float(options.pop("epochs"))
    model = str(options.pop("model"))
    if not methods:
        raise ShortcutlabError("[cured] methods is empty; name at least one method "
                               "(`shortcutlab intervene --list` shows them)")
    overrides = {"epochs": epochs} if epochs else {}
    teacher: Path | None = None
    rows: dict[str, dict[str, Any]] = {}
    for method in methods:
        cls = get_method(method)
        if "teacher" in cls.uses and teacher is None:
            teacher = ctx.out / "teacher"
            intervene_run(dataset, teacher, "teacher", seed=seed, overrides=overrides,
                          resume=ctx.resume, measure=False, device=device, model=model)
        metrics = intervene_run(dataset, ctx.out / method, method, seed=seed,
                                teacher_dir=teacher if "teacher" in cls.uses else None,
                                overrides=overrides, resume=ctx.resume, device=device,
                                model=model)
        rows[method] = method_row(metrics)
    best = choose(rows)
    _plot_methods(ctx.out / FIGURE, rows)
    return {
        "run": best,
        "method": best,
        "uses": rows[best]["uses"],
        "seed": seed,
        "epochs": epochs or None,
        "selection": f"highest {SELECTION} (easy validation split, color-conflicting images)",
        "methods": rows,
        "metrics": rows[best],
        "figures": [{"path": FIGURE,
                     "caption": "Accuracy of each intervention on easy validation, on its "
                                "color-conflicting images (what chooses the cured model), on "
                                "the hard set and on the unbiased set."}],
    }


def _plot_methods(path: Path, rows: dict[str, dict[str, Any]]) -> None:
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt
    import numpy as np

    from shortcutlab.figures import save_figure

    bars = [("easy_val", "easy val"), ("easy_val_conflicting", "easy val, conflicting"),
            ("hard", "hard"), ("unbiased", "unbiased")]
    models = rows
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    width = 0.8 / len(models)
    positions = np.arange(len(bars))
    for k, (name, row) in enumerate(models.items()):
        values = [row.get(key) for key, _ in bars]
        heights = [v if v is not None else 0.0 for v in values]
        drawn = ax.bar(positions + (k - (len(models) - 1) / 2) * width, heights, width,
                       label=name, color=f"C{k}")
        for rect, value in zip(drawn, values, strict=True):
            if value is not None:
                ax.text(rect.get_x() + rect.get_width() / 2, rect.get_height() + 0.01,
                        f"{100 * value:.0f}", ha="center", va="bottom", fontsize=7)
    ax.axhline(0.70, color="k", linestyle=":", linewidth=1, label="Task 4 target on hard (70%)")
    ax.set_xticks(positions, [label for _, label in bars])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(models) + 1,
              frameon=False)
    fig.tight_layout()
    save_figure(fig, path)


def _epochs(epochs: float | None) -> str:
    if not measured(epochs):
        return "the registry's epoch budget"
    return f"{epochs:g} epoch" + ("" if epochs == 1 else "s")


def section_cured(study: StudyArtifacts) -> Section:
    stage = study.stage("cured") or {}
    lazy = (study.stage("lazy") or {}).get("metrics", {})
    standard = (study.stage("standard") or {}).get("metrics", {})
    methods = stage.get("methods", {})
    best = stage.get("method")
    section = Section(
        "task4", "Task 4 — the intervention",
        asked="Retrain so the model ignores color and uses shape, without grayscale images "
              "and without changing the 95%-biased dataset, with at least two custom training "
              "strategies. Target: above 70% on the hard set.",
        did="Two methods from the intervention registry train the lazy model's architecture "
            "(cnn3) from scratch on the unchanged biased training split, each with its "
            "registered hyperparameters and the same epoch budget "
            f"({_epochs(stage.get('epochs'))}): "
            + ", ".join(f"{name} (uses: {', '.join(row.get('uses', []))})"
                        for name, row in methods.items())
            + ". The cured model is the one with the best accuracy on the color-conflicting "
              "images of the easy validation split; the hard and unbiased test splits choose "
              "nothing. The full table, every method against its control over three seeds, "
              "is made by shortcutlab intervene --all.",
    )
    section.verdicts = [
        check(f"the cured model ({best or 'none'}) scores above 70% on the hard set",
              stage.get("metrics", {}).get("hard"), lambda v: v > 0.70),
        Verdict("at least two training strategies", f"{len(methods)} trained",
                len(methods) >= 2 if stage else None),
    ]
    for name, row in methods.items():
        if name != best:
            section.verdicts.append(check(f"{name} (not chosen) scores above 70% on the hard set",
                                          row.get("hard"), lambda v: v > 0.70))
    columns = ["model", "uses", "easy val", "easy val conflicting", "hard", "hard inverted",
               "unbiased", "Grad-CAM background share", "train s"]
    rows = []
    for label, values, uses in (("lazy", lazy, "—"), ("standard", standard, "—")):
        if values:
            rows.append([label, uses, pct(values.get("easy_val")), "n/a",
                         pct(values.get("hard")), "n/a", pct(values.get("unbiased")), "n/a",
                         num(values.get("total_seconds"), 0)])
    for name, row in methods.items():
        rows.append([name + (" (chosen)" if name == best else ""),
                     ", ".join(row.get("uses", [])), pct(row.get("easy_val")),
                     pct(row.get("easy_val_conflicting")), pct(row.get("hard")),
                     pct(row.get("hard_inverted")), pct(row.get("unbiased")),
                     pct(row.get("background_share")), num(row.get("train_seconds"), 0)])
    if rows:
        section.tables.append(Table(f"Interventions (seed {stage.get('seed', 0)})", columns,
                                    rows))
    return with_figures(section, study, "cured", ran=bool(stage))


def headline(stages: Summaries) -> dict[str, Any]:
    return {"method": dig(stages, "cured", "method"), "uses": dig(stages, "cured", "uses"),
            "hard": dig(stages, "cured", "metrics", "hard"),
            "unbiased": dig(stages, "cured", "metrics", "unbiased"),
            "methods": {name: {"hard": row.get("hard"),
                               "easy_val_conflicting": row.get("easy_val_conflicting")}
                        for name, row in (dig(stages, "cured", "methods") or {}).items()}}


TASK = Task("task4", (Stage("cured", stage_cured, inputs=("data",), cost=5,
                             description="Task 4: train the interventions, keep the best on "
                                         "easy-val conflicting",
                             options=LikeCommand(("intervene",), unset={"seed": -1})),),
            section_cured, headline)
