"""``shortcutlab attack``: every image of one class, one or two models, whole distributions.

For each model and each perturbation region (the whole image, only the background, only
the digit), :func:`~shortcutlab.attack.minimal_epsilon` finds every source image's
minimal L-inf epsilon and, on the way, the attack's outcome at the budget ``eps``. The
two models are attacked on the same images, so they are compared pairwise.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from shortcutlab.attack.attacks import attack_class
from shortcutlab.attack.base import eval_mode
from shortcutlab.attack.minimal import (
    ENSEMBLE,
    FMN_STEPS,
    MinimalEpsilon,
    ensemble_minimal_epsilon,
    fmn_on_grid,
    minimal_epsilon,
)
from shortcutlab.errors import ShortcutlabError
from shortcutlab.models import batched_forward

REGIONS = ("all", "background", "digit")
DEFINITION = (
    "min_eps of an image is the grid value eps (a multiple of `precision`) at which the "
    "attack with the settings below reaches the target with probability >= confidence "
    "and at which the same attack fails at eps - precision (0: the clean image already "
    "does). Both were evaluated; images where the attack fails even at max_eps count as "
    "+inf (statistics that are infinite are written as null). success_rate_at_eps is "
    "the fraction of images the same attack fools at exactly `eps`."
)


@dataclass(frozen=True)
class AttackSettings:
    """Everything that decides the numbers in ``attack.json``."""

    source: int = 7
    target: int = 3
    confidence: float = 0.9
    eps: float = 0.05
    attack: str = "pgd"
    masked_attack: str = ""  # the background-only and digit-only searches' ("": ``attack``)
    steps: int = 20
    rel_step_size: float = 2.5
    restarts: int = 1
    seed: int = 0
    max_eps: float = 1.0
    precision: float = 1e-3
    regions: tuple[str, ...] = REGIONS
    limit: int | None = None
    batch_size: int = 256
    universal: bool = False  # also fit one background perturbation for all images
    checks: bool = False  # also run the gradient-masking checks (Square, growth, unbounded)
    color_shift: bool = False  # also search the smallest background recoloring (color-shift)
    square_queries: int = 1000

    def validate(self, num_classes: int = 10) -> None:
        for name in ("source", "target"):
            value = getattr(self, name)
            if not 0 <= value < num_classes:
                raise ShortcutlabError(f"--{name} must be a class in 0..{num_classes - 1}, "
                                       f"got {value}")
        if self.source == self.target:
            raise ShortcutlabError("--source and --target must differ")
        if not 0.0 < self.confidence < 1.0:
            raise ShortcutlabError(f"--confidence must be in (0, 1) (a probability to reach), "
                                   f"got {self.confidence}")
        if not 0.0 < self.precision < self.max_eps:
            raise ShortcutlabError(f"--precision must be in (0, --max-eps), got {self.precision}")
        if not 0.0 < self.eps <= self.max_eps:
            raise ShortcutlabError(f"--eps must be in (0, --max-eps={self.max_eps}], "
                                   f"got {self.eps}")
        steps = self.eps / self.precision
        if abs(steps - round(steps)) > 1e-6:
            raise ShortcutlabError(f"--eps {self.eps} must be a multiple of --precision "
                                   f"{self.precision} (the search grid)")
        unknown = [r for r in self.regions if r not in REGIONS]
        if unknown or not self.regions:
            raise ShortcutlabError(f"--regions must be a comma-separated subset of "
                                   f"{','.join(REGIONS)}, got {','.join(self.regions)}")
        if self.limit is not None and self.limit < 1:
            raise ShortcutlabError(f"--limit must be positive, got {self.limit}")
        if self.batch_size < 1:
            raise ShortcutlabError(f"--batch-size must be positive, got {self.batch_size}")
        from shortcutlab.attack.attacks import list_attacks

        for flag, name in (("--attack", self.attack), ("--masked-attack", self.masked_attack)):
            if name not in (*list_attacks(), "ensemble", "fmn") and (name or flag == "--attack"):
                raise ShortcutlabError(f"{flag} must be one of {', '.join(list_attacks())}, "
                                       f"fmn or ensemble, got {name!r}")

    def attack_for(self, region: str) -> str:
        """The attack that searches ``region``."""
        return self.attack if region == "all" else self.masked_attack or self.attack

    def attack_kwargs(self) -> dict[str, Any]:
        return {"steps": self.steps, "rel_step_size": self.rel_step_size,
                "restarts": self.restarts, "seed": self.seed}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["regions"] = list(self.regions)
        return data


@dataclass
class SourceImages:
    """The images of the source class in a split, with what the dataset ships."""

    images: Tensor  # (N, 3, 28, 28) float in [0, 1]
    masks: Tensor  # bool (N, 28, 28): the digit's pixels
    index: np.ndarray  # positions in the split
    colors: np.ndarray  # palette index of each image


def source_images(split: Any, source: int, limit: int | None = None) -> SourceImages:
    """The split's images of class ``source`` (the first ``limit`` of them, in split order)."""
    index = np.flatnonzero(split.labels == source)
    if index.size == 0:
        present = ", ".join(str(c) for c in np.unique(split.labels))
        raise ShortcutlabError(f"split {split.name!r} has no image of class {source} "
                               f"(classes present: {present}); choose another --source or --split")
    if limit is not None:
        index = index[:limit]
    chosen = split.subset(index)
    return SourceImages(chosen.image_tensor(), torch.from_numpy(chosen.masks), index,
                        chosen.colors.copy())


