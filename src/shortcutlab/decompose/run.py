"""``shortcutlab sae train|label|intervene``: an SAE for one layer of a trained model.

An SAE directory holds ``sae.pt`` (the state_dict) and ``sae.json`` (where it came from,
how it was trained, ``r2``, ``l0``, ``dead_fraction`` and the model's accuracy with the
layer replaced by its reconstruction); ``sae label`` adds ``labels.json`` and feature
cards, ``sae intervene`` adds ``intervene.json`` and its figure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shortcutlab import models
from shortcutlab.artifacts import load_torch, read_json, save_torch, write_json
from shortcutlab.data import load_meta, load_split
from shortcutlab.data.dataset import Split, dataset_colors
from shortcutlab.data.palette import COLOR_NAMES
from shortcutlab.decompose.activations import (
    EditedPredictions,
    FeatureEdit,
    collect_activations,
    feature_activations,
    feature_edit,
    fidelity,
    reconstruction_edit,
    resolve_mode,
)
from shortcutlab.decompose.sae import (
    DENSE_ABOVE,
    SAEConfig,
    SparseAutoencoder,
    sae_metrics,
    train_sae,
)
from shortcutlab.errors import ShortcutlabError
from shortcutlab.figures import save_figure
from shortcutlab.probe import figures
from shortcutlab.probe.inputs import resolve_data_dir
from shortcutlab.probe.selectivity import (
    balanced_images,
    color_grid,
    label_unit,
    polysemanticity,
    selectivity,
    top_exemplars,
)

SAE_FILE = "sae.pt"
SAE_META = "sae.json"
LABELS = "labels.json"
ACCURACY_SPLITS = ("val", "test_easy", "test_hard")


# --------------------------------------------------------------------------- train


def train_on_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike,
                 data_dir: str | os.PathLike | None = None, layer: str | None = None,
                 mode: str = "auto", config: SAEConfig | None = None, images: int = 5000,
                 eval_images: int = 2000, split_images: int = 0,
                 device: torch.device | str = "cpu", show_progress: bool = True
                 ) -> dict[str, Any]:
    """Train an SAE on ``layer`` of the model in ``run_dir``; write ``sae.pt`` and ``sae.json``.

    ``eval_images`` validation images give the SAE's metrics and fidelity; the accuracy with
    the layer reconstructed reads the first ``split_images`` images of every split in
    ``ACCURACY_SPLITS`` (0: the whole split)."""
    config = config or SAEConfig()
    out_dir = Path(out_dir)
    model = models.load(run_dir, device=device)
    data_dir = resolve_data_dir(run_dir, data_dir)
    layer = layer or models.last_conv(model)[0]
    models.get_layer(model, layer)
    mode = resolve_mode(model, layer, mode)
    rng = np.random.default_rng(config.seed)
    train = load_split(data_dir, "train")
    train_index = np.sort(rng.choice(len(train), min(images, len(train)), replace=False))
    acts = collect_activations(model, layer, train.images[train_index], mode, device=device)
    val = load_split(data_dir, "val")
    val_acts = collect_activations(model, layer, val.images[:eval_images], mode, device=device)
    sae, history = train_sae(acts, config, show_progress=show_progress, device=device)
    metrics = sae_metrics(sae, val_acts.to(device))
    density = metrics.pop("density")
    eval_split = val.subset(np.arange(min(eval_images, len(val))))
    splice = fidelity(model, sae, layer, mode, eval_split.images, eval_split.labels,
                      device=device)

    accuracy = {}
    runner = EditedPredictions(model, layer, device=device)
    for split_name in ACCURACY_SPLITS:
        split = _first(load_split(data_dir, split_name), split_images)
        original = runner.predict(split.images, key=split_name)
        rebuilt = runner.predict(split.images, reconstruction_edit(sae, mode), key=split_name)
        accuracy[split_name] = {
            "original": float((original == split.labels).mean()),
            "reconstructed": float((rebuilt == split.labels).mean()),
            "agreement": float((original == rebuilt).mean()),
            "images": len(split),
        }
        runner.forget(split_name)  # one split's layer outputs held at a time
    drop = accuracy["val"]["original"] - accuracy["val"]["reconstructed"]
    state = {key: value.detach().cpu() for key, value in sae.state_dict().items()}
    digest = save_torch(out_dir / SAE_FILE, state)
    meta = {
        # absolute, so that the SAE directory works from any working directory
        "run_dir": str(Path(run_dir).resolve()),
        "data_dir": str(Path(data_dir).resolve()),
        "dataset_id": load_meta(data_dir).get("dataset_id"),
        "model": getattr(model, "spec", None),
        "layer": layer,
        "mode": mode,
        "sae": sae.spec,
        "config": config.to_dict(),
        "train_images": len(train_index),
        "train_vectors": len(acts),
        "eval": {"split": "val", "images": int(min(eval_images, len(val)))},
        **metrics,
        "dense_above": DENSE_ABOVE,
        "fidelity": splice,
        "accuracy": accuracy,
        "targets": {
            "r2_at_least_0.9": metrics["r2"] >= 0.9,
            "dead_fraction_under_0.1": metrics["dead_fraction"] < 0.1,
            "val_accuracy_within_2_points": drop <= 0.02,
            "fidelity_at_least_0.95": splice["score"] is not None and splice["score"] >= 0.95,
        },
        "density": density,
        "weights": SAE_FILE,
        "sha256": digest,
        "history": history,
    }
    write_json(out_dir / SAE_META, meta)
    _plot_training(history, out_dir / "sae_training.png", meta)
    _plot_density(density, out_dir / "sae_density.png", meta)
    return meta


def _first(split: Split, images: int) -> Split:
    """The first ``images`` images of ``split`` in split order (0: all of them)."""
    return split.subset(slice(0, images)) if 0 < images < len(split) else split


def load_sae(sae_dir: str | os.PathLike, device: torch.device | str = "cpu"
             ) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """An SAE directory's autoencoder (checksum verified, weights only) and its record."""
    sae_dir = Path(sae_dir)
    if not (sae_dir / SAE_META).is_file():
        raise ShortcutlabError(f"{sae_dir} holds no SAE ({SAE_META} is missing); "
                               "train one with `shortcutlab sae train RUN --out DIR`")
    meta = read_json(sae_dir / SAE_META)
    state = load_torch(sae_dir / meta.get("weights", SAE_FILE), expected_sha256=meta.get("sha256"))
    spec = meta["sae"]
    sae = SparseAutoencoder(spec["d_in"], spec["d_hidden"], spec["activation"], spec["k"])
    # SAEs saved before the thresholds existed carry neither (ReLU and TopK ignore them)
    for name in ("threshold", "log_threshold"):
        state.setdefault(name, sae.state_dict()[name])
    sae.load_state_dict(state)
    return sae.to(device).eval(), meta


