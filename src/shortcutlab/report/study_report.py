"""The study report: one section per task, built only from what the stages wrote.

Each section states what the task asked, what the study did, the figures and tables, and
one verdict line per numeric target. A stage that did not run yields "not measured"
verdicts rather than a missing section, so a miss is never hidden.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import read_json, write_bytes
from shortcutlab.data.dataset import SPLITS
from shortcutlab.errors import ShortcutlabError
from shortcutlab.report.document import Figure, Section, Table, Verdict, render_html

REPORT_FILE = "report.html"


class StudyArtifacts:
    """Read access to a study directory: stage summaries and files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        summary_path = root / "summary.json"
        if not summary_path.is_file():
            raise ShortcutlabError(f"{root} has no summary.json; run `shortcutlab study --out "
                                   f"{root}` first")
        self.summary = read_json(summary_path)
        self.stages: dict[str, dict[str, Any]] = self.summary.get("stages", {})

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.stages.get(name)

    def figures(self, name: str) -> list[Figure]:
        stage = self.stage(name) or {}
        return [Figure(self.root / name / item["path"], item["caption"])
                for item in stage.get("figures", [])]


def measured(value: Any) -> bool:
    """A number that was measured (not missing, not NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value)


def pct(value: float | None) -> str:
    return f"{100 * value:.1f}%" if measured(value) else "n/a"


def num(value: float | None, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if measured(value) else "n/a"


def mean_std(values: dict[str, float] | None, key: str = "") -> str:
    if not values:
        return "n/a"
    return f"{100 * values['mean']:.1f} ± {100 * values['std']:.1f}%"


def check(target: str, value: float | None, passes: Callable[[float], bool],
          fmt: Callable[[float | None], str] = pct) -> Verdict:
    return Verdict(target, fmt(value), bool(passes(value)) if measured(value) else None)



def _with_figures(section: Section, study: StudyArtifacts, stage_name: str,
                  ran: bool) -> Section:
    """Attach a stage's figures to its section, saying so when the stage has not run."""
    if not ran:
        section.notes.append(f"The {stage_name} stage has not run: no results.")
    section.figures = study.figures(stage_name)
    return section

def section_data(study: StudyArtifacts) -> Section:
    stage = study.stage("data") or {}
    section = Section(
        "task0", "Task 0 — a dataset that lies",
        asked="Colored MNIST where each digit class has one dominant color in 95% of the easy "
              "training set, a hard test set where no digit carries its own color, and no flat "
              "solid background.",
        did="Built every split from the real digits with exact per-class counts; the color "
            "lives in a textured background (or the stroke), never a flat fill.",
    )
    config = stage.get("config", {})
    aligned = stage.get("aligned_share", {})
    section.verdicts = [
        check("95% of each class carries its color in the easy training set",
              aligned.get("train"), lambda v: abs(v - config.get("bias", 0.95)) < 0.005),
        check("no hard-set digit carries its own color", aligned.get("test_hard"),
              lambda v: v == 0.0),
        Verdict("no flat solid background", f"style {config.get('style', 'n/a')}",
                None if not config else config.get("style") != "solid"),
    ]
    if stage.get("sizes"):
        section.tables.append(Table("Splits", ["split", "images", "share in own color"], [
            [name, stage["sizes"][name], pct(aligned.get(name))]
            for name in SPLITS if name in stage["sizes"]]))
    section.figures = study.figures("data")
    return section