def region_mask(masks: Tensor, region: str) -> Tensor | None:
    """Where a perturbation may go: everywhere (None), off the digit, or on the digit."""
    if region == "all":
        return None
    if region == "background":
        return ~masks
    if region == "digit":
        return masks.clone()
    raise ShortcutlabError(f"unknown region {region!r}; choose one of {', '.join(REGIONS)}")


def attack_model(model: nn.Module, images: SourceImages, settings: AttackSettings,
                 label: str = "model") -> dict[str, MinimalEpsilon]:
    """Minimal epsilon (and the outcome at ``settings.eps``) for every region."""
    results = {}
    for region in settings.regions:
        if settings.attack_for(region) == "ensemble":
            search, chosen = ensemble_minimal_epsilon, {}
        elif settings.attack_for(region) == "fmn":
            search, chosen = fmn_on_grid, {}
        else:
            search, chosen = minimal_epsilon, {"attack": settings.attack_for(region)}
        results[region] = search(
            model, images.images, settings.target, settings.confidence,
            mask=region_mask(images.masks, region), **chosen,
            max_eps=settings.max_eps, precision=settings.precision, eps_budget=settings.eps,
            batch_size=settings.batch_size, desc=f"{label}: {region}",
            **settings.attack_kwargs())
    return results


# -- statistics --------------------------------------------------------------------------
def quantile(values: np.ndarray, q: float) -> float:
    """Linear-interpolation quantile that lets +inf through instead of producing NaN."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    position = (len(ordered) - 1) * q
    below, above = math.floor(position), math.ceil(position)
    low, high = ordered[below], ordered[above]
    if above == below or low == high:
        return float(low)
    if math.isinf(high):
        return math.inf
    return float(low + (high - low) * (position - below))


def finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def distribution(eps: np.ndarray) -> dict[str, Any]:
    """median, quartiles, max, mean of per-image minimal epsilons (inf -> null)."""
    return {
        "median": finite_or_none(quantile(eps, 0.5)),
        "q1": finite_or_none(quantile(eps, 0.25)),
        "q3": finite_or_none(quantile(eps, 0.75)),
        "min": finite_or_none(float(np.min(eps))),
        "max": finite_or_none(float(np.max(eps))),
        "mean": finite_or_none(float(np.mean(eps))),
        "n_found": int(np.isfinite(eps).sum()),
    }


def region_summary(result: MinimalEpsilon) -> dict[str, Any]:
    assert result.at_budget is not None
    summary = {
        "n": len(result.eps),
        "success_rate_at_eps": float(result.at_budget.success.float().mean()),
        "min_eps": distribution(result.eps),
        "attack_rounds": result.rounds,
    }
    if result.by_attack is not None:
        found_by = result.found_by or []
        summary["by_attack"] = {
            name: {**distribution(eps), "smallest": sum(f == name for f in found_by),
                   "larger_than_ensemble": int((eps > result.eps).sum()),
                   "searched": ("below the best so far" if name in result.capped
                                else "the whole range")}
            for name, eps in result.by_attack.items()}
        if {"pgd", "fmn"} <= set(result.by_attack):
            summary["fmn_vs_bisection"] = estimate_agreement(
                result.by_attack["fmn"], result.by_attack["pgd"], result.precision)
    return summary


def estimate_agreement(searched: np.ndarray, bisected: np.ndarray,
                       precision: float) -> dict[str, Any]:
    """The two complete estimates of one image's minimal epsilon side by side: FMN's norm
    (on the grid) and PGD's bisection. They agree when within one grid step."""
    both = np.isfinite(searched) & np.isfinite(bisected)
    diff = searched[both] - bisected[both]
    tolerance = precision * (1 + 1e-6)
    bisected_median = float(np.median(bisected[both])) if both.any() else 0.0
    return {
        "n_both": int(both.sum()),
        "only_fmn": int((np.isfinite(searched) & ~np.isfinite(bisected)).sum()),
        "only_bisection": int((~np.isfinite(searched) & np.isfinite(bisected)).sum()),
        "median_ratio": (float(np.median(searched[both])) / bisected_median
                         if bisected_median > 0 else None),
        "fmn_smaller": int((diff < -tolerance).sum()),
        "agree": int((np.abs(diff) <= tolerance).sum()),
        "fmn_larger": int((diff > tolerance).sum()),
        "largest_excess": float(diff.max()) if diff.size else None,
        "definition": "fmn_smaller / agree / fmn_larger: images where FMN's minimal norm "
                      "(rounded up to the grid) is below, within one grid step of, or above "
                      "the PGD bisection's minimal epsilon",
    }


