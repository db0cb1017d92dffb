"""The explorer's engine: one dataset, the models given, and every question the page asks.

Everything here is plain numpy and torch, so it is tested without a web server; the web
app (:mod:`.app`) only validates requests and turns answers into JSON. An image is
described by an :class:`ImageSpec` (a dataset image, or a grayscale drawing, with a
color and a style) and rendered by the generator's own renderer, so a "red 1" here is
a red 1 as the dataset draws it.
"""

from __future__ import annotations

import base64
import io
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from shortcutlab import models
from shortcutlab.artifacts import read_json
from shortcutlab.data.build import MASK_THRESHOLD
from shortcutlab.data.dataset import (
    SPLITS,
    Split,
    class_names,
    dataset_classes,
    dataset_colors,
    images_to_tensor,
    load_meta,
    load_split,
)
from shortcutlab.data.recolor import render_like, render_problem, split_digits
from shortcutlab.data.styles import STYLES
from shortcutlab.errors import ShortcutlabError

SIZE = 28
TOP_FEATURES = 8
MAX_SCALE = 5.0
HEATMAP_METHODS = ("gradcam", "lrp")


class RequestError(ShortcutlabError):
    """A request the explorer cannot answer as asked (the app answers it with a 400)."""


@dataclass(frozen=True)
class ImageSpec:
    """Which image to show: a dataset image (``split`` and ``index``) or a drawing
    (``gray``, 28 x 28 levels 0-255 with 255 the ink), in ``color`` (a palette index;
    None keeps a dataset image's own) and ``style`` (None: the dataset's), with the
    background texture drawn from stream ``texture``."""

    split: str | None = None
    index: int | None = None
    gray: tuple[int, ...] | None = None
    color: int | None = None
    style: str | None = None
    texture: int = 0


@dataclass
class ExploredModel:
    """One model of the page: its network and, when it has one, its SAE and labels."""

    label: str
    run_dir: Path
    model: nn.Module
    sae: Any = None
    sae_meta: dict[str, Any] = field(default_factory=dict)
    feature_labels: list[str] = field(default_factory=list)
    lrp_problem: str | None = None


