"""The explain stage end to end: maps, numbers and figures for a trained model (and a second
one to compare), written to an output directory as ``explain.json`` and PNG figures."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from shortcutlab import models
from shortcutlab.artifacts import read_json, write_json
from shortcutlab.data import SPLITS, Split, load_meta, load_split
from shortcutlab.data.dataset import dataset_classes, dataset_colors
from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain.methods import (
    Method,
    attribution_maps,
    get_method,
    method_options,
)
from shortcutlab.explain.metrics import (
    background_area,
    background_share,
    pointing_game,
    summarize,
)
from shortcutlab.explain.sanity import cascading_randomization
from shortcutlab.runtime import resolve_device

TARGETS = ("predicted", "label")
DEFAULT_SPLITS = ("test_easy", "test_hard", "test_unbiased")
EXPLAIN_JSON = "explain.json"
FIGURES = {
    "aha": "aha.png",
    "shares": "background_share.png",
    "examples": "examples.png",
    "sanity": "sanity.png",
    "sanity_maps": "sanity_maps.png",
    "faithfulness": "faithfulness.png",
}


@dataclass(frozen=True)
class ExplainConfig:
    method: str = "gradcam"
    splits: tuple[str, ...] = DEFAULT_SPLITS
    limit: int | None = 2000
    target: str = "predicted"
    batch_size: int = 256
    layer: str | None = None
    rule: str = "epsilon"
    epsilon: float = 0.01
    steps: int = 32
    base: str = "ixg"  # SmoothGrad's method
    samples: int = 16  # SmoothGrad's noisy copies
    noise: float = 0.15  # SmoothGrad's noise (standard deviation)
    window: int = 4  # occlusion's patch
    stride: int = 2  # occlusion's step
    tolerance: int = 0
    sanity_images: int = 32
    examples: int = 8
    seed: int = 0
    device: str = "auto"
    conflict_shift: int = 1
    figures: bool = True
    faithfulness: int = 200  # images of the deletion curves (0: none)
    faithfulness_split: str = "test_hard"
    fill: str = "mean"  # mean | road
    removal_steps: int = 20

    def validate(self) -> None:
        get_method(self.method)
        if self.method == "smoothgrad" and get_method(self.base).name == "smoothgrad":
            raise ShortcutlabError("--base must name another method than smoothgrad")
        if self.samples < 1 or self.noise < 0 or self.window < 1 or self.stride < 1:
            raise ShortcutlabError("--samples, --window and --stride must be positive, "
                                   "--noise >= 0")
        if self.target not in TARGETS:
            raise ShortcutlabError(f"--target must be one of {TARGETS}, got {self.target!r}")
        unknown = [s for s in self.splits if s not in SPLITS]
        if unknown or not self.splits:
            raise ShortcutlabError(f"--splits must name splits among {', '.join(SPLITS)}; "
                                   f"got {', '.join(self.splits) or 'none'}")
        if self.limit is not None and self.limit < 1:
            raise ShortcutlabError(f"--limit must be positive (or 0 for every image), "
                                   f"got {self.limit}")
        if self.sanity_images < 0 or self.examples < 0 or self.steps < 2:
            raise ShortcutlabError("--sanity-images and --examples must be >= 0, --steps >= 2")
        if not 1 <= self.conflict_shift <= 9:
            raise ShortcutlabError("conflict_shift must be in 1..9")
        if self.faithfulness < 0 or self.removal_steps < 1:
            raise ShortcutlabError("--faithfulness must be >= 0 and --removal-steps >= 1")
        if self.faithfulness_split not in SPLITS:
            raise ShortcutlabError(f"--faithfulness-split must be one of {', '.join(SPLITS)}")
        if self.fill not in ("mean", "road"):
            raise ShortcutlabError(f"--fill must be mean or road, got {self.fill!r}")

    def method_options(self) -> dict[str, Any]:
        return method_options(get_method(self.method), {
            "layer": self.layer, "rule": self.rule, "epsilon": self.epsilon, "steps": self.steps,
            "base": self.base, "samples": self.samples, "noise": self.noise,
            "window": self.window, "stride": self.stride,
        })


@dataclass
class LoadedModel:
    label: str
    run_dir: Path
    model: nn.Module
    info: dict[str, Any] = field(default_factory=dict)


def _load_model(run_dir: str | os.PathLike, label: str | None,
                device: torch.device) -> LoadedModel:
    run_dir = Path(run_dir)
    model = models.load(run_dir, device)
    info = {"run": str(run_dir), "name": model.spec["name"], "kwargs": model.spec["kwargs"]}
    config_path = run_dir / "config.json"
    if config_path.is_file():
        config = read_json(config_path)
        info["trained_on"] = config.get("dataset_id") or config.get("data", {}).get("dataset_id")
    return LoadedModel(label or run_dir.resolve().name, run_dir, model, info)


def _subset(split: Split, limit: int | None, seed: int) -> Split:
    """A fixed random subset (sorted indices) so that ``--limit`` does not pick by order."""
    if limit is None or limit >= len(split):
        return split
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    return split.subset(np.sort(rng.permutation(len(split))[:limit]))


def _predict(model: nn.Module, images: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """Predicted classes and their probabilities."""
    probs, preds = models.batched_forward(model, images, batch_size, fn=_best, to_cpu=True)
    return preds, probs


def _best(model: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """The highest softmax probability of each image and its class."""
    return tuple(torch.softmax(model(images).float(), dim=1).max(dim=1))


def _targets(config: ExplainConfig, preds: Tensor, labels: np.ndarray) -> Tensor:
    return preds if config.target == "predicted" else torch.from_numpy(labels).long()


def _subset_metrics(select: Tensor, preds: Tensor, labels: Tensor, shares: Tensor,
                    hits: Tensor) -> dict[str, Any]:
    return {
        "n": int(select.sum()),
        "accuracy": float((preds[select] == labels[select]).double().mean()),
        "background_share": summarize(shares[select])["mean"],
        "pointing_game": float(hits[select].double().mean()),
    }


def _split_metrics(maps: Tensor, split: Split, preds: Tensor, tolerance: int) -> dict[str, Any]:
    """Scores of one model on one split, overall and for subsets of images: ``aligned`` and
    ``conflicting`` (the image's color is / is not its class's), and conflicting images by
    the model's answer (``by_answer``: ``color`` = the class whose color the image has,
    ``digit`` = the true class, ``other``)."""
    masks = torch.from_numpy(split.masks)
    shares = background_share(maps, masks)
    hits = pointing_game(maps, masks, tolerance)
    labels = torch.from_numpy(split.labels)
    colors = torch.from_numpy(split.colors)
    aligned = torch.from_numpy(split.aligned)
    result = {
        "n": len(split),
        "accuracy": float((preds == labels).double().mean()),
        "background_share": summarize(shares),
        "pointing_game": float(hits.double().mean()),
        "background_area": float(background_area(masks).mean()),
    }
    for name, select in (("aligned", aligned), ("conflicting", ~aligned)):
        if bool(select.any()):
            result[name] = _subset_metrics(select, preds, labels, shares, hits)
    if bool((~aligned).any()):
        answers = {"color": preds == colors, "digit": preds == labels}
        answers["other"] = ~(answers["color"] | answers["digit"])
        result["conflicting"]["by_answer"] = {
            name: _subset_metrics(~aligned & chosen, preds, labels, shares, hits)
            for name, chosen in answers.items() if bool((~aligned & chosen).any())
        }
    return result


def _aha_images(data_dir: Path, config: ExplainConfig) -> dict[str, Any]:
    """Per digit one test digit in its own color and the same digit in another class's color.

    The three test splits render the same source digits in the same order, so test_easy's
    image i and test_hard's image i show one digit in two colors (checked on the masks);
    should a dataset not be laid out that way, the digit is re-rendered from its source.
    """
    easy = load_split(data_dir, "test_easy")
    hard = load_split(data_dir, "test_hard")
    classes = dataset_classes(load_meta(data_dir))
    digits = np.arange(min(classes, 10))  # the panel shows at most ten classes
    first = []
    for d in digits:
        candidates = np.flatnonzero((easy.labels == d) & easy.aligned)
        if candidates.size == 0:
            raise ShortcutlabError(f"test_easy has no image of digit {d} in its own color "
                                   "for the comparison panel")
        first.append(int(candidates[0]))
    same_digits = (len(hard) == len(easy)
                   and all(np.array_equal(easy.masks[i], hard.masks[i]) for i in first))
    if same_digits:
        return {"digits": digits, "conflict_colors": hard.colors[first], "source": "test splits",
                "biased": easy.images[first], "conflicting": hard.images[first], "index": first}
    from shortcutlab.data.recolor import recolor, renderable, split_digits

    if not renderable(data_dir):  # imported: show another image of the class instead
        other = [int(np.flatnonzero(hard.labels == d)[0]) if (hard.labels == d).any()
                 else first[i] for i, d in enumerate(digits)]
        return {"digits": digits, "conflict_colors": hard.colors[other],
                "source": "test splits (other images of the class)",
                "biased": easy.images[first], "conflicting": hard.images[other], "index": first}
    gray = split_digits(data_dir, "test_easy")[first]
    conflict = (digits + config.conflict_shift) % classes
    return {"digits": digits, "conflict_colors": conflict, "source": "recolored",
            "biased": easy.images[first],
            "conflicting": recolor(data_dir, gray, conflict, seed=config.seed), "index": first}


@dataclass
class _Job:
    """What every step of one explain run shares."""

    config: ExplainConfig
    data_dir: Path
    device: torch.device
    loaded: list[LoadedModel]

    @property
    def method(self) -> Method:
        return get_method(self.config.method)

    def maps(self, model: nn.Module, images: Tensor, targets: Tensor, desc: str) -> Tensor:
        return attribution_maps(model, images, targets.to(self.device), self.method,
                                self.config.method_options(), self.config.batch_size, desc)


def _score_splits(job: _Job) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Metrics per model and split, and the first images' maps for the examples figure."""
    config = job.config
    per_model: dict[str, dict[str, Any]] = {m.label: {} for m in job.loaded}
    blocks = []
    for split_name in config.splits:
        split = _subset(load_split(job.data_dir, split_name), config.limit, config.seed)
        images = split.image_tensor(job.device)
        block = {"split": split_name, "images": split.images[:config.examples],
                 "labels": split.labels[:config.examples].tolist(),
                 "colors": split.colors[:config.examples].tolist(), "maps": {}, "preds": {}}
        for entry in job.loaded:
            preds, _ = _predict(entry.model, images, config.batch_size)
            maps = job.maps(entry.model, images, _targets(config, preds, split.labels),
                            f"{entry.label} {split_name}")
            per_model[entry.label][split_name] = _split_metrics(maps, split, preds,
                                                               config.tolerance)
            block["maps"][entry.label] = maps[:config.examples].numpy()
            block["preds"][entry.label] = preds[:config.examples].tolist()
        blocks.append(block)
    return per_model, blocks