def feature_direction(sae_dir: str | os.PathLike, feature: int) -> Any:
    """An SAE feature's decoder row as a :class:`~shortcutlab.probe.objectives.Direction`
    of the layer the SAE reads: what the feature writes into the model."""
    from shortcutlab.probe.objectives import Direction

    sae, meta = load_sae(sae_dir)
    if not 0 <= feature < sae.d_hidden:
        raise ShortcutlabError(f"the SAE has {sae.d_hidden} features; feature {feature} "
                               "does not exist")
    if meta["mode"] == "flat" and sae.d_in != sae.W_dec.shape[1]:
        raise ShortcutlabError("this SAE's inputs are not one layer's channels")
    return Direction(meta["layer"], sae.W_dec[feature].detach().clone(), f"sae feature {feature}")


def _context(sae_dir: str | os.PathLike, device) -> tuple:
    sae, meta = load_sae(sae_dir, device)
    model = models.load(meta["run_dir"], device=device)
    data_dir = resolve_data_dir(
        meta["run_dir"], meta["data_dir"],
        remedy="the SAE was trained on it (sae.json); rebuild that dataset there, or train "
               "the SAE again with `sae train --data DIR`")
    return sae, meta, model, data_dir


# --------------------------------------------------------------------------- label


def label_features(sae_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                   per_digit: int = 10, exemplar_images: int = 3000, exemplars: int = 8,
                   cards: int = 16, seed: int = 0, device: torch.device | str = "cpu"
                   ) -> dict[str, Any]:
    """Name every feature by what explains its activation on the color grid; draw cards."""
    out_dir = Path(out_dir or sae_dir)
    sae, meta, model, data_dir = _context(sae_dir, device)
    layer, mode = meta["layer"], meta["mode"]
    color_names, palette = dataset_colors(load_meta(data_dir))
    grid = color_grid(data_dir, "val", per_digit, seed=seed)
    acts = feature_activations(model, sae, layer, grid.flat_images(), mode, device=device)
    stats = selectivity(acts.reshape(*grid.images.shape[:3], -1))
    frequency = (acts > 0).mean(axis=0)
    images, labels, colors = balanced_images(data_dir, "val", limit=exemplar_images, seed=seed)
    ex_acts = feature_activations(model, sae, layer, images, mode, device=device)
    exemplar_index = top_exemplars(ex_acts, exemplars)
    poly = polysemanticity(exemplar_index, labels, colors, len(color_names))

    rows = []
    for feature in range(sae.d_hidden):
        row = {
            "feature": feature,
            "frequency": float(frequency[feature]),
            "color_index": float(stats["color_index"][feature]),
            "color_eta2": float(stats["color_eta2"][feature]),
            "digit_eta2": float(stats["digit_eta2"][feature]),
            "preferred_color": int(stats["preferred_color"][feature]),
            "preferred_digit": int(stats["preferred_digit"][feature]),
            "color_means": [float(v) for v in stats["color_means"][feature]],
            "digit_means": [float(v) for v in stats["digit_means"][feature]],
            "polysemanticity": float(poly["polysemanticity"][feature]),
            "exemplars": [int(i) for i in exemplar_index[feature]],
        }
        row["label"] = ("dead" if frequency[feature] == 0 else
                        label_unit(row["color_eta2"], row["digit_eta2"], row["preferred_color"],
                                   row["preferred_digit"], float(stats["variance"][feature]),
                                   row["color_index"], color_names))
        rows.append(row)
    kinds = [row["label"].split(":")[0] for row in rows]
    color_features = {name: [r["feature"] for r in sorted(rows, key=lambda r: -r["color_eta2"])
                             if r["label"] == f"color:{name}"] for name in color_names}
    result = {
        "sae_dir": str(sae_dir),
        "layer": layer,
        "mode": mode,
        "grid": {"split": "val", "per_digit": per_digit},
        # the images ``exemplars`` index: balanced_images(data_dir, split, limit, seed)
        "exemplar_images": {"split": "val", "limit": exemplar_images, "seed": seed},
        "summary": {kind: kinds.count(kind)
                    for kind in ("color", "digit", "shape", "mixed", "dead")},
        "color_names": color_names,
        "color_features": color_features,
        "colors_with_a_feature": sum(bool(v) for v in color_features.values()),
        "features": rows,
    }
    write_json(out_dir / LABELS, result)
    chosen = _card_features(rows, cards, color_names)
    _plot_cards(rows, chosen, images[exemplar_index[chosen]], out_dir / "feature_cards.png",
                f"SAE features of {layer} ({mode}): exemplars and activation profiles",
                palette, color_names)
    alive = np.array([row["label"] != "dead" for row in rows])
    figures.selectivity_scatter(
        {f"SAE features of {layer}": {key: stats[key][alive] for key in
                                      ("digit_eta2", "color_eta2", "preferred_color")}},
        out_dir / "feature_selectivity.png", title="What SAE features read", palette=palette)
    return result


