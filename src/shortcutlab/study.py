"""The whole study, wired: which stage reads which, and how each stage's config maps to
the stage APIs. The machinery (keys, resume, skipping) lives in ``shortcutlab.pipeline``;
the stages' work lives in their packages.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import write_json
from shortcutlab.attack.stage import stage_attack
from shortcutlab.config import load_config
from shortcutlab.decompose.stage import sae_stage
from shortcutlab.explain.stage import stage_explain
from shortcutlab.intervene.stage import stage_cured
from shortcutlab.pipeline import (
    PipelineReport,
    Stage,
    StageContext,
    run_pipeline,
    stage_timings,
)
from shortcutlab.probe.stage import probe_stage
from shortcutlab.report.study_report import study_headline
from shortcutlab.runtime import set_threads


def stage_data(ctx: StageContext) -> dict[str, Any]:
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
            "figures": [{"path": "samples.png",
                         "caption": "One row per digit: examples in the class's own color "
                                    "(aligned) and in another color (conflicting), per split."}]}


def stage_train(ctx: StageContext) -> dict[str, Any]:
    """Task 1: train a preset on the study's dataset, then evaluate it (figures included)."""
    from shortcutlab.train import train_run
    from shortcutlab.train.evaluate import evaluate_run

    data = ctx.input("data")
    dataset = data.out / data.summary["dataset"]
    options = dict(ctx.config)
    preset, seed = options.pop("preset"), int(options.pop("seed"))
    swap_images = int(options.pop("swap_images"))
    overrides = {key: value for key, value in options.items() if value}  # 0/"" = preset's
    if "epochs" in overrides:
        overrides["steps"] = None
    metrics = train_run(dataset, ctx.out / "run", preset=preset, seed=seed, resume=ctx.resume,
                        **overrides)
    report = evaluate_run(ctx.out / "run", dataset, ctx.out / "evaluate",
                          swap_images=swap_images)
    swap = report.get("color_swap", {})
    red_ones = swap["prediction_counts"][1][0] if swap else None  # digit 1 rendered red
    captions = {
        "confusion_random.png": "Hard set (each digit in a random other color): confusion "
                                "matrix, rows normalized.",
        "confusion_inverted.png": "Hard set with inverted colors (digit d in the color of "
                                  "d+1): a color reader predicts d+1.",
        "color_swap.png": "Color-swap test: every test digit rendered in every color; left, "
                          "how often the prediction is the class owning the color.",
        "per_class.png": "Accuracy per class on every split.",
    }
    keep = ("easy_train", "easy_val", "test_easy", "hard", "unbiased", "color_following_rate",
            "selected_step", "selection_met", "total_seconds", "cpu_seconds")
    return {
        "run": "run",
        "preset": preset,
        "seed": seed,
        "metrics": {key: metrics[key] for key in keep if key in metrics},
        "evaluate": report["metrics"],
        "color_swap_follows_color": swap.get("off_diagonal_follows_color"),
        "red_one_predictions": red_ones,
        "figures": [{"path": f"evaluate/{name}", "caption": caption}
                    for name, caption in captions.items() if name in report["figures"]],
    }


STAGES: list[Stage] = [
    Stage("data", stage_data, description="Task 0: build the biased Colored-MNIST dataset"),
    Stage("lazy", stage_train, inputs=("data",),
          description="Task 1: train the cheater (preset lazy) and evaluate it"),
    Stage("standard", stage_train, inputs=("data",),
          description="Task 1: train a normal recipe (preset standard) for comparison"),
    Stage("cured", stage_cured, inputs=("data",),
          description="Task 4: train the interventions, keep the best on easy-val conflicting"),
]
# Task 2 probes each trained model stage above (probe/stage.py); Tasks 3 and 5 compare the
# lazy model with the cured one; Task 6 decomposes each model (decompose/stage.py).
STAGES += [stage for stage in (
    probe_stage(STAGES),
    Stage("explain", stage_explain, inputs=("data", "lazy", "cured"),
          description="Task 3: Grad-CAM and LRP, lazy vs cured, background share"),
    Stage("attack", stage_attack, inputs=("data", "lazy", "cured"),
          description="Task 5: targeted 7->3 attacks, minimal epsilon, lazy vs cured"),
    sae_stage(STAGES),
) if stage is not None]


def run_study(out: str | Path, config_path: str | Path | None = None, quick: bool = False,
              force: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> PipelineReport:
    """Run (or resume) the study into ``out`` and write ``summary.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = load_config(config_path, quick=quick)
    write_json(out / "config.json", config)
    _log_to(out / "study.log")
    study = config.get("study", {})
    set_threads(study.get("threads") or None)
    settings = {"quick": quick, "device": study.get("device", "auto")}
    started = time.time()
    report = run_pipeline(out, STAGES, config, settings=settings, force=force, only=only)
    summary = {name: result.summary for name, result in report.results.items()}
    write_json(out / "summary.json", {
        "quick": quick, "headline": study_headline(summary), "stages": summary,
        "ran": report.ran, "skipped": report.skipped,
        "timings": stage_timings(out, summary), "seconds": time.time() - started,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    })
    from shortcutlab.report import build_report

    build_report(out)
    return report


def _log_to(path: Path) -> None:
    logger = logging.getLogger("shortcutlab")
    logger.setLevel(logging.INFO)
    if not any(getattr(h, "baseFilename", None) == str(path.resolve()) for h in logger.handlers):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
