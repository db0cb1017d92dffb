"""Task 5, the invisible cloak: the ``attack`` stage fools the lazy model and the cured
one, and its report section compares how much noise each needs.

It attacks the same source images (by default the 7s of ``test_hard``, turned into a
confident 3) in both models with :func:`run_attack` and records, per model, how many are
fooled within the budget, how many of those needed a perturbation at all (an image that
already carries the target's color may be called a 3 unperturbed), and the distribution of
minimal epsilons; with the cured model present, the paired comparison of the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
from shortcutlab.study.task import Summaries, Task, dig

CAPTIONS = {
    "examples_at_eps.png": "The first {n} source images (never hand-picked): original, "
                           "perturbation (amplified) and adversarial image at eps={eps:g}, "
                           "with each model's answer and confidence.",
    "examples_min_eps.png": "The same images attacked at each image's own minimal epsilon.",
    "min_eps.png": "Minimal L-inf epsilon per image and model, perturbing the whole image, "
                   "only the background, or only the digit; dashed: the budget eps={eps:g}.",
    "min_eps_by_attack.png": "The whole-image minimal epsilon of each complete estimate (PGD's "
                             "bisection, FMN's direct search) and of the worst-case ensemble, "
                             "per model.",
    "fmn_vs_bisection.png": "Per image, FMN's minimal norm against PGD's bisection: on the "
                            "diagonal they agree (within one grid step); below it FMN found a "
                            "smaller perturbation.",
}


def stage_attack(ctx: StageContext) -> dict[str, Any]:
    from shortcutlab.attack.experiment import AttackSettings, run_attack
    from shortcutlab.attack.figures import EXAMPLES

    options = dict(ctx.config)
    split = options.pop("split")
    options["limit"] = options.get("limit") or None
    options["regions"] = tuple(options["regions"])
    settings = AttackSettings(**options)
    cured = "cured" in ctx.inputs
    labels = ("lazy",) + ((ctx.label("cured"),) if cured else ())
    result = run_attack(ctx.run_dir("lazy"), ctx.dataset_dir, ctx.out, settings,
                        compare=ctx.run_dir("cured") if cured else None, split=split,
                        device=str(ctx.device), labels=labels)
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
        } | {key: entry[key] for key in ("by_attack", "fmn_vs_bisection", "color_shift")
             if key in entry}
    comparison = result.get("comparison")
    count = min(EXAMPLES, next(iter(models.values()))["n"])
    examples = [int(i) for i in eps["index"][:count]] if "index" in eps.files else []
    return {
        "examples": {"split": split, "index": examples},
        "split": split,
        "settings": settings.to_dict(),
        "class_names": result.get("class_names"),
        "attack": result["attack"],
        "models": models,
        "lazy": labels[0],
        "cured": labels[1] if cured else None,
        "comparison": comparison and {region: comparison[region]
                                      for region in settings.regions},
        "figures": [{"path": name, "caption": CAPTIONS[name].format(n=count, eps=settings.eps)}
                    for name in result["figures"] if name in CAPTIONS],
    }


def section_attack(study: StudyArtifacts) -> Section:
    stage = study.stage("attack") or {}
    settings = stage.get("settings", {})
    eps, confidence = settings.get("eps", 0.05), settings.get("confidence", 0.9)
    named = stage.get("class_names") or {}  # the source's names: "sneaker", not 7
    source = named.get("source", settings.get("source", 7))
    target = named.get("target", settings.get("target", 3))
    section = Section(
        "task5", "Task 5 — the invisible cloak",
        asked=f"Perturb an image of a {source} so that the model says {target} with more than "
              f"{confidence:.0%} confidence, changing no pixel by more than epsilon = {eps:g}. "
              "Is the robust model harder to fool than the lazy one, and by how much noise?",
        did=_what_ran(stage, settings, source, target, confidence),
    )
    models = models_of(stage, (stage.get("lazy"), stage.get("cured")))
    for name, entry in models.items():
        rate, perturbed = entry.get("success_rate_at_eps"), entry.get("perturbed_success_rate")
        clean = rate - perturbed if measured(rate) and measured(perturbed) else None
        section.verdicts.append(Verdict(
            f"{name}: a {source} perturbed into a {confidence:.0%}-confident {target} within "
            f"eps {eps:g}",
            f"{pct(rate)} of {entry.get('n')} {source}s fooled ({pct(perturbed)} by a "
            f"perturbation, {pct(clean)} already said {target} unperturbed)",
            perturbed > 0 if measured(perturbed) else None))
    lazy, cured = stage.get("lazy"), stage.get("cured")
    comparison = (stage.get("comparison") or {}).get("all")
    if lazy in models and cured in models:
        lazy_median = models[lazy]["min_eps"].get("median")
        cured_median = models[cured]["min_eps"].get("median")
        ratio = comparison.get("median_ratio") if comparison else None
        p_value = comparison.get("p_value") if comparison else None
        section.verdicts.append(Verdict(
            "the cured model needs a larger median epsilon than the lazy one",
            f"median {num(cured_median)} vs {num(lazy_median)} (ratio {num(ratio, 2)}x, "
            f"paired Wilcoxon p = {p_value:.2g})" if measured(p_value) else
            f"median {num(cured_median)} vs {num(lazy_median)} (ratio {num(ratio, 2)}x)",
            bool(ratio > 1) if measured(ratio) else None))
    else:
        section.verdicts.append(Verdict("the cured model needs a larger median epsilon than "
                                        "the lazy one", "n/a", None))
    rows = []
    for name, entry in models.items():
        spread = entry.get("min_eps", {})
        masked = entry.get("masked", {})
        rows.append([name, entry.get("n"), pct(entry.get("clean_accuracy")),
                     pct(entry.get("success_rate_at_eps")), num(spread.get("median")),
                     num(spread.get("q1")), num(spread.get("q3")),
                     *(num(masked.get(region, {}).get("median"))
                       for region in ("background", "digit"))])
    if rows:
        section.tables.append(Table(
            f"Minimal epsilon to turn a {source} into a confident {target} (n/a: not fooled "
            "even at the search's maximum)",
            ["model", "images", "clean accuracy", f"fooled at eps {eps:g}", "median", "q1",
             "q3", "background only, median", "digit only, median"], rows))
    members = [entry for entry in models.values() if entry.get("by_attack")]
    if members:
        names = [name for name in (stage.get("attack") or {}).get("members") or []
                 if name in members[0]["by_attack"]] or list(members[0]["by_attack"])
        member_rows = []
        for name, entry in models.items():
            by_attack, agreement = entry.get("by_attack") or {}, entry.get(
                "fmn_vs_bisection") or {}
            member_rows.append([
                name, num(by_attack.get("pgd", {}).get("median")),
                num(by_attack.get("fmn", {}).get("median")),
                num(entry.get("min_eps", {}).get("median")),
                *(by_attack.get(member, {}).get("smallest") for member in names),
                agreement.get("fmn_smaller"), agreement.get("agree"),
                agreement.get("fmn_larger")])
        section.tables.append(Table(
            "The worst case, attack by attack (whole image): the medians of the two complete "
            "estimates and of the ensemble, how many images each member found the smallest "
            "epsilon for (ties go to the earlier member), and per image FMN against PGD's "
            "bisection (within one grid step: agree)",
            ["model", "PGD bisection, median", "FMN, median", "ensemble, median",
             *(f"smallest by {member}" for member in names), "FMN smaller", "agree",
             "FMN larger"], member_rows))
        larger = [f"{name} {entry['fmn_vs_bisection']['fmn_larger']} of "
                  f"{entry['fmn_vs_bisection']['n_both']}"
                  for name, entry in models.items() if entry.get("fmn_vs_bisection")]
        section.notes.append(
            "Two estimates of each minimal epsilon disagree where one attack finds a smaller "
            "perturbation than the other: a bisection is only an upper bound, and so is a "
            "minimum-norm search that stops early. FMN above the bisection by more than the "
            f"grid step: {', '.join(larger)} images. The ensemble keeps each image's smallest.")
    shifts = {name: entry["color_shift"] for name, entry in models.items()
              if entry.get("color_shift")}
    if shifts:
        section.tables.append(Table(
            f"How cheap the shortcut is: the smallest uniform recoloring of the background "
            f"(one RGB shift, no pixel pattern) that makes the model say {target} with "
            f"p >= {confidence:g}", ["model", f"fooled at a shift of {eps:g}",
                                     "median shift", "q1", "q3", "never fooled"],
            [[name, pct(shift.get("success_rate_at_eps")),
              num(shift.get("min_eps", {}).get("median")), num(shift.get("min_eps", {}).get("q1")),
              num(shift.get("min_eps", {}).get("q3")),
              (shift.get("n") or 0) - shift.get("min_eps", {}).get("n_found", 0)]
             for name, shift in shifts.items()]))
        if lazy in shifts:
            median = shifts[lazy].get("min_eps", {}).get("median")
            section.verdicts.append(Verdict(
                f"{lazy}: recoloring the background alone turns a {source} into a "
                f"{confidence:.0%}-confident {target}",
                f"median channel shift {num(median)} "
                f"({shifts[lazy].get('min_eps', {}).get('n_found')} of {shifts[lazy].get('n')} "
                "images)", shifts[lazy].get("min_eps", {}).get("n_found", 0) > 0))
    if comparison and measured(comparison.get("compare_needs_more")):
        section.notes.append(
            f"Paired over the {comparison.get('n_pairs')} images both models could be fooled "
            f"on: the cured model needs more noise on {pct(comparison['compare_needs_more'])} "
            f"of them, the lazy one on {pct(comparison.get('run_needs_more'))}. The "
            "background-only and digit-only columns show where each model's decision can be "
            f"moved: a color reader by repainting the background toward {target}'s color, a "
            "shape reader by strokes on the digit.")
    examples = stage.get("examples") or {}
    if examples.get("index"):
        from shortcutlab.study.explore import explorer_link

        section.notes.append(
            f"The examples' {source}s in the interactive explorer, with {target} as the attack's "
            f"target (start it first with `shortcutlab explore {study.root}`):")
        goal = settings.get("target")
        section.links += [(f"{source} #{index}", explorer_link(
            examples["split"], index, **({"attack": goal} if isinstance(goal, int) else {})))
            for index in examples["index"]]
    return with_figures(section, study, "attack", ran=bool(stage))


def _what_ran(stage: dict[str, Any], settings: dict[str, Any], source: int | str,
              target: int | str, confidence: float) -> str:
    images = (f"the first {settings.get('limit') or 'all'} {source}s of "
              f"{stage.get('split', 'test_hard')} (in split order, never hand-picked), the "
              "same images for both models")
    goal = f"p({target}) >= {confidence:g}"
    grid = f"to {settings.get('precision', 0.001):g}"
    steps = settings.get("steps", "?")
    attack = settings.get("attack", "pgd")
    masked = settings.get("masked_attack") or attack
    if attack != "ensemble":
        return (f"Targeted L-inf {attack.upper()} ({steps} steps, random start) on {images}. "
                f"For every image a batched bisection finds the smallest epsilon that reaches "
                f"{goal} ({grid}), perturbing the whole image, only the background or only "
                "the digit.")
    return (f"On {images}: the worst case of four targeted L-inf attacks. Per image, the "
            f"smallest epsilon at which any of them reaches {goal}: PGD ({steps} steps, "
            f"random start) bisected {grid}, FMN (the fast minimum-norm attack) searching the "
            "norm directly, then APGD with the cross-entropy and with the DLR loss, each asked "
            "only whether it beats the best so far. Perturbing only the background or only "
            f"the digit: the {masked.upper()} bisection alone.")


def headline(stages: Summaries) -> dict[str, Any]:
    models = {name: {key: entry.get(key) for key in ("n", "success_rate_at_eps",
                                                      "perturbed_success_rate")}
              | {"median_min_eps": entry.get("min_eps", {}).get("median")}
              for name, entry in (dig(stages, "attack", "models") or {}).items()}
    return {"models": models,
            "median_ratio": dig(stages, "attack", "comparison", "all", "median_ratio"),
            "p_value": dig(stages, "attack", "comparison", "all", "p_value")}


TASK = Task("task5", (Stage("attack", stage_attack, inputs=("data", "lazy", "cured"), cost=3,
                             description="Task 5: targeted 7->3 attacks, minimal epsilon, "
                                         "lazy vs cured",
                             options=LikeCommand(("attack",),
                                                 unset={"seed": -1, "limit": 0})),),
            section_attack, headline)