def _card_features(rows: list[dict], count: int,
                   color_names: Sequence[str] = COLOR_NAMES) -> list[int]:
    """The strongest color feature of each color, then the most digit-selective, then mixed."""
    alive = [r for r in rows if r["label"] != "dead"]
    chosen: list[int] = []
    for name in color_names:
        own = [r for r in alive if r["label"] == f"color:{name}"]
        if own:
            chosen.append(max(own, key=lambda r: r["color_eta2"])["feature"])
    for r in sorted(alive, key=lambda r: -r["digit_eta2"]):
        if len(chosen) >= count:
            break
        if r["feature"] not in chosen:
            chosen.append(r["feature"])
    return chosen[:count]


# --------------------------------------------------------------------------- intervene


def intervene(sae_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
              strengths: Sequence[float] = (1.0, 2.0, 4.0),
              edits: Sequence[FeatureEdit] = (), split: str = "test_hard",
              boost_images: int = 1000, split_images: int = 0, seed: int = 0,
              device: torch.device | str = "cpu") -> dict[str, Any]:
    """The headline experiments (ablate the color features on the first ``split_images``
    images of every split in ``ACCURACY_SPLITS``, 0: all of them; boost one color's
    features on ``boost_images`` other digits of test_easy per color), and optionally the
    effect of user ``edits`` on ``split``."""
    out_dir = Path(out_dir or sae_dir)
    labels_path = Path(sae_dir) / LABELS
    if not labels_path.is_file():
        label_features(sae_dir, device=device)
    labels = read_json(labels_path)
    sae, meta, model, data_dir = _context(sae_dir, device)
    layer, mode = meta["layer"], meta["mode"]
    rows = labels["features"]
    color_names = labels.get("color_names") or list(COLOR_NAMES)  # older labels: the ten
    color_features = [f for name in color_names for f in labels["color_features"][name]]

    runner = EditedPredictions(model, layer, device=device)

    def run(split_images: np.ndarray, items: Sequence[FeatureEdit], key: str,
            rows: np.ndarray | None = None) -> np.ndarray:
        return runner.predict(split_images, feature_edit(sae, mode, items), key=key, rows=rows)

    ablation: dict[str, Any] = {"features": color_features, "splits": {}}
    for split_name in ACCURACY_SPLITS:
        data = _first(load_split(data_dir, split_name), split_images)
        before = runner.predict(data.images, key=split_name)
        after = run(data.images, [FeatureEdit(f, 0.0) for f in color_features], split_name)
        ablation["splits"][split_name] = {
            "accuracy_before": float((before == data.labels).mean()),
            "accuracy_after": float((after == data.labels).mean()),
            "color_following_before": float((before == data.colors).mean()),
            "color_following_after": float((after == data.colors).mean()),
            "images": len(data),
        }
        if split_name != "test_easy":  # the boosts below run on test_easy again
            runner.forget(split_name)

    easy = _first(load_split(data_dir, "test_easy"), split_images)
    easy_before = runner.predict(easy.images, key="test_easy")
    boost: dict[str, Any] = {"split": "test_easy", "strengths": list(strengths),
                             "images_per_color": boost_images, "colors": {}}
    rng = np.random.default_rng(seed)
    for color, name in enumerate(color_names):
        features = labels["color_features"][name]
        if not features:
            continue
        others = np.flatnonzero(easy.labels != color)
        others = np.sort(rng.choice(others, min(boost_images, len(others)), replace=False))
        baseline = float((easy_before[others] == color).mean())
        rates = []
        for strength in strengths:
            items = [FeatureEdit(f, 1.0, add=strength * rows[f]["color_means"][color])
                     for f in features]
            rates.append(float((run(easy.images, items, "test_easy", others) == color).mean()))
        boost["colors"][name] = {"features": features, "baseline": baseline, "flip_rate": rates}
    if boost["colors"]:
        boost["mean_flip_rate"] = [float(np.mean([c["flip_rate"][i]
                                                  for c in boost["colors"].values()]))
                                   for i in range(len(strengths))]

    result: dict[str, Any] = {"sae_dir": str(sae_dir), "layer": layer, "mode": mode,
                              "ablate_color_features": ablation, "boost_color_features": boost}
    if edits:
        data = load_split(data_dir, split)
        before = runner.predict(data.images, key=split)
        after = run(data.images, list(edits), split)
        result["custom"] = {
            "split": split,
            "edits": [vars(e) for e in edits],
            "accuracy_before": float((before == data.labels).mean()),
            "accuracy_after": float((after == data.labels).mean()),
            "changed_predictions": float((before != after).mean()),
        }
    write_json(out_dir / "intervene.json", result)
    _plot_interventions(result, out_dir / "interventions.png",
                        dict(zip(*dataset_colors(load_meta(data_dir)), strict=True)))
    return result


