"""``shortcutlab probe``: visualize, measure and rank the units of a trained model.

For every probed layer: a visualization of each unit (ranked by color selectivity),
facets of its most polysemantic units, dataset exemplars, and the selectivity table;
for the model's output: class-logit visualizations and the two measured checks
(dominant color, grayscale-judge digit). Everything lands in ``probe.json``, ``probe.npz``
and PNG figures in the output directory.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shortcutlab import models
from shortcutlab.artifacts import save_npz, write_json
from shortcutlab.data import load_meta, load_split
from shortcutlab.data.dataset import dataset_classes, dataset_colors, tensor_to_images
from shortcutlab.errors import ShortcutlabError
from shortcutlab.probe import figures
from shortcutlab.probe.checks import class_logit_checks, dominant_colors
from shortcutlab.probe.grayscale import gray_classifier, judge_recipe
from shortcutlab.probe.inputs import resolve_data_dir
from shortcutlab.probe.objectives import Channel, ClassLogit, parse_objective
from shortcutlab.probe.params import color_correlation_sqrt
from shortcutlab.probe.selectivity import (
    balanced_images,
    color_grid,
    label_unit,
    layer_activations,
    polysemanticity,
    selectivity,
    top_exemplars,
)
from shortcutlab.probe.visualize import VisConfig, visualize


@dataclass(frozen=True)
class ProbeConfig:
    layers: tuple[str, ...] | None = None  # None: every conv and hidden FC layer
    max_units: int = 64                    # units visualized per layer (all are measured)
    vis: VisConfig = field(default_factory=lambda: VisConfig(steps=256, tv=0.05))
    facet_units: int = 4                   # most polysemantic units per layer shown in facets
    facets: int = 4
    diversity: float = 1.0
    logit_samples: int = 4                 # class-logit visualizations per class
    split: str = "val"                     # digits for the color grid and the exemplars
    per_digit: int = 10                    # color grid: digits per class (x 10 colors)
    exemplar_images: int = 3000
    exemplar_source: str = "balanced"      # balanced: the split's digits in random colors
    exemplars: int = 8
    judge: bool = True                     # run the grayscale judge of the source
    objectives: tuple[str, ...] = ()       # extra objectives, in parse_objective's syntax
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["vis"]["transforms"] = [repr(t) for t in self.vis.transforms]
        return data


def default_layers(model: nn.Module) -> list[str]:
    """Every Conv2d, and every Linear but the last (whose units are the class logits)."""
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return convs + linears[:-1]


def _layer_table(stats: dict[str, np.ndarray], poly: dict[str, np.ndarray],
                 color_names: list[str] | None = None) -> list[dict]:
    rows = []
    for unit in range(len(stats["color_index"])):
        row = {
            "unit": unit,
            "color_index": float(stats["color_index"][unit]),
            "color_eta2": float(stats["color_eta2"][unit]),
            "digit_eta2": float(stats["digit_eta2"][unit]),
            "preferred_color": int(stats["preferred_color"][unit]),
            "preferred_digit": int(stats["preferred_digit"][unit]),
            "variance": float(stats["variance"][unit]),
            "digit_entropy": float(poly["digit_entropy"][unit]),
            "color_entropy": float(poly["color_entropy"][unit]),
            "polysemanticity": float(poly["polysemanticity"][unit]),
        }
        row["label"] = label_unit(row["color_eta2"], row["digit_eta2"], row["preferred_color"],
                                  row["preferred_digit"], row["variance"], row["color_index"],
                                  *([color_names] if color_names else []))
        rows.append(row)
    return rows


def run_probe(run_dir: str | os.PathLike, out_dir: str | os.PathLike,
              data_dir: str | os.PathLike | None = None, config: ProbeConfig = ProbeConfig(),
              device: torch.device | str = "cpu", show_progress: bool = True) -> dict[str, Any]:
    """Probe the model in ``run_dir``; write ``probe.json``, ``probe.npz`` and figures."""
    out_dir = Path(out_dir)
    model = models.load(run_dir, device=device)
    data_dir = resolve_data_dir(run_dir, data_dir)
    layers = list(config.layers) if config.layers else default_layers(model)
    custom = [parse_objective(text) for text in config.objectives]
    for layer in layers + [name for o in custom for name in o.layers if name != "output"]:
        models.get_layer(model, layer)  # a clear error for a misspelled layer, before any work

    meta = load_meta(data_dir)
    classes = dataset_classes(meta)
    color_names, palette = dataset_colors(meta)
    grid = color_grid(data_dir, config.split, config.per_digit, seed=config.seed)
    exemplar_images, exemplar_labels, exemplar_colors = exemplar_set(
        data_dir, config.split, config.exemplar_source, config.exemplar_images, config.seed)
    color_sqrt = color_correlation_sqrt(exemplar_images)

    tables: dict[str, list[dict]] = {}
    stats_by_layer: dict[str, dict[str, np.ndarray]] = {}
    exemplar_index: dict[str, np.ndarray] = {}
    grid_acts = layer_activations(model, layers, grid.flat_images(), device=device)
    all_ex_acts = layer_activations(model, layers, exemplar_images, device=device)
    for layer in layers:
        stats = selectivity(grid_acts[layer].reshape(*grid.images.shape[:3], -1))
        ex_acts = all_ex_acts[layer]
        exemplar_index[layer] = top_exemplars(ex_acts, config.exemplars)
        poly = polysemanticity(exemplar_index[layer], exemplar_labels, exemplar_colors, classes)
        tables[layer] = _layer_table(stats, poly, color_names)
        stats_by_layer[layer] = stats

    # Units to draw: the most variable ones (a dead unit's picture says nothing).
    shown = {layer: _most_variable(tables[layer], config.max_units) for layer in layers}
    objectives = [Channel(layer, unit) for layer in layers for unit in shown[layer]]
    vis = visualize(model, objectives, config.vis, color_sqrt, device, show_progress=show_progress)
    unit_images = dict(zip([o.name for o in objectives], vis.images[:, 0], strict=True))
    unit_values = dict(zip([o.name for o in objectives], vis.values[:, 0], strict=True))

    facet_objectives = [Channel(layer, row["unit"]) for layer in layers
                        for row in _most_polysemantic(tables[layer], shown[layer],
                                                      config.facet_units)]
    facet_config = replace(config.vis, facets=config.facets, diversity=config.diversity,
                           seed=config.seed + 1)
    facet_vis = visualize(model, facet_objectives, facet_config, color_sqrt, device,
                          show_progress=show_progress) if facet_objectives else None

    logit_config = replace(config.vis, facets=config.logit_samples, diversity=0.0,
                           seed=config.seed + 2)
    logit_vis = visualize(model, [ClassLogit(c) for c in range(classes)], logit_config,
                          color_sqrt, device, show_progress=show_progress)
    logit_images = logit_vis.images.reshape(-1, *logit_vis.images.shape[2:])
    logit_classes = np.repeat(np.arange(classes), config.logit_samples)
    judge_model, judge_info = (gray_classifier(judge_recipe(data_dir),
                                               show_progress=show_progress)
                               if config.judge else (None, None))
    checks = class_logit_checks(logit_images, logit_classes, judge_model, model, palette,
                                color_names)
    if judge_info is not None:
        checks["gray_judge"] = {"test_accuracy": judge_info["test_accuracy"],
                                "trained_on": judge_info["trained_on"], "key": judge_info["key"]}

    custom_result = []
    if custom:
        custom_vis = visualize(model, custom, replace(facet_config, seed=config.seed + 3),
                               color_sqrt, device, show_progress=show_progress)
        figures.image_grid(custom_vis.images, out_dir / "custom.png", row_labels=custom_vis.names,
                           title="Custom objectives")
        custom_result = [{"objective": name, "values": [float(v) for v in values]}
                         for name, values in zip(custom_vis.names, custom_vis.values, strict=True)]

    for layer in layers:
        names = [Channel(layer, unit).name for unit in shown[layer]]
        dominant, share = dominant_colors(torch.stack([unit_images[n] for n in names]),
                                          palette)
        for unit, name, color, strength in zip(shown[layer], names, dominant, share, strict=True):
            row = tables[layer][unit]
            row["vis_dominant_color"] = int(color)
            row["vis_dominant_share"] = float(strength)
            row["vis_objective"] = float(unit_values[name])

    figure_files = _draw(out_dir, layers, tables, shown, unit_images, facet_vis, logit_vis,
                         checks, stats_by_layer, exemplar_images, exemplar_index, config,
                         palette)
    arrays = {f"vis/{layer}": tensor_to_images(torch.stack(
        [unit_images[Channel(layer, u).name] for u in shown[layer]])) for layer in layers}
    arrays.update({f"units/{layer}": np.asarray(shown[layer], dtype=np.int64)
                   for layer in layers})
    arrays["class_logits"] = tensor_to_images(logit_images)
    save_npz(out_dir / "probe.npz", **arrays)

    result = {
        "run_dir": str(Path(run_dir).resolve()),  # absolute: valid from any directory
        "data_dir": str(Path(data_dir).resolve()),
        "model": getattr(model, "spec", None),
        "config": config.to_dict(),
        "grid": {"split": config.split, "per_digit": config.per_digit,
                 "images": int(grid.flat_images().shape[0])},
        "class_logits": checks,
        "layers": {layer: _layer_summary(tables[layer], shown[layer]) for layer in layers},
        "custom_objectives": custom_result,
        "figures": figure_files + (["custom.png"] if custom else []),
    }
    write_json(out_dir / "probe.json", result)
    return result


def exemplar_set(data_dir: str | os.PathLike, split: str, source: str, limit: int,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, labels and colors to draw exemplars from.

    ``balanced`` (default) re-renders the split's digits in uniformly random colors, so an
    exemplar set can tell a color unit from a digit unit; ``split`` takes the split as it
    is (in a biased split most digits carry their own color).
    """
    if source == "balanced":
        return balanced_images(data_dir, split, limit=limit, seed=seed)
    if source != "split":
        raise ShortcutlabError(f"unknown exemplar source {source!r}; choose balanced or split")
    data = load_split(data_dir, split)
    if limit < len(data):
        data = data.subset(np.sort(np.random.default_rng(seed).choice(len(data), limit,
                                                                      replace=False)))
    return data.images, data.labels, data.colors