def _sanity(job: _Job) -> tuple[dict[str, Any], Split | None]:
    """The cascading-randomization check of every model on the first split's images."""
    config = job.config
    if not config.sanity_images:
        return {}, None
    split = _subset(load_split(job.data_dir, config.splits[0]), config.sanity_images,
                    config.seed)
    images = split.image_tensor(job.device)
    results = {}
    for entry in job.loaded:
        preds, _ = _predict(entry.model, images, config.batch_size)
        targets = _targets(config, preds, split.labels)

        def maps_fn(model: nn.Module, targets: Tensor = targets) -> Tensor:
            return job.maps(model, images, targets, "sanity check")

        results[entry.label] = cascading_randomization(entry.model, maps_fn, seed=config.seed)
    return results, split


def _faithfulness(job: _Job) -> dict[str, Any]:
    """Deletion curves of every model on a fixed random subset of one split."""
    from shortcutlab.explain.faithfulness import deletion_curves

    config = job.config
    if not config.faithfulness:
        return {}
    split = _subset(load_split(job.data_dir, config.faithfulness_split), config.faithfulness,
                    config.seed)
    images = split.image_tensor(job.device)
    fractions = tuple(float(f) for f in np.linspace(0.0, 1.0, config.removal_steps + 1))
    results = {}
    for entry in job.loaded:
        preds, _ = _predict(entry.model, images, config.batch_size)
        targets = _targets(config, preds, split.labels).to(job.device)
        maps = job.maps(entry.model, images, targets, f"{entry.label} deletion")
        curves = deletion_curves(entry.model, images, maps, targets,
                                 masks=torch.from_numpy(split.masks), fractions=fractions,
                                 fill=config.fill, seed=config.seed,
                                 batch_size=config.batch_size)
        results[entry.label] = {"split": config.faithfulness_split, **curves.summary()}
    return results