def section_train(study: StudyArtifacts) -> Section:
    lazy = study.stage("lazy") or {}
    standard = study.stage("standard") or {}
    metrics = lazy.get("metrics", {})
    section = Section(
        "task1", "Task 1 — the cheater",
        asked="Train a standard CNN on the easy set: above 95% on the easy training and "
              "validation sets, below 20% on the hard set, at exactly 95% bias. Show the "
              "confusion matrix and prove the model reads color: a red 1 is predicted 0.",
        did="cnn3 (three convolutions, a small fully connected head) trained with the lazy "
            "preset: the network learns color within its first few dozen steps and shape "
            "only later, so training stops at the first checkpoint whose accuracy on easy "
            "val and on the easy training split clears the bar. The hard set is never used "
            "for any choice. The standard preset trains the same model normally.",
    )
    section.verdicts = [
        check("easy training accuracy above 95%", metrics.get("easy_train"), lambda v: v > 0.95),
        check("easy validation accuracy above 95%", metrics.get("easy_val"),
              lambda v: v > 0.95),
        check("hard-set accuracy below 20%", metrics.get("hard"), lambda v: v < 0.20),
        check("it reads color: test digits rendered in another class's color are predicted "
              "as that class (color-swap test, mean over digit/color pairs)",
              lazy.get("color_swap_follows_color"), lambda v: v > 0.5),
    ]
    red_ones = lazy.get("red_one_predictions")
    if red_ones and sum(red_ones):
        total = sum(red_ones)
        top = sorted(range(len(red_ones)), key=lambda k: -red_ones[k])[:3]
        shares = ", ".join(f"{k}: {pct(red_ones[k] / total)}" for k in top if red_ones[k])
        section.notes.append(
            f"A red 1 (red is the color of class 0): predicted 0 in {pct(red_ones[0] / total)} "
            f"of {total} test 1s rendered red; most common predictions {shares}. Red 1s that "
            "are not called 0 usually go to the class of a neighboring color (7: pink, "
            "6: orange) — the lazy model has learned a little shape, typically enough to "
            "rule out one or two classes, and reads color for the rest.")
    names = ("easy_train", "easy_val", "test_easy", "hard", "unbiased", "color_following_rate")
    rows = []
    for label, stage in (("lazy", lazy), ("standard", standard)):
        values = stage.get("metrics", {})
        if values:
            rows.append([label, *(pct(values.get(n)) for n in names),
                         values.get("selected_step", "n/a")])
    if rows:
        section.tables.append(Table("Lazy vs standard training (seed 0)",
                                    ["preset", *names, "selected step"], rows))
    section.figures = study.figures("lazy")
    return section


def _models_of(stage: dict[str, Any], first: tuple[str | None, ...] = ("lazy",)
               ) -> dict[str, Any]:
    """A stage's per-model entries, the lazy model first (JSON files sort their keys)."""
    models = stage.get("models", {}) if isinstance(stage.get("models"), dict) else {}
    order = [name for name in first if name in models]
    return {name: models[name] for name in order + sorted(set(models) - set(order))}


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
            "against each class's own color and by a grayscale MNIST classifier.",
    )
    rows = []
    for name, entry in _models_of(stage).items():
        for layer, counts in entry.get("layers", {}).items():
            rows.append([name, layer, counts.get("units"), counts.get("color_units"),
                         counts.get("digit_units"), counts.get("shape_units"),
                         counts.get("mixed_units"), counts.get("dead"),
                         num(counts.get("mean_color_index"), 2)])
        section.notes.append(
            f"{name}: the image that maximizes a class logit is dominated by that class's "
            f"own color for {pct(entry.get('dominant_color_match'))} of the classes; a "
            f"grayscale MNIST classifier reads the class's digit in it for "
            f"{pct(entry.get('gray_judge_match'))}.")
    if rows:
        section.tables.append(Table(
            "Units per layer by what they respond to (validation digits in every color)",
            ["model", "layer", "units", "color", "digit", "shape", "mixed", "dead",
             "mean color index"], rows))
    return _with_figures(section, study, "probe", ran=bool(stage))


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
    return _with_figures(section, study, "explain", ran=bool(stage))


def _epochs(epochs: float | None) -> str:
    if not measured(epochs):
        return "the registry's epoch budget"
    return f"{epochs:g} epoch" + ("" if epochs == 1 else "s")


