"""The study's ``probe`` stage: Task 2 on every trained model the study has.

The stage reads the study's model stages (``ANALYZED_MODELS``, those present) and probes
each model into ``probe/<model>/``; its config is the ``[probe]`` table of ``study.toml``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shortcutlab.pipeline import Stage, StageContext, StageResult

# The study's model stages, in the order they are analysed, when the study has them.
ANALYZED_MODELS = ("lazy", "cured")


def model_inputs(stages: Sequence[Stage]) -> tuple[str, ...]:
    names = {stage.name for stage in stages}
    return tuple(name for name in ANALYZED_MODELS if name in names)


def run_dir_of(result: StageResult) -> Path:
    """The run directory a model stage wrote (its summary's ``run``, else its own dir)."""
    for key in ("run", "run_dir"):
        if isinstance(result.summary.get(key), str):
            return result.out / result.summary[key]
    return result.out


def stage_probe(ctx: StageContext) -> dict[str, Any]:
    from shortcutlab.probe.run import ProbeConfig, run_probe
    from shortcutlab.probe.visualize import VisConfig
    from shortcutlab.runtime import resolve_device

    options = dict(ctx.config)
    vis = VisConfig(steps=options.pop("steps"), tv=options.pop("tv"))
    config = ProbeConfig(vis=vis, **options)
    device = resolve_device(ctx.settings.get("device", "auto"))
    summary: dict[str, Any] = {"models": {}, "figures": []}
    for name, result in ctx.inputs.items():
        probe = run_probe(run_dir_of(result), ctx.out / name, config=config, device=device)
        checks = probe["class_logits"]
        summary["models"][name] = {
            "dominant_color_match": checks["dominant_color_match"],
            "gray_judge_match": checks.get("gray_judge_match"),
            "layers": {layer: {key: table[key] for key in
                               ("units", "color_units", "digit_units", "shape_units",
                                "mixed_units", "dead", "mean_color_index")}
                       for layer, table in probe["layers"].items()},
        }
        summary["figures"] += [
            {"path": f"{name}/class_logits.png",
             "caption": f"{name}: what each class logit wants to see; the caption gives the "
                        "dominant color and the digit a grayscale MNIST classifier reads."},
            {"path": f"{name}/selectivity.png",
             "caption": f"{name}: every unit's digit vs color selectivity, per layer."},
        ]
    return summary


def probe_stage(stages: Sequence[Stage]) -> Stage | None:
    inputs = model_inputs(stages)
    if not inputs:
        return None
    return Stage("probe", stage_probe, inputs=inputs,
                 description="Task 2: visualize units, rank them by color selectivity")
