"""Task 3, the interrogation: the ``explain`` stage compares the lazy model with the cured
one, and its report section says where each model's evidence sits.

For every attribution method of the ``[explain]`` table it runs :func:`explain_run` on
the lazy model with the cured model as comparison into ``explain/<method>/``: the "Aha"
panel, background share and pointing game per split, examples and the sanity check.
"""

from __future__ import annotations

from typing import Any

from shortcutlab.study.options import LikeCommand
from shortcutlab.study.pipeline import Stage, StageContext
from shortcutlab.study.report.document import Section, Table
from shortcutlab.study.report.frame import StudyArtifacts, measured, num, pct, with_figures
from shortcutlab.study.task import Summaries, Task, dig

CAPTIONS = {
    "aha": "{title}, the \"Aha\" panel: each digit in its own class color (as in training), "
           "then in another class's color; the lazy model next to the cured one.",
    "shares": "{title}: share of positive attribution outside the digit (lower: the evidence "
              "is on the digit) and the pointing game (is the peak on the digit?), per split.",
    "sanity": "{title}, sanity check (Adebayo et al.): rank correlation of the maps with the "
              "original ones as layers are randomized from the top down; an explanation that "
              "does not change is an edge detector, not an explanation.",
}


def stage_explain(ctx: StageContext) -> dict[str, Any]:
    from shortcutlab.explain.methods import get_method
    from shortcutlab.explain.run import ExplainConfig, explain_run, headline

    options = dict(ctx.config)
    methods = options.pop("methods")
    options["splits"] = tuple(options["splits"])
    options["limit"] = options.get("limit") or None
    options["layer"] = options.get("layer") or None
    options["device"] = str(ctx.device)
    cured = "cured" in ctx.inputs
    cured_label = ctx.label("cured") if cured else None
    summary: dict[str, Any] = {"methods": {}, "figures": [], "models": ["lazy"]
                               + ([cured_label] if cured else [])}
    for method in methods:
        result = explain_run(ctx.run_dir("lazy"), ctx.dataset_dir, ctx.out / method,
                             ExplainConfig(method=method, **options),
                             compare_dir=ctx.run_dir("cured") if cured else None,
                             label="lazy", compare_label=cured_label)
        summary["methods"][method] = {
            **headline(result),
            "sanity": {role: _sanity_headline(entry)
                       for role, entry in result.get("sanity", {}).items()},
        }
        title = get_method(method).title
        for key in ("aha", "shares", "sanity"):
            if key in result["figures"]:
                summary["figures"].append({"path": f"{method}/{result['figures'][key]}",
                                           "caption": CAPTIONS[key].format(title=title)})
    return summary


def _sanity_headline(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The maps' mean rank correlation with the trained model's once every layer is
    randomized (the check's last step): near 1 would mean the maps ignore the weights."""
    stages, spearman = entry.get("randomized_from_top") or [], entry.get("spearman") or []
    if not stages or not spearman:
        return None
    return {"randomized": stages[-1], "rank_correlation": spearman[-1].get("mean")}


def section_explain(study: StudyArtifacts) -> Section:
    stage = study.stage("explain") or {}
    section = Section(
        "task3", "Task 3 — the interrogation",
        asked="Implement Grad-CAM from scratch and compare a biased image (a digit in its "
              "own color) with a conflicting one: does the map sit on the digit's shape or "
              "smear over the colored pixels?",
        did="Grad-CAM (our own implementation, checked against Captum) and LRP-epsilon (our "
            "own, differentiable, checked against zennit) of the lazy and the cured model. "
            "The evidence is quantified on sample images of each test split: the share of "
            "positive attribution that falls outside the digit's mask (the background, "
            "where the color lives) and the pointing game (is the map's peak on the digit?).",
    )
    rows = []
    lazy_share = cured_share = None
    for method, entry in stage.get("methods", {}).items():
        for role in ("model", "compare"):
            model = entry.get(role)
            if not model:
                continue
            for split, values in model.items():
                if not isinstance(values, dict):
                    continue
                rows.append([method, model["label"], split, pct(values.get("accuracy")),
                             pct(values.get("background_share")),
                             pct(values.get("pointing_game"))])
            if method == "gradcam":
                hard = model.get("test_hard", {}).get("background_share")
                if role == "model":
                    lazy_share = hard
                else:
                    cured_share = hard
        for role, sanity in sorted(entry.get("sanity", {}).items(), reverse=True):
            if sanity and measured(sanity.get("rank_correlation")):
                label = entry.get(role, {}).get("label", role)
                value = sanity["rank_correlation"]
                section.notes.append(
                    f"Sanity check ({method}, {label}): with every layer randomized the maps' "
                    f"rank correlation with the trained model's is {num(value, 2)}; "
                    + ("the maps depend on the weights." if value < 0.5 else
                       "the maps barely depend on the weights: read them with suspicion."))
    if rows:
        section.tables.append(Table("Where the evidence sits (sample of each split)",
                                    ["method", "model", "split", "accuracy", "background share",
                                     "pointing game"], rows))
    if measured(lazy_share) and measured(cured_share):
        section.notes.insert(0, (
            f"On the hard set the lazy model puts {pct(lazy_share)} of its positive Grad-CAM "
            f"outside the digit, the cured model {pct(cured_share)}: "
            + ("the lazy model looks at the colored background more than the cured one."
               if lazy_share > cured_share + 0.05 else
               "by this measure the lazy model does not look at the background clearly more "
               "than the cured one here.")))
    return with_figures(section, study, "explain", ran=bool(stage))


def headline(stages: Summaries) -> dict[str, Any] | None:
    methods = dig(stages, "explain", "methods")
    if not methods:
        return None
    return {method: {role: {"label": entry[role]["label"],
                            "hard_background_share": entry[role].get("test_hard", {})
                            .get("background_share")}
                     for role in ("model", "compare") if role in entry}
            for method, entry in methods.items()}


TASK = Task("task3", (Stage("explain", stage_explain, inputs=("data", "lazy", "cured"),
                             description="Task 3: Grad-CAM and LRP, lazy vs cured, "
                                         "background share",
                             options=LikeCommand(("explain",), renamed={"methods": "--method"},
                                                 unset={"seed": -1})),),
            section_explain, headline)