def section_cured(study: StudyArtifacts) -> Section:
    stage = study.stage("cured") or {}
    lazy = (study.stage("lazy") or {}).get("metrics", {})
    standard = (study.stage("standard") or {}).get("metrics", {})
    methods = stage.get("methods", {})
    best = stage.get("method")
    section = Section(
        "task4", "Task 4 — the intervention",
        asked="Retrain so the model ignores color and uses shape, without grayscale images "
              "and without changing the 95%-biased dataset, with at least two custom training "
              "strategies. Target: above 70% on the hard set.",
        did="Two methods from the intervention registry train the lazy model's architecture "
            "(cnn3) from scratch on the unchanged biased training split, each with its "
            "registered hyperparameters and the same epoch budget "
            f"({_epochs(stage.get('epochs'))}): "
            + ", ".join(f"{name} (uses: {', '.join(row.get('uses', []))})"
                        for name, row in methods.items())
            + ". The cured model is the one with the best accuracy on the color-conflicting "
              "images of the easy validation split; the hard and unbiased test splits choose "
              "nothing. The full table, every method against its control over three seeds, "
              "is made by shortcutlab intervene --all.",
    )
    section.verdicts = [
        check(f"the cured model ({best or 'none'}) scores above 70% on the hard set",
              stage.get("metrics", {}).get("hard"), lambda v: v > 0.70),
        Verdict("at least two training strategies", f"{len(methods)} trained",
                len(methods) >= 2 if stage else None),
    ]
    for name, row in methods.items():
        if name != best:
            section.verdicts.append(check(f"{name} (not chosen) scores above 70% on the hard set",
                                          row.get("hard"), lambda v: v > 0.70))
    columns = ["model", "uses", "easy val", "easy val conflicting", "hard", "hard inverted",
               "unbiased", "Grad-CAM background share", "train s"]
    rows = []
    for label, values, uses in (("lazy", lazy, "—"), ("standard", standard, "—")):
        if values:
            rows.append([label, uses, pct(values.get("easy_val")), "n/a",
                         pct(values.get("hard")), "n/a", pct(values.get("unbiased")), "n/a",
                         num(values.get("total_seconds"), 0)])
    for name, row in methods.items():
        rows.append([name + (" (chosen)" if name == best else ""),
                     ", ".join(row.get("uses", [])), pct(row.get("easy_val")),
                     pct(row.get("easy_val_conflicting")), pct(row.get("hard")),
                     pct(row.get("hard_inverted")), pct(row.get("unbiased")),
                     pct(row.get("background_share")), num(row.get("train_seconds"), 0)])
    if rows:
        section.tables.append(Table(f"Interventions (seed {stage.get('seed', 0)})", columns,
                                    rows))
    return _with_figures(section, study, "cured", ran=bool(stage))


def section_attack(study: StudyArtifacts) -> Section:
    stage = study.stage("attack") or {}
    settings = stage.get("settings", {})
    eps, confidence = settings.get("eps", 0.05), settings.get("confidence", 0.9)
    source, target = settings.get("source", 7), settings.get("target", 3)
    section = Section(
        "task5", "Task 5 — the invisible cloak",
        asked=f"Perturb an image of a {source} so that the model says {target} with more than "
              f"{confidence:.0%} confidence, changing no pixel by more than epsilon = {eps:g}. "
              "Is the robust model harder to fool than the lazy one, and by how much noise?",
        did=f"Targeted L-inf {settings.get('attack', 'pgd').upper()} "
            f"({settings.get('steps', '?')} steps, random start) on the first "
            f"{settings.get('limit') or 'all'} {source}s of {stage.get('split', 'test_hard')} "
            "(in split order, never hand-picked), the same images for both models. For every "
            f"image a batched bisection finds the smallest epsilon that reaches p({target}) >= "
            f"{confidence:g} (to {settings.get('precision', 0.001):g}), perturbing the whole "
            "image, only the background or only the digit.",
    )
    models = _models_of(stage, (stage.get("lazy"), stage.get("cured")))
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
    if comparison and measured(comparison.get("compare_needs_more")):
        section.notes.append(
            f"Paired over the {comparison.get('n_pairs')} images both models could be fooled "
            f"on: the cured model needs more noise on {pct(comparison['compare_needs_more'])} "
            f"of them, the lazy one on {pct(comparison.get('run_needs_more'))}. The "
            "background-only and digit-only columns show where each model's decision can be "
            f"moved: a color reader by repainting the background toward {target}'s color, a "
            "shape reader by strokes on the digit.")
    return _with_figures(section, study, "attack", ran=bool(stage))


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
    for name, entry in _models_of(stage).items():
        val = entry.get("accuracy", {}).get("val", {})
        drop = val["original"] - val["reconstructed"] if measured(val.get("original")) and \
            measured(val.get("reconstructed")) else None
        section.verdicts += [
            check(f"{name}: reconstruction explains at least 90% of the variance (r2)",
                  entry.get("r2"), lambda v: v >= 0.9, lambda v: num(v)),
            check(f"{name}: fewer than 10% dead features", entry.get("dead_fraction"),
                  lambda v: v < 0.1),
            Verdict(f"{name}: accuracy on the reconstruction within 2 points (easy val)",
                    f"{pct(val.get('reconstructed'))} vs {pct(val.get('original'))}",
                    drop <= 0.02 if measured(drop) else None),
        ]
        features = entry.get("features", {})
        flips = entry.get("boost_flip_rate")
        rows.append([name, entry.get("layer"), num(entry.get("r2")), num(entry.get("l0"), 1),
                     pct(entry.get("dead_fraction")),
                     *(features.get(kind, 0) for kind in ("color", "digit", "shape", "mixed")),
                     pct(entry.get("hard_accuracy")), pct(entry.get("hard_accuracy_color_ablated")),
                     " / ".join(pct(v) for v in flips) if isinstance(flips, list) and flips
                     else "n/a"])
    if rows:
        section.tables.append(Table(
            "SAE quality, feature labels, and what dialling the color features does",
            ["model", "layer", "r2", "L0", "dead", "color", "digit", "shape", "mixed",
             "hard acc.", "hard acc., color ablated",
             "boost flip rate at strength " + " / ".join(
                 f"{v:g}" for v in next(iter(_models_of(stage).values())).get(
                     "boost_strengths", []))], rows))
        section.notes.append(
            "Boost flip rate: how often boosting one color's features (by the strength times "
            "the feature's mean activation on that color) turns other digits into the class "
            "owning the color. Hard-set accuracy with every color feature ablated shows how "
            "much of the decision rests on them.")
    return _with_figures(section, study, "sae", ran=bool(stage))