def _most_variable(table: list[dict], count: int) -> list[int]:
    order = sorted(table, key=lambda row: -row["variance"])
    return sorted(row["unit"] for row in order[:count])


def _most_polysemantic(table: list[dict], candidates: list[int], count: int) -> list[dict]:
    rows = [table[unit] for unit in candidates if table[unit]["label"] != "dead"]
    return sorted(rows, key=lambda row: -row["polysemanticity"])[:count]


def _layer_summary(table: list[dict], shown: list[int]) -> dict[str, Any]:
    alive = [row for row in table if row["label"] != "dead"]
    labels = [row["label"].split(":")[0] for row in alive]
    colored = [table[u] for u in shown
               if table[u]["label"].startswith("color:") and "vis_dominant_color" in table[u]]
    return {
        "units": len(table),
        "dead": len(table) - len(alive),
        "color_units": labels.count("color"),
        "digit_units": labels.count("digit"),
        "shape_units": labels.count("shape"),
        "mixed_units": labels.count("mixed"),
        "mean_color_index": float(np.mean([r["color_index"] for r in alive])) if alive else None,
        "mean_polysemanticity": (float(np.mean([r["polysemanticity"] for r in alive]))
                                 if alive else None),
        # do the pictures agree with the measurements? (color units only)
        "color_units_vis_agree": (float(np.mean([r["vis_dominant_color"] == r["preferred_color"]
                                                 for r in colored])) if colored else None),
        "ranked_by_color_index": sorted(table, key=lambda row: -row["color_index"]),
    }


