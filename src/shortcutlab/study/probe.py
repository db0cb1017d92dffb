"""Task 2, the prober: the ``probe`` stage visualizes and measures the units of every model
the study trains (lazy and cured) into ``probe/<model>/`` from the ``[probe]`` table; the
report section ranks the units by what they respond to."""

from __future__ import annotations

from typing import Any

from shortcutlab.study.options import LikeCommand
from shortcutlab.study.pipeline import Stage, StageContext
from shortcutlab.study.report.document import Section, Table, Verdict
from shortcutlab.study.report.frame import (
    StudyArtifacts,
    measured,
    models_of,
    num,
    pct,
    with_figures,
)
from shortcutlab.study.task import ANALYZED_MODELS, Summaries, Task, dig

LAYER_COUNTS = ("units", "color_units", "digit_units", "shape_units", "mixed_units", "dead",
                "mean_color_index")


def stage_probe(ctx: StageContext) -> dict[str, Any]:
    from shortcutlab.probe.run import ProbeConfig, run_probe
    from shortcutlab.probe.visualize import VisConfig

    options = dict(ctx.config)
    vis = VisConfig(steps=options.pop("steps"), tv=options.pop("tv"))
    config = ProbeConfig(vis=vis, **options)
    summary: dict[str, Any] = {"models": {}, "figures": []}
    for name in ctx.model_stages():
        probe = run_probe(ctx.run_dir(name), ctx.out / name, config=config, device=ctx.device)
        checks = probe["class_logits"]
        summary["models"][name] = {
            "dominant_color_match": checks["dominant_color_match"],
            "gray_judge_match": checks.get("gray_judge_match"),
            "recolored_kept": checks.get("recolored_kept"),
            "layers": {layer: {key: table[key] for key in LAYER_COUNTS}
                       for layer, table in probe["layers"].items()},
        }
        summary["figures"] += [
            {"path": f"{name}/class_logits.png",
             "caption": f"{name}: what each class logit wants to see; the caption gives the "
                        "dominant color and the digit a grayscale classifier of the source reads."},
            {"path": f"{name}/selectivity.png",
             "caption": f"{name}: every unit's digit vs color selectivity, per layer."},
        ]
    return summary


def section_probe(study: StudyArtifacts) -> Section:
    stage = study.stage("probe") or {}
    section = Section(
        "task2", "Task 2 — the prober",
        asked="Optimize input images to maximize chosen units (channel means, class logits) "
              "and see what the neurons detect: color, digit parts, or mixtures.",
        did="For the lazy and the cured model: a feature visualization of every class logit "
            "and of the units of each layer (regularized by total variation), and every unit "
            "measured on the validation digits rendered in all ten colors, which ranks it "
            "as a color, digit, shape or mixed unit. The class-logit images are checked "
            "against each class's own color, by a grayscale classifier of the source, and by the "
            "model itself after their color channels are rotated (the same pattern in "
            "other hues).",
    )
    rows = []
    for name, entry in models_of(stage).items():
        for layer, counts in entry.get("layers", {}).items():
            rows.append([name, layer, counts.get("units"), counts.get("color_units"),
                         counts.get("digit_units"), counts.get("shape_units"),
                         counts.get("mixed_units"), counts.get("dead"),
                         num(counts.get("mean_color_index"), 2)])
        section.notes.append(
            f"{name}: the image that maximizes a class logit is dominated by that class's "
            f"own color for {pct(entry.get('dominant_color_match'))} of the classes; a "
            f"grayscale classifier of the source reads the class in it for "
            f"{pct(entry.get('gray_judge_match'))}; after a rotation of its color channels "
            f"the model still calls it its class for {pct(entry.get('recolored_kept'))}.")
    lazy, cured = models_of(stage).get("lazy"), next(
        (entry for name, entry in models_of(stage).items() if name != "lazy"), None)
    for key, target, remark in (
            ("recolored_kept", "the cured model's class pictures survive a recoloring at "
             "least 25 points more often than the lazy model's (they carry shape, not color)",
             ""),
            ("gray_judge_match", "a grayscale classifier of the source reads the class in "
             "the cured model's class pictures at least 25 points more often than in the lazy "
             "model's", "; the lazy model's pictures carry strokes too")):
        verdict = _gap_verdict(lazy, cured, key, target, remark)
        if verdict is not None:
            section.verdicts.append(verdict)
    if rows:
        section.tables.append(Table(
            "Units per layer by what they respond to (validation digits in every color)",
            ["model", "layer", "units", "color", "digit", "shape", "mixed", "dead",
             "mean color index"], rows))
    return with_figures(section, study, "probe", ran=bool(stage))


def _gap_verdict(lazy: dict[str, Any] | None, cured: dict[str, Any] | None, key: str,
                 target: str, remark: str) -> Verdict | None:
    """Whether the cured model's rate ``key`` is at least 25 points above the lazy one's."""
    if not (lazy and cured and measured(lazy.get(key)) and measured(cured.get(key))):
        return None
    gap = cured[key] - lazy[key]
    return Verdict(target, f"{pct(cured[key])} vs {pct(lazy[key])} ({100 * gap:+.0f} "
                           f"points{remark})", gap >= 0.25)


def headline(stages: Summaries) -> dict[str, Any]:
    return {name: {"dominant_color_match": entry.get("dominant_color_match"),
                   "gray_judge_match": entry.get("gray_judge_match"),
                   "recolored_kept": entry.get("recolored_kept")}
            for name, entry in (dig(stages, "probe", "models") or {}).items()}


TASK = Task("task2", (Stage("probe", stage_probe, inputs=ANALYZED_MODELS,
                             description="Task 2: visualize units, rank them by color "
                                         "selectivity",
                             options=LikeCommand(("probe",), unset={"seed": -1})),),
            section_probe, headline)