def parse_edit(text: str) -> FeatureEdit:
    """``F=S`` (scale feature F by S) or ``F+A`` (add A to it)."""
    try:
        if "=" in text:
            feature, scale = text.split("=", 1)
            return FeatureEdit(int(feature), scale=float(scale))
        if "+" in text:
            feature, add = text.split("+", 1)
            return FeatureEdit(int(feature), add=float(add))
    except ValueError:
        pass
    raise ShortcutlabError(f"cannot read edit {text!r}; write F=SCALE (0 ablates) or F+AMOUNT")


# --------------------------------------------------------------------------- figures


def _plot_training(history: list[dict], path: Path, meta: dict) -> None:
    plt = figures.pyplot()
    steps = [h["step"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 2.6))
    left.plot(steps, [h["mse"] for h in history], label="reconstruction (MSE)")
    left.plot(steps, [h["loss"] for h in history], label="total loss", alpha=0.7)
    left.set_yscale("log")
    left.set_xlabel("step", fontsize=8)
    left.legend(fontsize=7)
    right.plot(steps, [h["l0"] for h in history], color="C2")
    right.set_xlabel("step", fontsize=8)
    right.set_ylabel("features on (L0)", fontsize=8)
    for axis in (left, right):
        axis.tick_params(labelsize=7)
    fig.suptitle(f"SAE on {meta['layer']} ({meta['mode']}): r2 {meta['r2']:.3f}, "
                 f"L0 {meta['l0']:.1f}, dead {meta['dead_fraction']:.1%}", fontsize=9)
    figures.tight_under_title(fig)
    save_figure(fig, path)