def clean_probs(model: nn.Module, images: Tensor, batch_size: int) -> Tensor:
    """Softmax outputs on the unperturbed images, in eval mode."""
    with eval_mode(model):
        return batched_forward(model, images, batch_size, fn=_softmax)


def _softmax(model: nn.Module, images: Tensor) -> Tensor:
    return model(images).softmax(dim=1)


@dataclass
class ModelAttack:
    """One model's results: per-region minimal epsilons and its clean predictions."""

    role: str  # "run" or "compare"
    name: str
    path: str
    clean_probs: Tensor
    results: dict[str, MinimalEpsilon]


def model_summary(attacked: ModelAttack, images: SourceImages, settings: AttackSettings,
                  color_names: list[str]) -> dict[str, Any]:
    """One model's entry of ``attack.json``."""
    predicted = attacked.clean_probs.argmax(dim=1)
    p_target = attacked.clean_probs[:, settings.target]
    results = attacked.results
    main_region = "all" if "all" in results else next(iter(results))
    entry: dict[str, Any] = {
        "role": attacked.role,
        "name": attacked.name,
        "path": attacked.path,
        "n": len(images.index),
        "clean_accuracy": float((predicted == settings.source).float().mean()),
        "clean_target_rate": float(((predicted == settings.target)
                                    & (p_target >= settings.confidence)).float().mean()),
        "region": main_region,
        **{k: v for k, v in region_summary(results[main_region]).items() if k != "n"},
        "masked": {region: region_summary(result) for region, result in results.items()
                   if region != main_region},
    }
    eps = results[main_region].eps
    entry["min_eps_by_color"] = {
        color_names[int(color)]: {
            "n": int((images.colors == color).sum()),
            "median": finite_or_none(quantile(eps[images.colors == color], 0.5)),
        }
        for color in np.unique(images.colors)
    }
    return entry


