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
from shortcutlab.study.report.document import Section, Table, Verdict
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
    "faithfulness": "{title}, deletion curves: the probability of the explained class as "
                    "pixels are removed in the map's order, at random, the background first "
                    "or the digit first; a color reader loses its answer with the background, "
                    "a shape reader with the digit.",
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
            "faithfulness": {role: {key: entry.get(key) for key in (
                "split", "n", "fill", "clean", "auc", "only_background_removed",
                "only_digit_removed")} | {"label": result["models"][role]["label"]}
                for role, entry in result.get("faithfulness", {}).items()},
        }
        summary.setdefault("panel", result["figures"].get("aha_panel"))
        title = get_method(method).title
        for key in ("aha", "shares", "sanity", "faithfulness"):
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
            "where the color lives) and the pointing game (is the map's peak on the digit?); "
            "whether the evidence is faithful, by deletion curves on the hard set: pixels "
            "removed in the map's order, at random, the background first or the digit first.",
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
    _faithfulness(section, stage)
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
    _explorer_links(section, stage.get("panel"), study)
    return with_figures(section, study, "explain", ran=bool(stage))


def _explorer_links(section: Section, panel: dict[str, Any] | None,
                    study: StudyArtifacts) -> None:
    """Links from the comparison panel to the same digits in the interactive explorer."""
    if not panel or not panel.get("index"):
        return
    from shortcutlab.data.dataset import class_names, load_meta
    from shortcutlab.study.explore import explorer_link

    data = study.stage("data") or {}
    dataset = study.root / "data" / str(data.get("dataset", "dataset"))
    names = class_names(load_meta(dataset)) if (dataset / "meta.json").is_file() else []
    section.notes.append(
        "The panel's digits in the interactive explorer (start it first with "
        f"`shortcutlab explore {study.root}`): each in its own color, and in the color the "
        "panel gives it.")
    for digit, index, color in zip(panel["digits"], panel["index"], panel["conflict_colors"],
                                   strict=False):
        name = names[digit] if digit < len(names) else str(digit)
        section.links.append((name, explorer_link(panel["split"], index)))
        section.links.append((f"{name} recolored", explorer_link(panel["split"], index,
                                                                 color=color)))


def _faithfulness(section: Section, stage: dict[str, Any]) -> None:
    """Deletion AUCs per method and model, and whether removing a region hurts the model
    that reads it: the background for the lazy model, the digit for the cured one."""
    rows = []
    for method, entry in stage.get("methods", {}).items():
        for role, curves in (entry.get("faithfulness") or {}).items():
            auc = curves.get("auc") or {}
            rows.append([method, curves.get("label", role), curves.get("n"),
                         num(curves.get("clean"), 2), num(auc.get("map"), 3),
                         num(auc.get("random"), 3), num(auc.get("background-first"), 3),
                         num(auc.get("digit-first"), 3),
                         num(curves.get("only_background_removed"), 2),
                         num(curves.get("only_digit_removed"), 2)])
            background, digit = auc.get("background-first"), auc.get("digit-first")
            if not (measured(background) and measured(digit)):
                continue
            reads = "background" if role == "model" else "digit"
            expected = background < digit if reads == "background" else digit < background
            section.verdicts.append(Verdict(
                f"{method}: removing the {reads} first hurts the {curves.get('label', role)} "
                f"model more than removing the {'digit' if reads == 'background' else 'background'}"
                " first",
                f"deletion AUC {num(background, 3)} background first, {num(digit, 3)} digit "
                f"first; the map's own order {num(auc.get('map'), 3)} vs random "
                f"{num(auc.get('random'), 3)}", bool(expected)))
    if rows:
        first = next(curves for entry in stage["methods"].values()
                     for curves in (entry.get("faithfulness") or {}).values())
        section.tables.append(Table(
            f"Deletion curves on {first.get('n')} {first.get('split')} images (removed pixels "
            f"become: {first.get('fill')}): the area under the probability of the explained "
            "class as pixels are removed (lower: the removed pixels mattered), and the "
            "probability left when only the background or only the digit is removed",
            ["method", "model", "images", "clean p", "map order", "random", "background first",
             "digit first", "background removed", "digit removed"], rows))


def headline(stages: Summaries) -> dict[str, Any] | None:
    methods = dig(stages, "explain", "methods")
    if not methods:
        return None
    return {method: {role: {"label": entry[role]["label"],
                            "hard_background_share": entry[role].get("test_hard", {})
                            .get("background_share")}
                     for role in ("model", "compare") if role in entry}
            for method, entry in methods.items()}


TASK = Task("task3", (Stage("explain", stage_explain, inputs=("data", "lazy", "cured"), cost=0.5,
                             description="Task 3: Grad-CAM and LRP, lazy vs cured, "
                                         "background share",
                             options=LikeCommand(("explain",), renamed={"methods": "--method"},
                                                 unset={"seed": -1})),),
            section_explain, headline)