def section_run(study: StudyArtifacts) -> Section:
    timings = study.summary.get("timings", {})
    load = study.summary.get("load_average")
    section = Section(
        "run", "The study run",
        asked="The whole study on a laptop CPU in minutes: the default within 15 minutes "
              "(goal 10) and --quick within 3 on a 2-core machine.",
        did="Each stage is keyed by its config and inputs and skipped when up to date; CPU "
            "seconds count every thread of the process and do not depend on other load.",
    )
    rows = [[name, num(t.get("seconds"), 0), num(t.get("cpu_seconds"), 0)]
            for name, t in timings.items()]
    if rows:
        section.tables.append(Table("Stage times of the run that produced them",
                                    ["stage", "wall s", "CPU s"], rows))
    if load:
        section.notes.append("Load average when the study finished (1, 5, 15 min): "
                             + ", ".join(f"{value:.1f}" for value in load) + ".")
    return section


SECTIONS: list[Callable[[StudyArtifacts], Section]] = [
    section_data, section_train, section_probe, section_explain, section_cured,
    section_attack, section_sae, section_run,
]


def study_headline(stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers of every task, from the stages' summaries (what ran)."""
    def get(stage: str, *keys: str) -> Any:
        value: Any = stages.get(stage, {})
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    explain = {method: {role: {"label": entry[role]["label"],
                               "hard_background_share": entry[role].get("test_hard", {})
                               .get("background_share")}
                        for role in ("model", "compare") if role in entry}
               for method, entry in get("explain", "methods").items()} \
        if get("explain", "methods") else None
    attack = {name: {key: entry.get(key) for key in ("n", "success_rate_at_eps",
                                                      "perturbed_success_rate")}
              | {"median_min_eps": entry.get("min_eps", {}).get("median")}
              for name, entry in (get("attack", "models") or {}).items()}
    return {
        "task0": {"train_aligned_share": get("data", "aligned_share", "train"),
                  "hard_aligned_share": get("data", "aligned_share", "test_hard")},
        "task1": {key: get("lazy", "metrics", key)
                  for key in ("easy_train", "easy_val", "hard", "unbiased")}
        | {"standard_hard": get("standard", "metrics", "hard")},
        "task2": {name: {"dominant_color_match": entry.get("dominant_color_match"),
                         "gray_judge_match": entry.get("gray_judge_match")}
                  for name, entry in (get("probe", "models") or {}).items()},
        "task3": explain,
        "task4": {"method": get("cured", "method"), "uses": get("cured", "uses"),
                  "hard": get("cured", "metrics", "hard"),
                  "unbiased": get("cured", "metrics", "unbiased"),
                  "methods": {name: {"hard": row.get("hard"),
                                     "easy_val_conflicting": row.get("easy_val_conflicting")}
                              for name, row in (get("cured", "methods") or {}).items()}},
        "task5": {"models": attack,
                  "median_ratio": get("attack", "comparison", "all", "median_ratio"),
                  "p_value": get("attack", "comparison", "all", "p_value")},
        "task6": {name: {"r2": entry.get("r2"), "dead_fraction": entry.get("dead_fraction"),
                         "val_accuracy": entry.get("accuracy", {}).get("val")}
                  for name, entry in (get("sae", "models") or {}).items()},
    }


def build_report(study_dir: str | Path) -> Path:
    """Write ``study_dir/report.html`` from the study's artifacts; return its path."""
    root = Path(study_dir)
    study = StudyArtifacts(root)
    sections = [make(study) for make in SECTIONS]
    mode = "quick study" if study.summary.get("quick") else "full study"
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    html = render_html("shortcutlab — the Lazy Artist study",
                       f"{mode}, report written {stamp} from {root.resolve()}", sections)
    path = root / REPORT_FILE
    write_bytes(path, html.encode())
    return path