def paired_comparison(run_eps: np.ndarray, compare_eps: np.ndarray) -> dict[str, Any]:
    """Ratio of medians (compare / run) and a Wilcoxon signed-rank test on the same images.

    Pairs where either model resists the attack up to max_eps are left out of the test
    (their difference is unknown); ties (equal grid values) are dropped by the test, as
    Wilcoxon's original procedure does, and counted.
    """
    from scipy import stats

    run_median, compare_median = quantile(run_eps, 0.5), quantile(compare_eps, 0.5)
    ratio = None
    if math.isfinite(run_median) and math.isfinite(compare_median) and run_median > 0:
        ratio = compare_median / run_median
    both = np.isfinite(run_eps) & np.isfinite(compare_eps)
    diff = compare_eps[both] - run_eps[both]
    result: dict[str, Any] = {
        "median_ratio": ratio,
        "n_pairs": int(both.sum()),
        "median_difference": float(np.median(diff)) if diff.size else None,
        "compare_needs_more": float(np.mean(diff > 0)) if diff.size else None,
        "run_needs_more": float(np.mean(diff < 0)) if diff.size else None,
        "ties": int(np.sum(diff == 0)),
        "test": "wilcoxon signed-rank, two-sided, zero differences dropped",
        "wilcoxon_statistic": None,
        "p_value": None,
    }
    if np.count_nonzero(diff) > 0:
        test = stats.wilcoxon(compare_eps[both], run_eps[both], zero_method="wilcox",
                              alternative="two-sided")
        result["wilcoxon_statistic"] = float(test.statistic)
        result["p_value"] = float(test.pvalue)
    return result


# -- the command -------------------------------------------------------------------------
def transfer(models_: list[nn.Module], attacked: list[ModelAttack],
             settings: AttackSettings) -> dict[str, Any]:
    """Each model's adversarial images at the budget, shown to the other model: per
    region, the share of the images that fooled their own model and also fool the other
    (reaching the target at the confidence)."""
    out: dict[str, Any] = {"eps": settings.eps, "definition": (
        "made_on -> tested_on: among the images the attack fooled on made_on at eps, the "
        "fraction that also make tested_on say the target with at least the confidence")}
    for made, tested, key in ((0, 1, "run_to_compare"), (1, 0, "compare_to_run")):
        rows = {}
        for region, result in attacked[made].results.items():
            at_budget = result.at_budget
            fooled = at_budget.success
            if not bool(fooled.any()):
                rows[region] = {"n_fooled": 0, "transfer_rate": None}
                continue
            probs = clean_probs(models_[tested], at_budget.adversarial[fooled],
                                settings.batch_size)
            hit = (probs.argmax(1) == settings.target) & (
                probs[:, settings.target] >= settings.confidence)
            rows[region] = {"n_fooled": int(fooled.sum()),
                            "transfer_rate": float(hit.float().mean())}
        out[key] = rows
    return out


def masking_checks(model: nn.Module, images: SourceImages, settings: AttackSettings,
                   attacked: ModelAttack) -> dict[str, Any]:
    """AutoAttack's symptoms of gradient masking, on the whole images (region ``all``, or
    the first region searched):

    * ``unbounded_failures``: images the search never fooled up to ``max_eps`` (at
      ``max_eps = 1`` every image is reachable, so a failure means the gradients led
      nowhere);
    * ``success_by_eps``: the attack's success at eps/2, eps and 2 eps, called directly;
      a rate that falls as epsilon grows is a symptom;
    * ``square``: the score-based Square search (no gradients) at ``eps``, and the images
      it fools that the gradient attack did not (``black_box_only``).

    ``flags`` lists the symptoms found (empty: none)."""
    from shortcutlab.attack.attacks import create_attack
    from shortcutlab.attack.universal import square_attack

    region = "all" if "all" in attacked.results else next(iter(attacked.results))
    result = attacked.results[region]
    mask = region_mask(images.masks, region)
    name = "pgd" if settings.attack == "ensemble" else settings.attack
    attack = create_attack(name, model, confidence=settings.confidence, targeted=True,
                           **settings.attack_kwargs())
    target = torch.full((len(images.images),), settings.target, dtype=torch.long,
                        device=images.images.device)
    rates = {}
    for factor in (0.5, 1.0, 2.0):
        eps = min(settings.max_eps, factor * settings.eps)
        rates[f"{eps:g}"] = float(attack(images.images, target, eps=eps,
                                         mask=mask).success.float().mean())
    square, _ = square_attack(model, images.images, settings.target, settings.eps,
                           confidence=settings.confidence, queries=settings.square_queries,
                           mask=mask, seed=settings.seed)
    white = result.at_budget.success
    checks = {
        "region": region,
        "unbounded_failures": int(np.isinf(result.eps).sum()),
        "max_eps": settings.max_eps,
        "success_by_eps": rates,
        "square": {"queries": settings.square_queries,
                   "success_rate_at_eps": float(square.float().mean()),
                   "black_box_only": int((square & ~white).sum())},
    }
    values = list(rates.values())
    flags = []
    if checks["unbounded_failures"] and settings.max_eps >= 1.0:
        flags.append("the search fails on some images even with the whole pixel range")
    if any(later < earlier for earlier, later in itertools.pairwise(values)):
        flags.append("success falls as epsilon grows")
    if checks["square"]["black_box_only"]:
        flags.append("the gradient-free Square attack fools images the gradient attack "
                     "does not")
    checks["flags"] = flags
    return checks


