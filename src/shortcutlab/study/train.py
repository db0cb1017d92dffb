"""Task 1, the cheater: the ``lazy`` and ``standard`` stages train a preset on the study's
dataset and evaluate it (one stage function, two presets); the report section checks the
bars and shows that the lazy model reads color."""

from __future__ import annotations

from typing import Any

from shortcutlab.study.options import LikeCommand
from shortcutlab.study.pipeline import Stage, StageContext
from shortcutlab.study.report.document import Section, Table
from shortcutlab.study.report.frame import StudyArtifacts, check, pct
from shortcutlab.study.task import Summaries, Task, dig

CAPTIONS = {
    "confusion_random.png": "Hard set (each digit in a random other color): confusion "
                            "matrix, rows normalized.",
    "confusion_inverted.png": "Hard set with inverted colors (digit d in the color of "
                              "d+1): a color reader predicts d+1.",
    "color_swap.png": "Color-swap test: every test digit rendered in every color; left, "
                      "how often the prediction is the class owning the color.",
    "per_class.png": "Accuracy per class on every split.",
}
KEPT_METRICS = ("easy_train", "easy_val", "test_easy", "hard", "unbiased",
                "color_following_rate", "selected_step", "selection_met", "total_seconds",
                "cpu_seconds")


def stage_train(ctx: StageContext) -> dict[str, Any]:
    """Train the stage's preset into ``run/``, then evaluate it into ``evaluate/``."""
    from shortcutlab.train import train_run
    from shortcutlab.train.evaluate import evaluate_run

    options = dict(ctx.config)
    preset, seed = options.pop("preset"), int(options.pop("seed"))
    swap_images = int(options.pop("swap_images"))
    overrides = {key: value for key, value in options.items() if value}  # 0/"" = preset's
    if "epochs" in overrides:
        overrides["steps"] = None
    device = str(ctx.device)
    metrics = train_run(ctx.dataset_dir, ctx.out / "run", preset=preset, seed=seed,
                        resume=ctx.resume, device=device, **overrides)
    report = evaluate_run(ctx.out / "run", ctx.dataset_dir, ctx.out / "evaluate",
                          swap_images=swap_images, device=device)
    swap = report.get("color_swap", {})
    red_ones = swap["prediction_counts"][1][0] if swap else None  # digit 1 rendered red
    return {
        "run": "run",
        "preset": preset,
        "seed": seed,
        "metrics": {key: metrics[key] for key in KEPT_METRICS if key in metrics},
        "evaluate": report["metrics"],
        "color_swap_follows_color": swap.get("off_diagonal_follows_color"),
        "red_one_predictions": red_ones,
        "figures": [{"path": f"evaluate/{name}", "caption": caption}
                    for name, caption in CAPTIONS.items() if name in report["figures"]],
    }


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


def headline(stages: Summaries) -> dict[str, Any]:
    return {key: dig(stages, "lazy", "metrics", key)
            for key in ("easy_train", "easy_val", "hard", "unbiased")} \
        | {"standard_hard": dig(stages, "standard", "metrics", "hard")}


TRAIN_OPTIONS = LikeCommand(("train",), unset={"seed": -1, "steps": 0, "epochs": 0.0})

TASK = Task("task1", (
    Stage("lazy", stage_train, inputs=("data",), cost=2,
          description="Task 1: train the cheater (preset lazy) and evaluate it",
          options=TRAIN_OPTIONS),
    Stage("standard", stage_train, inputs=("data",), cost=2,
          description="Task 1: train a normal recipe (preset standard) for comparison",
          options=TRAIN_OPTIONS),
), section_train, headline)