def _panel_models(job: _Job, aha: dict[str, Any]) -> list[Any]:
    from shortcutlab.explain.figures import PanelModel

    panel = []
    for entry in job.loaded:
        sides = {}
        for side in ("biased", "conflicting"):
            x = torch.from_numpy(aha[side]).to(job.device).permute(0, 3, 1, 2).float() / 255
            preds, probs = _predict(entry.model, x, job.config.batch_size)
            targets = preds if job.config.target == "predicted" else torch.from_numpy(
                aha["digits"]).long()
            maps = job.maps(entry.model, x, targets, "panel")
            sides[side] = (maps.numpy(), preds.numpy(), probs.numpy())
        panel.append(PanelModel(entry.label, sides["biased"][0], sides["conflicting"][0],
                                sides["biased"][1], sides["biased"][2],
                                sides["conflicting"][1], sides["conflicting"][2]))
    return panel


def _figures(job: _Job, out_dir: Path, per_model: dict[str, Any], blocks: list[dict[str, Any]],
             sanity: dict[str, Any], sanity_split: Split | None,
             faithfulness: dict[str, Any]) -> dict[str, str]:
    """Write every figure; return what was written."""
    from shortcutlab.explain import figures

    method, config = job.method, job.config
    labels = [entry.label for entry in job.loaded]
    color_names, _ = dataset_colors(load_meta(job.data_dir))
    aha = _aha_images(job.data_dir, config)
    figures.aha_panel(out_dir / FIGURES["aha"], aha["digits"], aha["biased"],
                      aha["conflicting"], aha["conflict_colors"], _panel_models(job, aha),
                      method.title, method.signed, color_names)
    figures.share_chart(out_dir / FIGURES["shares"], list(config.splits), labels, per_model,
                        method.title)
    written = {"aha": FIGURES["aha"], "shares": FIGURES["shares"], "aha_images": aha["source"],
               # the panel's digits: test_easy images, each shown again in conflict_colors
               "aha_panel": {"split": "test_easy", "index": [int(i) for i in aha["index"]],
                             "digits": [int(d) for d in aha["digits"]],
                             "conflict_colors": [int(c) for c in aha["conflict_colors"]]}}
    if config.examples:
        figures.examples_figure(out_dir / FIGURES["examples"], blocks, labels, method.title,
                                method.signed, color_names)
        written["examples"] = FIGURES["examples"]
    if sanity:
        figures.sanity_figure(out_dir / FIGURES["sanity"], out_dir / FIGURES["sanity_maps"],
                              sanity, sanity_split.images, method.title, method.signed)
        written["sanity"] = FIGURES["sanity"]
        written["sanity_maps"] = FIGURES["sanity_maps"]
    if faithfulness:
        figures.deletion_figure(out_dir / FIGURES["faithfulness"], faithfulness, method.title)
        written["faithfulness"] = FIGURES["faithfulness"]
    return written


