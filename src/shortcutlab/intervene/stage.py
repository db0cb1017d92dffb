"""The study's ``cured`` stage: Task 4, the interventions that make the lazy model read shape.

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
from shortcutlab.pipeline import StageContext

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

    data = ctx.input("data")
    dataset = data.out / data.summary["dataset"]
    options = dict(ctx.config)
    methods = list(options.pop("methods"))
    seed = int(options.pop("seed"))
    epochs = float(options.pop("epochs"))
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
                          resume=ctx.resume, measure=False)
        metrics = intervene_run(dataset, ctx.out / method, method, seed=seed,
                                teacher_dir=teacher if "teacher" in cls.uses else None,
                                overrides=overrides, resume=ctx.resume)
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from shortcutlab.artifacts import atomic_open

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
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
