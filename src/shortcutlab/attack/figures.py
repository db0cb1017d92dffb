"""Figures of ``shortcutlab attack``: what the perturbations look like, and how big they are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shortcutlab.figures import save_figure

FIGURES = ("examples_at_eps.png", "examples_min_eps.png", "min_eps.png")
EXAMPLES = 6  # the first images of the source class, in split order (never hand-picked)


def _hwc(image: np.ndarray) -> np.ndarray:
    return np.clip(image.transpose(1, 2, 0), 0.0, 1.0)


def plot_triplets(path: Path, original: np.ndarray, rows: dict[str, dict[str, np.ndarray]],
                  eps: np.ndarray | float, title: str, source: int, target: int,
                  confidence: float, class_names: tuple[str, str] | None = None) -> None:
    """Per image: original, then per model the amplified perturbation and the adversarial.

    ``rows[name]`` holds ``adversarial`` (K, 3, H, W), ``probs`` (K, classes) and
    ``clean_probs``; the perturbation is shown as 0.5 + delta / (2 eps), so that -eps is
    black and +eps white whatever the epsilon.
    """
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt

    count = original.shape[0]
    names = list(rows)
    columns = 1 + 2 * len(names)
    fig, axes = plt.subplots(count, columns, figsize=(1.9 * columns, 2.0 * count + 0.4),
                             squeeze=False)
    eps = np.broadcast_to(np.asarray(eps, dtype=np.float64), (len(names), count))
    for i in range(count):
        axes[i, 0].imshow(_hwc(original[i]))
        axes[i, 0].set_title("original", fontsize=8)
        for m, name in enumerate(names):
            adversarial = rows[name]["adversarial"][i]
            probs = rows[name]["probs"][i]
            clean = rows[name]["clean_probs"][i]
            e = float(eps[m, i])
            head = f"{name}: clean {clean.argmax()} ({clean.max():.2f})"
            if np.isfinite(e) and e > 0:
                shown = 0.5 + (adversarial - original[i]) / (2 * e)
                label = f"{head}\nperturbation, eps={e:.3f}"
            else:
                shown = np.full_like(adversarial, 0.5)
                label = f"{head}\n" + ("no perturbation" if e == 0 else "not found")
            axes[i, 1 + 2 * m].imshow(_hwc(shown))
            axes[i, 1 + 2 * m].set_title(label, fontsize=8)
            fooled = probs.argmax() == target and probs[target] >= confidence
            axes[i, 2 + 2 * m].imshow(_hwc(adversarial))
            axes[i, 2 + 2 * m].set_title(
                f"adversarial\npred {probs.argmax()} ({probs.max():.2f}), p({target})="
                f"{probs[target]:.2f}", fontsize=8, color="tab:green" if fooled else "tab:red")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    source_name, target_name = class_names or (str(source), str(target))
    fig.suptitle(f"{title}: {source_name} -> {target_name} at confidence {confidence:g} "
                 "(green: fooled, red: not)", fontsize=9)
    save_figure(fig, path)


def plot_min_eps(path: Path, per_model: dict[str, dict[str, np.ndarray]], budget: float,
                 max_eps: float, source: int | str, target: int | str) -> None:
    """Per region: a histogram and the cumulative fraction fooled, per model, budget marked."""
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt

    regions = list(next(iter(per_model.values())))
    fig, axes = plt.subplots(2, len(regions), figsize=(4.2 * len(regions), 6.4), squeeze=False)
    finite_top = max([float(np.max(e[np.isfinite(e)])) for model in per_model.values()
                      for e in model.values() if np.isfinite(e).any()] + [budget])
    bins = np.linspace(0.0, min(max_eps, finite_top * 1.05 + 1e-3), 41)
    for column, region in enumerate(regions):
        hist, ecdf = axes[0, column], axes[1, column]
        for name, regions_eps in per_model.items():
            eps = regions_eps[region]
            found = eps[np.isfinite(eps)]
            missing = len(eps) - len(found)
            label = f"{name} (median {np.median(eps):.3f})" if np.isfinite(
                np.median(eps)) else f"{name}"
            if missing:
                label += f", {missing} not fooled <= {max_eps:g}"
            hist.hist(found, bins=bins, histtype="step", linewidth=1.6, label=label)
            ordered = np.concatenate([[0.0], np.sort(found), [bins[-1]]])
            fraction = np.concatenate([[0.0], np.arange(1, len(found) + 1), [len(found)]])
            ecdf.step(ordered, fraction / len(eps), where="post", label=name)
        for ax in (hist, ecdf):
            ax.axvline(budget, color="black", linestyle="--", linewidth=1)
            ax.set_xlim(bins[0], bins[-1])
        hist.set_title(f"perturb {'the whole image' if region == 'all' else 'only the ' + region}",
                       fontsize=10)
        hist.set_ylabel("images")
        hist.legend(fontsize=7)
        ecdf.set_xlabel("minimal L-inf epsilon")
        ecdf.set_ylabel(f"fraction fooled ({source} -> {target})")
        ecdf.set_ylim(0, 1.02)
        ecdf.legend(fontsize=7, loc="lower right")
        ecdf.text(budget, 0.02, f" eps={budget:g}", fontsize=8)
    fig.suptitle("Minimal epsilon per image (dashed: the budget)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)


def write_figures(out: Path, original: np.ndarray, attacked: list[Any], settings: Any,
                  names: tuple[str, str] | None = None) -> None:
    """The figures of ``FIGURES`` into ``out``.

    ``attacked`` holds one entry per model with ``name``, ``clean_probs`` (N, classes) and
    ``results`` (region -> :class:`~shortcutlab.attack.MinimalEpsilon`).
    """
    source, target = names or (str(settings.source), str(settings.target))
    count = min(EXAMPLES, original.shape[0])
    region = main_region(settings)
    at_eps, at_min, min_eps = {}, {}, []
    for model in attacked:
        result = model.results[region]
        budget = result.at_budget
        clean = model.clean_probs[:count].cpu().numpy()
        at_eps[model.name] = {"adversarial": budget.adversarial[:count].cpu().numpy(),
                              "probs": budget.probs[:count].cpu().numpy(), "clean_probs": clean}
        at_min[model.name] = {"adversarial": result.adversarial[:count].cpu().numpy(),
                              "probs": result.probs[:count].cpu().numpy(), "clean_probs": clean}
        min_eps.append(result.eps[:count])
    where = "" if region == "all" else f", {region} only"
    plot_triplets(out / "examples_at_eps.png", original[:count], at_eps, settings.eps,
                  f"Attack at eps={settings.eps:g}{where}", settings.source, settings.target,
                  settings.confidence, (source, target))
    plot_triplets(out / "examples_min_eps.png", original[:count], at_min, np.stack(min_eps),
                  f"Attack at each image's minimal epsilon{where}", settings.source,
                  settings.target, settings.confidence, (source, target))
    plot_min_eps(out / "min_eps.png",
                 {model.name: {r: res.eps for r, res in model.results.items()}
                  for model in attacked},
                 settings.eps, settings.max_eps, source, target)
    if attacked[0].results[region].by_attack is not None:
        # the complete estimates only: a member that searched below the best so far has
        # no distribution of its own
        plot_min_eps(out / "min_eps_by_attack.png",
                     {f"{model.name}: {member}": {region: eps}
                      for model in attacked
                      for member, eps in {**model.results[region].by_attack,
                                          "ensemble": model.results[region].eps}.items()
                      if member not in model.results[region].capped},
                     settings.eps, settings.max_eps, source, target)
        plot_estimates(out / "fmn_vs_bisection.png",
                       {model.name: model.results[region] for model in attacked},
                       settings.eps)


def main_region(settings: Any) -> str:
    """The region of the headline numbers: the whole image when it was searched."""
    return "all" if "all" in settings.regions else settings.regions[0]


def plot_estimates(path: Path, results: dict[str, Any], budget: float) -> None:
    """Per model, each image's FMN norm against its PGD bisection (diagonal: agreement)."""
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4.2), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items(), strict=True):
        searched, bisected = result.by_attack["fmn"], result.by_attack["pgd"]
        both = np.isfinite(searched) & np.isfinite(bisected)
        tolerance = result.precision * (1 + 1e-6)
        diff = np.zeros_like(bisected)
        diff[both] = searched[both] - bisected[both]
        for chosen, color, label in ((both & (np.abs(diff) <= tolerance), "tab:gray", "agree"),
                                     (both & (diff < -tolerance), "tab:blue", "FMN smaller"),
                                     (both & (diff > tolerance), "tab:red", "FMN larger")):
            ax.scatter(bisected[chosen], searched[chosen], s=6, color=color,
                       label=f"{label} ({int(chosen.sum())})")
        top = max([float(bisected[both].max()), float(searched[both].max())]
                  if both.any() else [budget]) * 1.05
        ax.plot([0, top], [0, top], color="black", linewidth=0.8)
        ax.axvline(budget, color="black", linestyle="--", linewidth=0.8)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("PGD bisection: minimal epsilon")
        ax.set_ylabel("FMN: minimal L-inf norm")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Two estimates of each image's minimal epsilon", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)


def plot_universal(path: Path, perturbations: dict[str, Any], target: int) -> None:
    """Each model's universal background perturbation, shown as 0.5 + delta / (2 eps)."""
    from shortcutlab.figures import headless

    headless()
    import matplotlib.pyplot as plt

    names = list(perturbations)
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 3.0), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        result = perturbations[name]
        shown = 0.5 + result.delta.cpu().numpy() / (2 * result.eps)
        axis.imshow(_hwc(shown))
        axis.set_title(f"{name}\nheld out: {result.heldout_rate:.0%} say {target}",
                       fontsize=8)
        axis.axis("off")
    fig.suptitle(f"One perturbation for every image, background only (eps {result.eps:g})",
                 fontsize=9)
    save_figure(fig, path)