def explain_run(run_dir: str | os.PathLike, data_dir: str | os.PathLike,
                out_dir: str | os.PathLike, config: ExplainConfig = ExplainConfig(),
                compare_dir: str | os.PathLike | None = None, label: str | None = None,
                compare_label: str | None = None) -> dict[str, Any]:
    """Explain a trained model (and optionally a second one) on a dataset; write
    ``explain.json`` and the figures to ``out_dir`` and return the ``explain.json`` content
    (see docs/artifacts.md)."""
    config.validate()
    device = resolve_device(config.device)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    meta = load_meta(data_dir)
    if meta.get("masks", True) is False:
        raise ShortcutlabError(
            f"{data_dir} has no object masks, and explain measures where attribution falls "
            "against them (background share, pointing game, deletion order); import the "
            "dataset again with a masks array per split")
    loaded = [_load_model(run_dir, label, device)]
    if compare_dir is not None:
        loaded.append(_load_model(compare_dir, compare_label, device))
        if loaded[0].label == loaded[1].label:
            loaded[0].label += " (model)"
            loaded[1].label += " (compare)"
    job = _Job(config, data_dir, device, loaded)
    out_dir.mkdir(parents=True, exist_ok=True)

    per_model, blocks = _score_splits(job)
    sanity, sanity_split = _sanity(job)
    faithfulness = _faithfulness(job)
    written = _figures(job, out_dir, per_model, blocks, sanity, sanity_split,
                       faithfulness) if config.figures else {}

    roles = dict(zip(("model", "compare"), loaded, strict=False))
    summary = {
        "method": config.method,
        "method_options": config.method_options(),
        "target": config.target,
        "config": asdict(config),
        "data": {"dir": str(data_dir), "dataset_id": meta.get("dataset_id")},
        "models": {role: {**entry.info, "label": entry.label, "splits": per_model[entry.label]}
                   for role, entry in roles.items()},
        "sanity": {role: sanity[entry.label].to_json()
                   for role, entry in roles.items() if entry.label in sanity},
        "faithfulness": {role: faithfulness[entry.label]
                         for role, entry in roles.items() if entry.label in faithfulness},
        "figures": written,
    }
    write_json(out_dir / EXPLAIN_JSON, summary)
    return summary


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a study summary needs: mean background share and pointing-game hit
    rate per model and split."""
    return {
        "method": summary["method"],
        **{role: {"label": entry["label"], **{
            split: {"background_share": metrics["background_share"]["mean"],
                    "pointing_game": metrics["pointing_game"],
                    "accuracy": metrics["accuracy"]}
            for split, metrics in entry["splits"].items()}}
           for role, entry in summary["models"].items()},
    }
