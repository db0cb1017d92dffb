"""The study's ``attack`` stage: Task 5, the lazy model against the cured one.

It attacks the same source images (by default the 7s of ``test_hard``, turned into a
confident 3) in both models with :func:`run_attack` and records, per model, how many are
fooled within the budget, how many of those needed a perturbation at all (an image that
already carries the target's color may be called a 3 unperturbed), and the distribution of
minimal epsilons; with the cured model present, the paired comparison of the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shortcutlab.pipeline import StageContext
from shortcutlab.probe.stage import run_dir_of

CAPTIONS = {
    "examples_at_eps.png": "The first {n} source images (never hand-picked): original, "
                           "perturbation (amplified) and adversarial image at eps={eps:g}, "
                           "with each model's answer and confidence.",
    "examples_min_eps.png": "The same images attacked at each image's own minimal epsilon.",
    "min_eps.png": "Minimal L-inf epsilon per image and model, perturbing the whole image, "
                   "only the background, or only the digit; dashed: the budget eps={eps:g}.",
}


def stage_attack(ctx: StageContext) -> dict[str, Any]:
    from shortcutlab.attack.experiment import AttackSettings, run_attack
    from shortcutlab.attack.figures import EXAMPLES

    data = ctx.input("data")
    dataset = data.out / data.summary["dataset"]
    options = dict(ctx.config)
    split = options.pop("split")
    options["limit"] = options.get("limit") or None
    options["regions"] = tuple(options["regions"])
    settings = AttackSettings(**options)
    cured = ctx.inputs.get("cured")
    labels = ("lazy",) + ((f"cured ({cured.summary.get('method')})",) if cured else ())
    result = run_attack(run_dir_of(ctx.input("lazy")), dataset, ctx.out, settings,
                        compare=run_dir_of(cured) if cured else None, split=split,
                        device=ctx.settings.get("device", "auto"), labels=labels)
    eps = np.load(ctx.out / "min_eps.npz")
    models = {}
    for role, entry in zip(("run", "compare"), result["models"], strict=False):
        region = entry["region"]
        needed = eps[f"{role}_{region}"]
        models[entry["name"]] = {
            key: entry[key] for key in ("n", "clean_accuracy", "clean_target_rate", "region",
                                        "success_rate_at_eps", "min_eps")
        } | {
            # fooled within the budget by a real perturbation (minimal epsilon above 0)
            "perturbed_success_rate": float(np.mean((needed > 0) & (needed <= settings.eps
                                                                     + 1e-9))),
            "masked": {name: {"success_rate_at_eps": masked["success_rate_at_eps"],
                              "median": masked["min_eps"]["median"]}
                       for name, masked in entry.get("masked", {}).items()},
        }
    comparison = result.get("comparison")
    count = min(EXAMPLES, next(iter(models.values()))["n"])
    return {
        "split": split,
        "settings": settings.to_dict(),
        "models": models,
        "lazy": labels[0],
        "cured": labels[1] if cured else None,
        "comparison": comparison and {region: comparison[region]
                                      for region in settings.regions},
        "figures": [{"path": name, "caption": CAPTIONS[name].format(n=count, eps=settings.eps)}
                    for name in result["figures"] if name in CAPTIONS],
    }
