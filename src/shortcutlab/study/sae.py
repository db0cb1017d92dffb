"""Task 6, the decomposition: the ``sae`` stage trains a sparse autoencoder on every model
the study trains (lazy and cured), labels its features and dials them, into
``sae/<model>/`` from the ``[sae]`` table; the report section checks the SAE's quality and
shows what the color features do."""

from __future__ import annotations

from typing import Any

from shortcutlab.study.options import LikeCommand
from shortcutlab.study.pipeline import Stage, StageContext
from shortcutlab.study.report.document import Section, Table, Verdict
from shortcutlab.study.report.frame import (
    StudyArtifacts,
    check,
    measured,
    models_of,
    num,
    pct,
    with_figures,
)
from shortcutlab.study.task import ANALYZED_MODELS, Summaries, Task, dig

# the report links a browser of the most color-selective features of each model; small,
# so that it costs seconds (`shortcutlab sae browse` draws more)
BROWSER_FEATURES = 24
BROWSER_STEPS = 32


def stage_sae(ctx: StageContext) -> dict[str, Any]:
    from shortcutlab.decompose.browser import BROWSER, feature_browser
    from shortcutlab.decompose.run import intervene, label_features, train_on_run
    from shortcutlab.decompose.sae import SAEConfig

    options = dict(ctx.config)
    layer = options.pop("layer") or None
    mode = options.pop("mode")
    images = options.pop("images")
    strengths = options.pop("strengths")
    per_digit = options.pop("per_digit")
    split_images = options.pop("split_images")
    boost_images = options.pop("boost_images")
    config = SAEConfig(**options)
    device = ctx.device
    summary: dict[str, Any] = {"models": {}, "figures": [], "split_images": split_images,
                               "boost_images": boost_images}
    for name in ctx.model_stages():
        out = ctx.out / name
        meta = train_on_run(ctx.run_dir(name), out, layer=layer, mode=mode, config=config,
                            images=images, split_images=split_images, device=device)
        labels = label_features(out, per_digit=per_digit, seed=config.seed, device=device)
        feature_browser(out, features=BROWSER_FEATURES, steps=BROWSER_STEPS, seed=config.seed,
                        device=device)
        effects = intervene(out, strengths=strengths, boost_images=boost_images,
                            split_images=split_images, seed=config.seed, device=device)
        ablation = effects["ablate_color_features"]["splits"]["test_hard"]
        summary["models"][name] = {
            "layer": meta["layer"], "mode": meta["mode"], "r2": meta["r2"], "l0": meta["l0"],
            "dead_fraction": meta["dead_fraction"], "accuracy": meta["accuracy"],
            "dense_fraction": meta["dense_fraction"], "fidelity": meta["fidelity"],
            "features": labels["summary"],
            "hard_accuracy_color_ablated": ablation["accuracy_after"],
            "hard_accuracy": ablation["accuracy_before"],
            "boost_strengths": strengths,
            "boost_flip_rate": effects["boost_color_features"].get("mean_flip_rate"),
            "browser": f"{name}/{BROWSER}",
        }
        summary["figures"] += [
            {"path": f"{name}/sae_density.png",
             "caption": f"{name}: how often each SAE feature is on (log scale): dead "
                        "features never, dense ones on more than a tenth of the inputs."},
            {"path": f"{name}/feature_cards.png",
             "caption": f"{name}: SAE features of {meta['layer']}, with exemplars and their "
                        "mean activation by color and by digit."},
            {"path": f"{name}/interventions.png",
             "caption": f"{name}: accuracy with every color feature ablated, and how often "
                        "boosting one color's features flips other digits to its class."},
        ]
    return summary