def _caption(row: dict[str, Any]) -> str:
    return f"#{row['unit']} {row['label']}\nci {row['color_index']:.2f}"


def _draw(out_dir: Path, layers: list[str], tables: dict, shown: dict, unit_images: dict,
          facet_vis, logit_vis, checks: dict, stats_by_layer: dict,
          exemplar_images: np.ndarray, exemplar_index: dict, config: ProbeConfig,
          palette: np.ndarray | None = None) -> list[str]:
    files = []
    for layer in layers:
        ranked = sorted(shown[layer], key=lambda u: -tables[layer][u]["color_index"])
        images = torch.stack([unit_images[Channel(layer, u).name] for u in ranked])
        name = f"vis_{layer}.png"
        figures.image_grid(images, out_dir / name, [_caption(tables[layer][u]) for u in ranked],
                           columns=8, title=f"{layer}: what each unit wants to see "
                           "(ranked by color index ci, 1 = reads color only)")
        files.append(name)
        picked = _exemplar_units(tables[layer], list(range(len(tables[layer]))))
        name = f"exemplars_{layer}.png"
        figures.image_grid(exemplar_images[exemplar_index[layer][picked]], out_dir / name,
                           row_labels=[_caption(tables[layer][u]).replace("\n", " ")
                                       for u in picked],
                           title=f"{layer}: top-{config.exemplars} exemplars "
                           f"({config.split}, {config.exemplar_source})")
        files.append(name)
    if facet_vis is not None:
        name = "facets.png"
        facet_labels = [f"{n}\n{tables[n.rsplit(':', 1)[0]][int(n.rsplit(':', 1)[1])]['label']}"
                        for n in facet_vis.names]
        figures.image_grid(facet_vis.images, out_dir / name, row_labels=facet_labels,
                           title="Facets of the most polysemantic units (diversity term)")
        files.append(name)
    figures.selectivity_scatter(
        {layer: {key: stats[key] for key in ("digit_eta2", "color_eta2", "preferred_color")}
         for layer, stats in stats_by_layer.items()}, out_dir / "selectivity.png",
        palette=palette)
    files.append("selectivity.png")
    titles = []
    for row in checks["per_image"]:
        text = f"{row['class']}: {row['dominant_color']}"
        if "judge_digit" in row:
            text += f"\nlooks like {row['judge_digit']}"
        titles.append(text)
    samples = logit_vis.images.shape[1]
    figures.image_grid(logit_vis.images.transpose(0, 1), out_dir / "class_logits.png",
                       titles=[titles[c * samples + s] for s in range(samples)
                               for c in range(len(logit_vis.images))],
                       title=f"Class-logit visualizations: dominant color matches the class "
                       f"in {checks['dominant_color_match']:.0%}"
                       + (f", grayscale judge reads the class in {checks['gray_judge_match']:.0%}"
                          if "gray_judge_match" in checks else "")
                       + (f", the model keeps it after recoloring in "
                          f"{checks['recolored_kept']:.0%}" if "recolored_kept" in checks
                          else ""))
    files.append("class_logits.png")
    return files


def _exemplar_units(table: list[dict], shown: list[int], count: int = 12) -> list[int]:
    """The most color-selective and the most digit-selective of the shown units."""
    alive = [table[u] for u in shown if table[u]["label"] != "dead"]
    by_color = sorted(alive, key=lambda row: -row["color_index"])
    half = count // 2
    picked = [row["unit"] for row in by_color[:half]]
    picked += [row["unit"] for row in by_color[::-1][:count - len(picked)]
               if row["unit"] not in picked]
    return picked