def color_shift_summary(model: nn.Module, images: SourceImages, settings: AttackSettings,
                        label: str) -> dict[str, Any]:
    """The smallest uniform recoloring of the background (``color-shift``) that makes the
    model say the target: how cheap the color shortcut is, in one number per image."""
    result = minimal_epsilon(
        model, images.images, settings.target, settings.confidence, attack="color-shift",
        mask=region_mask(images.masks, "background"), max_eps=settings.max_eps,
        precision=settings.precision, eps_budget=settings.eps, batch_size=settings.batch_size,
        desc=f"{label}: color shift", **settings.attack_kwargs())
    return {"region": "background", **region_summary(result)}


def _model_name(run: Path, taken: set[str]) -> str:
    name = run.resolve().name or "model"
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}-{number}", number + 1
    taken.add(candidate)
    return candidate


def _num_classes(model: nn.Module, device: torch.device) -> int:
    with eval_mode(model), torch.no_grad():
        return int(model(torch.zeros(1, 3, 28, 28, device=device)).shape[1])


def run_attack(run: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike,
               settings: AttackSettings, *, compare: str | os.PathLike | None = None,
               split: str = "test_hard", save_examples: bool = False,
               device: str = "auto", labels: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Attack one or two models on every source image of a split; write ``attack.json``.

    ``labels`` name the models in ``attack.json`` and the figures (default: the run
    directories' names)."""
    from shortcutlab import models
    from shortcutlab.artifacts import save_npz, write_json
    from shortcutlab.attack import figures
    from shortcutlab.data import load_meta, load_split
    from shortcutlab.data.dataset import class_names
    from shortcutlab.runtime import resolve_device

    torch_device = resolve_device(device)
    runs = [Path(run)] + ([Path(compare)] if compare is not None else [])
    loaded = [models.load(path, device=torch_device) for path in runs]
    num_classes = _num_classes(loaded[0], torch_device)
    settings.validate(num_classes)
    for path, model in zip(runs[1:], loaded[1:], strict=True):
        if _num_classes(model, torch_device) != num_classes:
            raise ShortcutlabError(f"{path} predicts a different number of classes than {run}")
    meta = load_meta(data)
    images = source_images(load_split(data, split), settings.source, settings.limit)
    images.images = images.images.to(torch_device)
    images.masks = images.masks.to(torch_device)
    color_names = list(meta.get("color_names", [str(i) for i in range(10)]))
    names = class_names(meta)
    named = (names[settings.source] if settings.source < len(names) else str(settings.source),
             names[settings.target] if settings.target < len(names) else str(settings.target))

    taken: set[str] = set()
    attacked = []
    for role, path, model in zip(("run", "compare"), runs, loaded, strict=False):
        name = _model_name(path, taken) if labels is None else labels[len(attacked)]
        attacked.append(ModelAttack(role, name, str(path),
                                    clean_probs(model, images.images, settings.batch_size),
                                    attack_model(model, images, settings, label=name)))

    summary: dict[str, Any] = {
        "split": split,
        "data": str(data),
        "dataset_id": meta.get("dataset_id"),
        "settings": settings.to_dict(),
        "attack": {"name": settings.attack, **settings.attack_kwargs(),
                   **({"norm": "linf", "members": list(ENSEMBLE)}
                      if settings.attack == "ensemble"
                      else {"norm": "linf", "steps": FMN_STEPS} if settings.attack == "fmn"
                      else {"norm": attack_class(settings.attack).norm}),
                   "by_region": {region: settings.attack_for(region)
                                 for region in settings.regions}},
        "definition": DEFINITION,
        "class_names": {"source": named[0], "target": named[1]},
        "models": [model_summary(m, images, settings, color_names) for m in attacked],
    }
    if compare is not None:
        first, second = attacked
        summary["comparison"] = {
            "ratio": "compare / run",
            "run": first.name,
            "compare": second.name,
            **{region: paired_comparison(first.results[region].eps, second.results[region].eps)
               for region in settings.regions},
            "transfer": transfer(loaded, attacked, settings),
        }

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    universal = {}
    for model, entry, result in zip(loaded, summary["models"], attacked, strict=True):
        if settings.checks:
            entry["masking_checks"] = masking_checks(model, images, settings, result)
        if settings.color_shift:
            entry["color_shift"] = color_shift_summary(model, images, settings, result.name)
        if settings.universal:
            from shortcutlab.attack.universal import universal_perturbation

            universal[result.name] = universal_perturbation(
                model, images.images, images.masks, settings.target, settings.eps,
                confidence=settings.confidence, batch_size=settings.batch_size)
            entry["universal"] = universal[result.name].to_dict()
    arrays: dict[str, np.ndarray] = {"index": images.index, "colors": images.colors}
    for model in attacked:
        for region, result in model.results.items():
            arrays[f"{model.role}_{region}"] = result.eps
    summary["files"] = {"min_eps.npz": save_npz(out / "min_eps.npz", **arrays)}
    if save_examples:
        summary["files"]["examples.npz"] = save_npz(out / "examples.npz",
                                                    **_examples(images, attacked, settings))
    figures.write_figures(out, images.images.cpu().numpy(), attacked, settings, named)
    summary["figures"] = list(figures.FIGURES)
    if settings.attack_for(figures.main_region(settings)) == "ensemble":
        summary["figures"] += ["min_eps_by_attack.png", "fmn_vs_bisection.png"]
    if universal:
        figures.plot_universal(out / "universal.png", universal, settings.target)
        summary["figures"].append("universal.png")
    write_json(out / "attack.json", summary)
    return summary


def _examples(images: SourceImages, attacked: list[ModelAttack],
              settings: AttackSettings) -> dict[str, np.ndarray]:
    """``original``, ``adversarial`` (at --eps) and ``target_prob`` for the run model.

    With a comparison model its arrays carry a ``compare_`` prefix; ``min_eps_adversarial``
    holds the (always successful, when found) adversarial at each image's minimal epsilon.
    """
    arrays: dict[str, np.ndarray] = {
        "original": images.images.cpu().numpy(),
        "index": images.index,
        "colors": images.colors,
    }
    region = "all" if "all" in settings.regions else settings.regions[0]
    for model in attacked:
        prefix = "" if model.role == "run" else "compare_"
        result = model.results[region]
        budget = result.at_budget
        assert budget is not None
        arrays[f"{prefix}adversarial"] = budget.adversarial.cpu().numpy()
        arrays[f"{prefix}target_prob"] = budget.probs[:, settings.target].cpu().numpy()
        arrays[f"{prefix}success"] = budget.success.cpu().numpy()
        arrays[f"{prefix}min_eps"] = result.eps
        arrays[f"{prefix}min_eps_adversarial"] = result.adversarial.cpu().numpy()
        arrays[f"{prefix}min_eps_target_prob"] = result.probs[:, settings.target].cpu().numpy()
    return arrays