def section_sae(study: StudyArtifacts) -> Section:
    stage = study.stage("sae") or {}
    section = Section(
        "task6", "Task 6 — the decomposition",
        asked="Train a sparse autoencoder on intermediate activations, label what its "
              "features mean (color? stroke?), then dial features up or down and watch the "
              "predictions change: are color features present in the lazy model?",
        did="An overcomplete SAE on the last convolutional layer of the lazy and the cured "
            "model; every feature is labelled by its activation on validation digits rendered "
            "in all ten colors (color, digit, shape, mixed or dead). Then every color feature "
            "is ablated, and one color's features are boosted, with the model running on the "
            "reconstruction.",
    )
    rows = []
    for name, entry in models_of(stage).items():
        val = entry.get("accuracy", {}).get("val", {})
        drop = val["original"] - val["reconstructed"] if measured(val.get("original")) and \
            measured(val.get("reconstructed")) else None
        section.verdicts += [
            check(f"{name}: reconstruction explains at least 90% of the variance (r2)",
                  entry.get("r2"), lambda v: v >= 0.9, lambda v: num(v)),
            check(f"{name}: fewer than 10% dead features", entry.get("dead_fraction"),
                  lambda v: v < 0.1),
            check(f"{name}: the spliced-in SAE keeps at least 95% of the model's loss "
                  "(fidelity: cross-entropy recovered against zero-ablating the layer)",
                  (entry.get("fidelity") or {}).get("score"), lambda v: v >= 0.95,
                  lambda v: num(v)),
            Verdict(f"{name}: accuracy on the reconstruction within 2 points (easy val)",
                    f"{pct(val.get('reconstructed'))} vs {pct(val.get('original'))}",
                    drop <= 0.02 if measured(drop) else None),
        ]
        features = entry.get("features", {})
        flips = entry.get("boost_flip_rate")
        rows.append([name, entry.get("layer"), num(entry.get("r2")), num(entry.get("l0"), 1),
                     num((entry.get("fidelity") or {}).get("score")),
                     pct(entry.get("dead_fraction")), pct(entry.get("dense_fraction")),
                     *(features.get(kind, 0) for kind in ("color", "digit", "shape", "mixed")),
                     pct(entry.get("hard_accuracy")), pct(entry.get("hard_accuracy_color_ablated")),
                     " / ".join(pct(v) for v in flips) if isinstance(flips, list) and flips
                     else "n/a"])
    if rows:
        section.tables.append(Table(
            "SAE quality, feature labels, and what dialling the color features does",
            ["model", "layer", "r2", "L0", "fidelity", "dead", "dense", "color", "digit",
             "shape", "mixed",
             "hard acc.", "hard acc., color ablated",
             "boost flip rate at strength " + " / ".join(
                 f"{v:g}" for v in next(iter(models_of(stage).values())).get(
                     "boost_strengths", []))], rows))
        section.notes.append(
            "Boost flip rate: how often boosting one color's features (by the strength times "
            "the feature's mean activation on that color) turns other digits into the class "
            "owning the color. Hard-set accuracy with every color feature ablated shows how "
            "much of the decision rests on them.")
        if stage.get("split_images"):
            section.notes.append(
                f"Accuracies on the reconstruction and with the color features ablated read "
                f"the first {stage['split_images']} images of each split; boosts recolor "
                f"{stage.get('boost_images')} images per color ([sae] split_images, "
                "boost_images).")
    section.links += [(f"{name}: browse the SAE features", f"sae/{entry['browser']}")
                      for name, entry in models_of(stage).items() if entry.get("browser")]
    return with_figures(section, study, "sae", ran=bool(stage))


def headline(stages: Summaries) -> dict[str, Any]:
    return {name: {"r2": entry.get("r2"), "dead_fraction": entry.get("dead_fraction"),
                   "fidelity": (entry.get("fidelity") or {}).get("score"),
                   "val_accuracy": entry.get("accuracy", {}).get("val")}
            for name, entry in (dig(stages, "sae", "models") or {}).items()}


TASK = Task("task6", (Stage("sae", stage_sae, inputs=ANALYZED_MODELS, cost=5,
                             description="Task 6: sparse autoencoder features, labelled and "
                                         "dialled",
                             options=LikeCommand(("sae", "train"), unset={"seed": -1})),),
            section_sae, headline)