def _plot_density(density: list[float], path: Path, meta: dict) -> None:
    """How often each feature is on: log10 density, dead ones counted apart."""
    plt = figures.pyplot()
    values = np.asarray(density)
    alive = values[values > 0]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if alive.size:
        ax.hist(np.log10(alive), bins=40, color="tab:blue")
    ax.axvline(np.log10(DENSE_ABOVE), color="tab:red", linestyle="--", linewidth=1,
               label=f"dense above {DENSE_ABOVE:g}")
    ax.set_xlabel("log10 share of the inputs a feature is on for")
    ax.set_ylabel("features")
    ax.set_title(f"feature density on {meta['eval']['split']}: {int((values == 0).sum())} dead "
                 f"of {values.size}, {int((values > DENSE_ABOVE).sum())} dense", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _plot_cards(rows: list[dict], chosen: list[int], exemplars: np.ndarray, path: Path,
                title: str, palette: np.ndarray | None = None,
                color_names: Sequence[str] = COLOR_NAMES) -> None:
    plt = figures.pyplot()
    if not chosen:
        return
    # Three axes for the whole figure (exemplar strips, color bars, digit bars, one row per
    # feature): an axes per exemplar and per bar chart cost most of the labelling time.
    count = len(chosen)
    columns = exemplars.shape[1]
    fig, (strips, by_color, by_digit) = plt.subplots(
        1, 3, figsize=(columns * 0.55 + 4.6, 1.0 * count + 0.9),
        gridspec_kw={"width_ratios": [columns * 0.55, 2.3, 2.3]})
    for row_number, feature in enumerate(chosen):
        row = rows[feature]
        for column, image in enumerate(figures.as_hwc(exemplars[row_number])):
            strips.imshow(image, interpolation="nearest", aspect="auto",
                          extent=(column + 0.05, column + 0.95, row_number + 0.95,
                                  row_number + 0.3))
        strips.text(0.05, row_number + 0.25, f"#{feature} {row['label']} (on "
                    f"{row['frequency']:.0%})", fontsize=6.5, va="bottom")
    strips.set_xlim(0, columns)
    strips.set_axis_off()
    for axis, kind, key in ((by_color, "color", "color_means"),
                            (by_digit, "digit", "digit_means")):
        values = np.array([rows[feature][key] for feature in chosen], dtype=float)
        positions = np.arange(values.shape[1])
        bar_colors = figures.palette_rgb(palette) if kind == "color" else "0.45"
        for row_number, row_values in enumerate(values):
            peak = float(np.abs(row_values).max()) or 1.0
            axis.bar(positions, -0.6 * row_values / peak, 0.8, bottom=row_number + 0.95,
                     color=bar_colors, edgecolor="black" if kind == "color" else None,
                     linewidth=0.3)
            axis.text(positions[-1] + 0.6, row_number + 0.35, f"max {peak:.2g}", fontsize=5,
                      ha="right")
        names = [name[:3] for name in color_names] if kind == "color" else \
            [str(p) for p in positions]
        axis.set_xticks(positions, names, fontsize=5, rotation=90 if kind == "color" else 0)
        axis.set_yticks([])
        axis.set_title(f"mean activation by {kind} (each row to its max)", fontsize=6)
        for spine in ("left", "right", "top"):
            axis.spines[spine].set_visible(False)
    for axis in (strips, by_color, by_digit):
        axis.set_ylim(count, 0)
    fig.suptitle(title, fontsize=9)
    figures.tight_under_title(fig)
    save_figure(fig, path)


def _plot_interventions(result: dict, path: Path,
                        colors: dict[str, np.ndarray] | None = None) -> None:
    """``colors``: each color name's RGB in [0, 1] (the dataset's palette)."""
    plt = figures.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
    splits = result["ablate_color_features"]["splits"]
    names = list(splits)
    positions = np.arange(len(names))
    left.bar(positions - 0.2, [splits[n]["accuracy_before"] for n in names], 0.4, label="model")
    left.bar(positions + 0.2, [splits[n]["accuracy_after"] for n in names], 0.4,
             label=f"{len(result['ablate_color_features']['features'])} color features ablated")
    left.set_xticks(positions, names, fontsize=8)
    left.set_ylim(0, 1)
    left.set_ylabel("accuracy", fontsize=8)
    left.legend(fontsize=7)
    boost = result["boost_color_features"]
    for name, entry in boost["colors"].items():
        right.plot([0, *boost["strengths"]], [entry["baseline"], *entry["flip_rate"]],
                   marker="o", color=None if colors is None else colors.get(name), label=name)
    right.set_xlabel("boost (x the feature's mean activation on its color)", fontsize=8)
    right.set_ylabel("predicted as the color's class", fontsize=8)
    right.set_ylim(0, 1)
    if boost["colors"]:
        right.legend(fontsize=6, ncol=2)
    for axis in (left, right):
        axis.tick_params(labelsize=7)
    fig.suptitle("Dialing SAE color features: ablate all, or boost one color on other digits",
                 fontsize=9)
    figures.tight_under_title(fig)
    save_figure(fig, path)