def _png(rgb: np.ndarray) -> str:
    """A uint8 (H, W, 3|4) array as a PNG data URI."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _heatmap_rgba(heatmap: np.ndarray, signed: bool) -> np.ndarray:
    """A map as an RGBA overlay: red for evidence for the class, blue against it, the
    opacity growing with the value (scaled to the map's own largest magnitude)."""
    scale = float(np.abs(heatmap).max())
    value = heatmap / scale if scale > 0 else np.zeros_like(heatmap)
    if not signed:
        value = np.clip(value, 0, 1)
    rgba = np.zeros((*heatmap.shape, 4), dtype=np.uint8)
    positive, negative = value > 0, value < 0
    rgba[positive] = (255, 40, 0, 0)
    rgba[negative] = (0, 90, 255, 0)
    rgba[..., 3] = np.round(np.sqrt(np.abs(value)) * 235).astype(np.uint8)
    return rgba


class Explorer:
    """The models of ``runs`` (label -> run directory) on the dataset ``data_dir``.

    ``saes`` maps a label to its SAE directory (the SAE's ``labels.json``, when it was
    labelled, names the features). Every model and SAE is loaded from its directory with
    its checksum verified and weights only. One lock serializes the requests: the
    heatmaps and SAE edits hook the models for the length of one call.
    """

    def __init__(self, data_dir: str | os.PathLike, runs: dict[str, str | os.PathLike],
                 saes: dict[str, str | os.PathLike] | None = None, *,
                 device: torch.device | str = "cpu", confidence: float = 0.9,
                 attack_steps: int = 20, precision: float = 0.005) -> None:
        if not runs:
            raise ShortcutlabError("the explorer needs at least one run directory")
        self.data_dir = Path(data_dir)
        self.meta = load_meta(self.data_dir)
        self.device = torch.device(device)
        self.classes = dataset_classes(self.meta)
        self.class_names = class_names(self.meta)
        self.color_names, self.palette = dataset_colors(self.meta)
        self.render_problem = render_problem(self.data_dir)  # None: images can be recolored
        self.renderable = self.render_problem is None
        self.style = (self.meta.get("config") or {}).get("style") if self.renderable else None
        self.confidence = confidence
        self.attack_steps = attack_steps
        self.precision = precision
        self._lock = threading.Lock()
        self._splits: dict[str, Split] = {}
        self._digits: dict[str, np.ndarray] = {}
        self.models: dict[str, ExploredModel] = {}
        for label, run_dir in runs.items():
            self.models[label] = self._load(label, Path(run_dir), (saes or {}).get(label))

    # ------------------------------------------------------------------ loading

    def _load(self, label: str, run_dir: Path, sae_dir: str | os.PathLike | None
              ) -> ExploredModel:
        from shortcutlab.explain.relevance import check_model

        model = models.load(run_dir, self.device)
        entry = ExploredModel(label, run_dir, model)
        try:
            check_model(model, torch.zeros(1, 3, SIZE, SIZE, device=self.device))
        except ShortcutlabError as exc:
            entry.lrp_problem = str(exc)
        if sae_dir is not None:
            from shortcutlab.decompose.run import LABELS, load_sae

            entry.sae, entry.sae_meta = load_sae(sae_dir, self.device)
            labels_path = Path(sae_dir) / LABELS
            if labels_path.is_file():
                rows = read_json(labels_path).get("features", [])
                entry.feature_labels = [str(row.get("label", "")) for row in rows]
        return entry

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise RequestError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        if name not in self._splits:
            self._splits[name] = load_split(self.data_dir, name)
        return self._splits[name]

    def _gray_of(self, split: str, index: int) -> np.ndarray:
        """The source digit a dataset image was rendered from."""
        if split not in self._digits:
            self._digits[split] = split_digits(self.data_dir, split)
        return self._digits[split][index]

    # ------------------------------------------------------------------ facts

    def info(self) -> dict[str, Any]:
        """What the page needs to draw its controls."""
        return {
            "dataset": str(self.data_dir),
            "classes": self.classes,
            "class_names": self.class_names,
            "color_names": self.color_names,
            "palette": [[round(255 * float(v)) for v in color] for color in self.palette],
            "styles": list(STYLES.names()) if self.renderable else [],
            "style": self.style,
            "renderable": self.renderable,
            "splits": {name: len(self.split(name)) for name in SPLITS},
            "models": [{"label": m.label, "run": str(m.run_dir), "sae": m.sae is not None,
                        "lrp": m.lrp_problem is None, "lrp_problem": m.lrp_problem}
                       for m in self.models.values()],
            "confidence": self.confidence,
        }

    def sample(self, split: str, label: int | None = None, index: int | None = None,
               seed: int = 0) -> dict[str, Any]:
        """A dataset image: ``index`` itself, or one of class ``label`` (or of any class)
        drawn with ``seed``."""
        data = self.split(split)
        if index is None:
            pool = np.arange(len(data))
            if label is not None:
                self._check_class(label, "label")
                pool = np.flatnonzero(data.labels == label)
                if pool.size == 0:
                    raise RequestError(f"{split} has no image of class {label}")
            index = int(np.random.default_rng(seed).choice(pool))
        self._check_index(split, index)
        return {"split": split, "index": int(index), "label": int(data.labels[index]),
                "color": int(data.colors[index])}

    # ------------------------------------------------------------------ checks

    def _check_class(self, value: int, what: str) -> None:
        if not 0 <= value < self.classes:
            raise RequestError(f"{what} {value} is not a class; classes are 0-{self.classes - 1}")

    def _check_index(self, split: str, index: int) -> None:
        size = len(self.split(split))
        if not 0 <= index < size:
            raise RequestError(f"{split} has {size} images; index {index} is out of range")

    def model(self, label: str) -> ExploredModel:
        if label not in self.models:
            raise RequestError(f"unknown model {label!r}; choose one of "
                               f"{', '.join(self.models)}")
        return self.models[label]

    # ------------------------------------------------------------------ images

    def image(self, spec: ImageSpec) -> tuple[Tensor, np.ndarray, dict[str, Any]]:
        """The image (1, 3, 28, 28) on the device, its digit mask (28, 28) and what it is."""
        about: dict[str, Any] = {}
        if spec.gray is not None:
            if spec.split is not None or spec.index is not None:
                raise RequestError("give either a drawing (gray) or a dataset image "
                                   "(split and index), not both")
            gray = np.asarray(spec.gray, dtype=np.int64)
            if gray.size != SIZE * SIZE or gray.min() < 0 or gray.max() > 255:
                raise RequestError(f"a drawing is {SIZE * SIZE} gray levels from 0 to 255")
            gray = gray.reshape(SIZE, SIZE).astype(np.uint8)
            if spec.color is None:
                raise RequestError("a drawing needs a color (a palette index)")
            stored = None
            about["source"] = "drawing"
        else:
            if spec.split is None or spec.index is None:
                raise RequestError("name a dataset image (split and index) or send a drawing")
            data = self.split(spec.split)
            self._check_index(spec.split, spec.index)
            stored = (data.images[spec.index], data.masks[spec.index])
            about.update(source="dataset", split=spec.split, index=spec.index,
                         label=int(data.labels[spec.index]),
                         stored_color=int(data.colors[spec.index]))
            gray = None
        if spec.color is not None and not 0 <= spec.color < len(self.palette):
            raise RequestError(f"color {spec.color} is not in the palette (0-"
                               f"{len(self.palette) - 1})")
        if spec.style is not None and spec.style not in STYLES:
            raise RequestError(f"unknown style {spec.style!r}; choose one of "
                               f"{', '.join(STYLES.names())}")
        keep_stored = stored is not None and spec.color is None and spec.style is None
        if keep_stored:
            rgb, mask = stored
            about["color"] = about["stored_color"]
        else:
            if self.render_problem is not None:
                raise RequestError(f"{self.render_problem}; a dataset image can only be shown "
                                   "as stored")
            if gray is None:
                gray = self._gray_of(spec.split, spec.index)
            color = spec.color if spec.color is not None else about["stored_color"]
            rgb = render_like(self.meta, gray[None], np.array([color]), spec.texture,
                              spec.style)[0]
            mask = gray >= MASK_THRESHOLD
            about["color"] = int(color)
        about["style"] = spec.style or self.style
        x = images_to_tensor(rgb[None], self.device)
        return x, np.asarray(mask, dtype=bool), about

    # ------------------------------------------------------------------ answers

    def predict(self, x: Tensor, edits: dict[str, list[tuple[int, float]]] | None = None
                ) -> dict[str, dict[str, Any]]:
        """Every model's class probabilities, with the SAE features of ``edits`` (label
        -> [(feature, scale)]) scaled (0 ablates; the reconstruction error is kept)."""
        from shortcutlab.decompose.activations import FeatureEdit, edited

        edits = edits or {}
        for label in edits:
            self.model(label)
        out = {}
        with self._lock, torch.no_grad():
            for label, entry in self.models.items():
                wanted = edits.get(label) or []
                if wanted and entry.sae is None:
                    raise RequestError(f"model {label!r} has no SAE to edit")
                changes = [FeatureEdit(int(f), float(s)) for f, s in wanted]
                for item in changes:
                    if not 0 <= item.feature < entry.sae.d_hidden:
                        raise RequestError(f"the SAE of {label!r} has {entry.sae.d_hidden} "
                                           f"features; feature {item.feature} does not exist")
                    if not 0.0 <= item.scale <= MAX_SCALE:
                        raise RequestError(f"a feature's scale is between 0 and {MAX_SCALE}")
                if changes:
                    with edited(entry.model, entry.sae, entry.sae_meta["layer"],
                                entry.sae_meta["mode"], changes):
                        logits = entry.model(x)
                else:
                    logits = entry.model(x)
                probs = torch.softmax(logits.float(), dim=1)[0].cpu()
                out[label] = {"probs": [float(p) for p in probs],
                              "predicted": int(probs.argmax())}
        return out

    def analyze(self, spec: ImageSpec, target: int | None = None,
                edits: dict[str, list[tuple[int, float]]] | None = None) -> dict[str, Any]:
        """What an image change shows: the image, every model's probabilities (with
        ``edits``), its Grad-CAM and LRP evidence and its most active SAE features."""
        x, mask, about = self.image(spec)
        predictions = self.predict(x, edits)
        evidence = self.evidence(x, mask, target)
        features = self.features(x)
        return {
            "image": {"png": render_png(x), "about": about,
                      "background_area": float(1.0 - mask.mean())},
            "models": {label: {**predictions[label], "evidence": evidence[label],
                               "features": features.get(label)}
                       for label in self.models},
        }

    def evidence(self, x: Tensor, mask: np.ndarray, target: int | None = None
                 ) -> dict[str, dict[str, Any]]:
        """Per model, Grad-CAM and LRP maps for ``target`` (None: the model's predicted
        class) as overlays, and the share of each map's positive evidence off the digit."""
        from shortcutlab.explain.methods import get_method
        from shortcutlab.explain.metrics import background_share

        if target is not None:
            self._check_class(target, "target")
        masks = torch.from_numpy(mask[None])
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for label, entry in self.models.items():
                with torch.no_grad():
                    predicted = int(entry.model(x).argmax(1))
                chosen = predicted if target is None else target
                classes = torch.tensor([chosen], device=x.device)
                maps: dict[str, Any] = {"target": chosen}
                for name in HEATMAP_METHODS:
                    if name == "lrp" and entry.lrp_problem:
                        maps[name] = {"problem": entry.lrp_problem}
                        continue
                    method = get_method(name)
                    heatmap = method.fn(entry.model, x, classes).detach().float().cpu()
                    if heatmap.dim() == 4:
                        heatmap = heatmap.sum(1)
                    share = float(background_share(heatmap, masks)[0])
                    maps[name] = {"overlay": _png(_heatmap_rgba(heatmap[0].numpy(),
                                                                method.signed)),
                                  "background_share": None if np.isnan(share) else share}
                out[label] = maps
        return out

    def features(self, x: Tensor, top: int = TOP_FEATURES) -> dict[str, list[dict[str, Any]]]:
        """Per model with an SAE, its ``top`` most active features on the image."""
        from shortcutlab.decompose.activations import feature_activations

        out = {}
        with self._lock:
            for label, entry in self.models.items():
                if entry.sae is None:
                    continue
                acts = feature_activations(entry.model, entry.sae, entry.sae_meta["layer"], x,
                                           entry.sae_meta["mode"], device=self.device)[0]
                order = [int(f) for f in np.argsort(-acts)[:top] if acts[f] > 0]
                out[label] = [{"feature": f, "activation": float(acts[f]),
                               "label": (entry.feature_labels[f]
                                         if f < len(entry.feature_labels) else "")}
                              for f in order]
        return out

    def attack(self, x: Tensor, label: str, target: int, eps: float) -> dict[str, Any]:
        """A targeted L-inf PGD attack on model ``label`` at ``eps``: the adversarial
        image, its perturbation amplified to the full range, and the new prediction."""
        from shortcutlab.attack.attacks import create_attack

        entry = self.model(label)
        self._check_class(target, "target")
        if not 0.0 <= eps <= 1.0:
            raise RequestError(f"epsilon is between 0 and 1, got {eps}")
        with self._lock:
            attack = create_attack("pgd", entry.model, eps=eps, steps=self.attack_steps,
                                   targeted=True, confidence=self.confidence)
            result = attack(x, torch.tensor([target], device=x.device))
        adversarial = result.adversarial[0].detach().cpu()
        delta = adversarial - x[0].cpu()
        size = float(delta.abs().max())
        amplified = 0.5 + 0.5 * delta / size if size > 0 else torch.full_like(delta, 0.5)
        probs = result.probs[0].cpu()
        return {"model": label, "target": target, "eps": eps,
                "success": bool(result.success[0]), "linf": size,
                "probs": [float(p) for p in probs], "predicted": int(probs.argmax()),
                "adversarial": _png(_to_uint8(adversarial)),
                "perturbation": _png(_to_uint8(amplified))}

    def minimal_epsilons(self, x: Tensor, target: int, max_eps: float = 1.0
                         ) -> dict[str, float | None]:
        """Per model, the smallest epsilon (on a grid of ``precision``) at which PGD makes
        ``target`` the prediction with the explorer's confidence (None: not even at
        ``max_eps``)."""
        from shortcutlab.attack.minimal import minimal_epsilon

        self._check_class(target, "target")
        out: dict[str, float | None] = {}
        with self._lock:
            for label, entry in self.models.items():
                found = minimal_epsilon(entry.model, x, target, self.confidence, attack="pgd",
                                        max_eps=max_eps, precision=self.precision,
                                        steps=self.attack_steps)
                value = float(found.eps[0])
                out[label] = value if np.isfinite(value) else None
        return out


def _to_uint8(image: Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> uint8 (H, W, 3)."""
    return np.round(image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def render_png(x: Tensor) -> str:
    """The explorer's image (1, 3, H, W) as a PNG data URI."""
    return _png(_to_uint8(x[0].detach().cpu()))

