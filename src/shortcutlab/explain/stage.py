"""The study's ``explain`` stage: Task 3, the lazy model against the cured one.

For every attribution method of the ``[explain]`` table it runs :func:`explain_run` on
the lazy model with the cured model as comparison into ``explain/<method>/``: the "Aha"
panel, background share and pointing game per split, examples and the sanity check.
"""

from __future__ import annotations

from typing import Any

from shortcutlab.pipeline import StageContext
from shortcutlab.probe.stage import run_dir_of

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

    data = ctx.input("data")
    dataset = data.out / data.summary["dataset"]
    options = dict(ctx.config)
    methods = options.pop("methods")
    options["splits"] = tuple(options["splits"])
    options["limit"] = options.get("limit") or None
    options["layer"] = options.get("layer") or None
    options["device"] = ctx.settings.get("device", "auto")
    lazy = ctx.input("lazy")
    cured = ctx.inputs.get("cured")
    cured_label = f"cured ({cured.summary.get('method')})" if cured else None
    summary: dict[str, Any] = {"methods": {}, "figures": [], "models": ["lazy"]
                               + ([cured_label] if cured else [])}
    for method in methods:
        result = explain_run(run_dir_of(lazy), dataset, ctx.out / method,
                             ExplainConfig(method=method, **options),
                             compare_dir=run_dir_of(cured) if cured else None,
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
