"""The study's ``sae`` stage: Task 6 on every trained model the study has.

For each model stage present (see :mod:`shortcutlab.probe.stage`) it trains an SAE,
labels its features and runs the interventions into ``sae/<model>/``; its config is the
``[sae]`` table of ``study.toml``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shortcutlab.pipeline import Stage, StageContext
from shortcutlab.probe.stage import model_inputs, run_dir_of


def stage_sae(ctx: StageContext) -> dict[str, Any]:
    from shortcutlab.decompose.run import intervene, label_features, train_on_run
    from shortcutlab.decompose.sae import SAEConfig
    from shortcutlab.runtime import resolve_device

    options = dict(ctx.config)
    layer = options.pop("layer") or None
    mode = options.pop("mode")
    images = options.pop("images")
    strengths = options.pop("strengths")
    per_digit = options.pop("per_digit")
    config = SAEConfig(**options)
    device = resolve_device(ctx.settings.get("device", "auto"))
    summary: dict[str, Any] = {"models": {}, "figures": []}
    for name, result in ctx.inputs.items():
        out = ctx.out / name
        meta = train_on_run(run_dir_of(result), out, layer=layer, mode=mode, config=config,
                            images=images, device=device)
        labels = label_features(out, per_digit=per_digit, device=device)
        effects = intervene(out, strengths=strengths, device=device)
        ablation = effects["ablate_color_features"]["splits"]["test_hard"]
        summary["models"][name] = {
            "layer": meta["layer"], "mode": meta["mode"], "r2": meta["r2"], "l0": meta["l0"],
            "dead_fraction": meta["dead_fraction"], "accuracy": meta["accuracy"],
            "features": labels["summary"],
            "hard_accuracy_color_ablated": ablation["accuracy_after"],
            "hard_accuracy": ablation["accuracy_before"],
            "boost_strengths": strengths,
            "boost_flip_rate": effects["boost_color_features"].get("mean_flip_rate"),
        }
        summary["figures"] += [
            {"path": f"{name}/feature_cards.png",
             "caption": f"{name}: SAE features of {meta['layer']}, with exemplars and their "
                        "mean activation by color and by digit."},
            {"path": f"{name}/interventions.png",
             "caption": f"{name}: accuracy with every color feature ablated, and how often "
                        "boosting one color's features flips other digits to its class."},
        ]
    return summary


def sae_stage(stages: Sequence[Stage]) -> Stage | None:
    inputs = model_inputs(stages)
    if not inputs:
        return None
    return Stage("sae", stage_sae, inputs=inputs,
                 description="Task 6: sparse autoencoder features, labelled and dialled")
