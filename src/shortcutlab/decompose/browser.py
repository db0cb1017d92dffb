"""A self-contained HTML page with one card per SAE feature.

Each card: the feature's label and density, its top exemplars (validation digits in random
colors), its mean activation by color and by digit (the labelling grid of ``sae label``),
and its decoder direction visualized by the probe (an image optimized to push the layer
along what the feature writes). Everything is inlined (PNG as base64), so the file can be
sent or opened anywhere; the study's report links it.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shortcutlab.data import load_meta
from shortcutlab.data.dataset import dataset_colors
from shortcutlab.errors import ShortcutlabError

BROWSER = "features.html"
_CSS = """
body{font-family:system-ui,sans-serif;margin:1rem;color:#1d1d1f}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}
.card{border:1px solid #ddd;border-radius:6px;padding:.5rem;width:330px;font-size:.8rem}
.card h3{margin:.1rem 0 .3rem;font-size:.95rem}.row{display:flex;gap:.4rem;align-items:end}
.ex img,.vis img{image-rendering:pixelated}.bars{display:flex;gap:1px;align-items:end;
height:40px}.bars div{width:12px}.muted{color:#666}
"""


def _png(image: np.ndarray, scale: int = 2) -> str:
    """An (H, W, 3) float image in [0, 1] as a data URI."""
    from PIL import Image

    pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    picture = Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale),
                                             Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _bars(values: list[float], colors: list[str], names: list[str]) -> str:
    top = max(max(values), 1e-12)
    cells = []
    for value, color, name in zip(values, colors, names, strict=True):
        height = max(1.0, 40 * value / top)
        cells.append(f'<div title="{html.escape(name)}: {value:.3g}" '
                     f'style="height:{height:.0f}px;background:{color}"></div>')
    return '<div class="bars">' + "".join(cells) + "</div>"


def _chosen(rows: list[dict[str, Any]], count: int) -> list[int]:
    """Live features, color features first (most color-selective first), then digit,
    shape and mixed ones; ``count`` of them (0: all)."""
    order = {"color": 0, "digit": 1, "shape": 2, "mixed": 3}
    alive = [row for row in rows if row["label"] != "dead"]
    alive.sort(key=lambda row: (order.get(row["label"].split(":")[0], 4),
                                -max(row["color_eta2"], row["digit_eta2"])))
    picked = alive if count == 0 else alive[:count]
    return [row["feature"] for row in picked]


def _exemplars(labels: dict[str, Any], model: Any, sae: Any, meta: dict[str, Any],
               data_dir: Path, count: int, limit: int, seed: int, device: Any
               ) -> tuple[np.ndarray, list[list[int]]]:
    """The exemplar images and each feature's best ones: those ``sae label`` chose (the
    images re-rendered, no model pass), or, for labels written before they were kept,
    found again."""
    from shortcutlab.decompose.activations import feature_activations
    from shortcutlab.probe.selectivity import balanced_images, top_exemplars

    kept = labels.get("exemplar_images")
    if kept and all("exemplars" in row for row in labels["features"]):
        images, _, _ = balanced_images(data_dir, kept["split"], limit=kept["limit"],
                                       seed=kept["seed"])
        return images, [row["exemplars"][:count] for row in labels["features"]]
    images, _, _ = balanced_images(data_dir, "val", limit=limit, seed=seed)
    acts = feature_activations(model, sae, meta["layer"], images, meta["mode"], device=device)
    return images, [list(row) for row in top_exemplars(acts, count)]


def feature_browser(sae_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                    features: int = 64, steps: int = 64, exemplars: int = 6,
                    exemplar_images: int = 2000, seed: int = 0,
                    device: torch.device | str = "cpu") -> Path:
    """Write the feature browser of a labelled SAE directory; return its path."""
    from shortcutlab.artifacts import atomic_open, read_json
    from shortcutlab.decompose.run import LABELS, SAE_META, _context
    from shortcutlab.probe.objectives import Direction
    from shortcutlab.probe.visualize import VisConfig, visualize

    sae_dir = Path(sae_dir)
    if not (sae_dir / LABELS).is_file():
        raise ShortcutlabError(f"{sae_dir} has no {LABELS}: run `shortcutlab sae label "
                               f"{sae_dir}` first")
    if features < 0 or steps < 1 or exemplars < 1:
        raise ShortcutlabError("--features must be >= 0, --steps and --exemplars positive")
    labels = read_json(sae_dir / LABELS)
    meta = read_json(sae_dir / SAE_META)
    sae, _, model, data_dir = _context(sae_dir, device)
    rows = labels["features"]
    chosen = _chosen(rows, features)
    if not chosen:
        raise ShortcutlabError(f"{sae_dir}: every feature is dead; nothing to browse")
    images, best = _exemplars(labels, model, sae, meta, data_dir, exemplars,
                              exemplar_images, seed, device)
    directions = [Direction(meta["layer"], sae.W_dec[feature].detach().cpu().clone(),
                            f"sae feature {feature}") for feature in chosen]
    vis = visualize(model, directions, VisConfig(steps=steps, tv=0.05, seed=seed), device=device,
                    show_progress=False)
    density = meta.get("density") or [row["frequency"] for row in rows]
    color_names, colors = dataset_colors(load_meta(data_dir))
    palette = [f"rgb({r},{g},{b})" for r, g, b in np.rint(colors * 255).astype(np.int64)]
    classes = len(color_names)
    digit_names = [str(d) for d in range(classes)]
    cards = []
    for position, feature in enumerate(chosen):
        row = rows[feature]
        exemplar_html = "".join(
            f'<img src="{_png(images[index] / 255.0)}" width=42 height=42>'
            for index in best[feature])
        picture = vis.images[position, 0].permute(1, 2, 0).detach().cpu().numpy()
        cards.append(
            f'<div class="card" id="f{feature}"><h3>feature {feature}: '
            f'{html.escape(row["label"])}</h3>'
            f'<div class="muted">on for {100 * density[feature]:.1f}% of the validation '
            f'inputs; color eta2 {row["color_eta2"]:.2f}, digit eta2 {row["digit_eta2"]:.2f}'
            f'</div><div class="row"><div class="vis"><img src="{_png(picture, 3)}" '
            'width=84 height=84 title="decoder direction, visualized"></div>'
            f'<div>by color{_bars(row["color_means"], palette, color_names)}'
            f'by digit{_bars(row["digit_means"], ["#555"] * classes, digit_names)}'
            f'</div></div><div class="ex">{exemplar_html}</div></div>')
    title = f"SAE features of {meta['layer']} ({meta['mode']}), {meta['run_dir']}"
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>"
            f"{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{len(chosen)} of {sae.d_hidden} features "
            f"(dead ones left out; color features first). Left: the decoder direction "
            f"visualized ({steps} steps); bars: mean activation on validation digits by "
            f"color and by digit; below: the {exemplars} strongest exemplars.</p>"
            f'<div class="cards">{"".join(cards)}</div></body></html>\n')
    path = Path(out) if out is not None else sae_dir / BROWSER
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as handle:
        handle.write(page)
    return path
