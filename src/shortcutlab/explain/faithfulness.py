"""Does removing what a map points at change the prediction? Deletion curves.

Localization numbers (:mod:`shortcutlab.explain.metrics`) say where a map looks; these
say whether the model's answer depends on it. Pixels are removed in an order, a growing
fraction at a time, and the model's probability of the explained class is recorded
after each removal (pixel flipping, Bach et al. 2015; "MoRF" deletion, Samek et al. 2017).
The orders:

* ``map``: the map's most relevant pixels first. A faithful map makes the probability
  fall fast: a low area under the curve.
* ``random``: a uniformly random order, the reference a map has to beat.
* ``background-first`` / ``digit-first``: every pixel of one region before any pixel of
  the other (each region in the map's order). On Colored MNIST this asks the question
  directly: a color reader loses its answer when the background goes, a shape reader
  when the digit goes.

What "removed" means is the ``fill``: a constant color (by default each channel's mean
over the images given), or ``"road"``, the noisy linear imputation of ROAD (Rong et al.
2022): every removed pixel becomes the weighted mean of its eight neighbours (direct
ones weigh 1/6, diagonal ones 1/12), solved jointly for all removed pixels, plus a little
Gaussian noise. A constant patch is itself a pattern a model may react to; an imputed one
carries on the surroundings, so that the removal leaks neither the order nor a new
feature. Where a removed region touches no kept pixel, the imputation falls back to the
constant (a small pull toward it keeps the system solvable).

Why we write it instead of calling Quantus' ``PixelFlipping`` or ``ROAD``: the region-first
orders need the digit's mask, which neither metric takes, and we want every curve of a
batch in one forward pass per removal step; ``tests/test_explain_faithfulness.py``
compares our map-order curve with Quantus' pixel flipping on the same maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain._common import check_input, to_map

ORDERS = ("map", "random", "background-first", "digit-first")
FRACTIONS = tuple(float(f) for f in np.round(np.linspace(0.0, 1.0, 21), 4))
ROAD_NOISE = 0.01  # ROAD's default standard deviation of the noise on imputed pixels
_NEIGHBOURS = [(dy, dx, 1 / 6 if dy == 0 or dx == 0 else 1 / 12)
               for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
_ANCHOR = 1e-3  # pull of each imputed pixel toward the constant fill (keeps A invertible)


@dataclass
class DeletionCurves:
    """The model's probability of the explained class as pixels are removed."""

    fractions: np.ndarray  # (F,): share of the image's pixels removed, from 0 to 1
    scores: dict[str, np.ndarray]  # order -> (N, F)
    fill: str
    only_background: np.ndarray | None = None  # (N,): the whole background removed alone
    only_digit: np.ndarray | None = None  # (N,): the whole digit removed alone
    extra: dict[str, Any] = field(default_factory=dict)

    def auc(self, order: str) -> np.ndarray:
        """Per image, the area under the curve (fractions on [0, 1]: a mean probability)."""
        curve = self.scores[order]
        return np.trapezoid(curve, self.fractions, axis=1) / (self.fractions[-1]
                                                              - self.fractions[0])

    def summary(self) -> dict[str, Any]:
        """Means over the images, for ``explain.json``."""
        out: dict[str, Any] = {
            "fill": self.fill,
            "n": int(next(iter(self.scores.values())).shape[0]),
            "fractions": [float(f) for f in self.fractions],
            "auc": {order: float(self.auc(order).mean()) for order in self.scores},
            "curve": {order: [float(v) for v in curve.mean(axis=0)]
                      for order, curve in self.scores.items()},
            "clean": float(next(iter(self.scores.values()))[:, 0].mean()),
        }
        if self.only_background is not None:
            out["only_background_removed"] = float(self.only_background.mean())
        if self.only_digit is not None:
            out["only_digit_removed"] = float(self.only_digit.mean())
        return out


def removal_order(heatmaps: Tensor, order: str, masks: Tensor | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
    """(N, H*W) pixel indices, first removed first.

    ``heatmaps`` (N, H, W) rank pixels (most relevant first; ties by position); for the
    region-first orders, ``masks`` (N, H, W) is True on the digit.
    """
    n = heatmaps.shape[0]
    flat = heatmaps.detach().flatten(1).double().cpu()
    if order == "random":
        keys = torch.rand(flat.shape, generator=generator, dtype=torch.float64)
        return keys.argsort(dim=1)
    if order not in ORDERS:
        raise ShortcutlabError(f"unknown removal order {order!r}; choose one of "
                               f"{', '.join(ORDERS)}")
    # a stable descending sort: equal relevance is removed in reading order
    keys = -torch.nan_to_num(flat, nan=-np.inf)
    if order != "map":
        if masks is None:
            raise ShortcutlabError(f"the {order!r} order needs the digit masks")
        digit = masks.reshape(n, -1).bool().cpu()
        first = ~digit if order == "background-first" else digit
        # the map's ranks, shifted so that the region removed first sorts before every
        # pixel of the other
        rank = keys.argsort(dim=1, stable=True).argsort(dim=1).double()
        keys = rank + (~first).double() * flat.shape[1]
    return keys.argsort(dim=1, stable=True)


def _impute(images: np.ndarray, removed: np.ndarray, fill: np.ndarray,
            rng: np.random.Generator, noise: float, anchor: float = _ANCHOR) -> np.ndarray:
    """ROAD's noisy linear imputation of images (N, C, H, W) where ``removed`` (N, H, W).

    One sparse system for the whole batch (neighbours never cross images), so the cost is
    one factorization per removal step instead of one per image."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    out = images.copy()
    unknown = np.flatnonzero(removed.ravel())
    if unknown.size == 0:
        return out
    n, c, h, w = images.shape
    slot = np.full(n * h * w, -1)
    slot[unknown] = np.arange(unknown.size)
    image, pixel = np.divmod(unknown, h * w)
    ys, xs = np.divmod(pixel, w)
    rows, cols, values = [np.arange(unknown.size)], [np.arange(unknown.size)], []
    diagonal = np.full(unknown.size, anchor)
    rhs = np.repeat(anchor * fill[None, :], unknown.size, axis=0)  # (U, C)
    flat = images.transpose(0, 2, 3, 1).reshape(-1, c)  # (N*H*W, C)
    for dy, dx, weight in _NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        neighbour = np.where(inside, image * h * w + ny * w + nx, 0)
        diagonal += np.where(inside, weight, 0.0)
        known = inside & (slot[neighbour] < 0)
        rhs[known] += weight * flat[neighbour[known]]
        coupled = inside & (slot[neighbour] >= 0)
        rows.append(np.flatnonzero(coupled))
        cols.append(slot[neighbour[coupled]])
        values.append(np.full(int(coupled.sum()), -weight))
    values.insert(0, diagonal)
    matrix = coo_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(unknown.size, unknown.size)).tocsc()
    solved = splu(matrix).solve(rhs)  # (U, C)
    solved += rng.normal(0.0, noise, size=solved.shape)
    result = out.transpose(0, 2, 3, 1).reshape(-1, c).copy()
    result[unknown] = np.clip(solved, 0.0, 1.0)
    return result.reshape(n, h, w, c).transpose(0, 3, 1, 2).copy()


def _remove(x: Tensor, removed: Tensor, fill: Tensor | str, rng: np.random.Generator,
            noise: float, constant: Tensor) -> Tensor:
    """``x`` (N, C, H, W) with the pixels of ``removed`` (N, H, W) filled."""
    if isinstance(fill, str):  # road
        done = _impute(x.cpu().double().numpy(), removed.cpu().numpy(),
                       constant.cpu().double().numpy(), rng, noise)
        return torch.from_numpy(done).to(device=x.device, dtype=x.dtype)
    return torch.where(removed[:, None], fill.view(1, -1, 1, 1).to(x), x)


@torch.no_grad()
def _probabilities(model: nn.Module, x: Tensor, target: Tensor, batch_size: int) -> Tensor:
    parts = [model(x[start:start + batch_size]).softmax(dim=1)
             .gather(1, target[start:start + batch_size, None]).squeeze(1)
             for start in range(0, len(x), batch_size)]
    return torch.cat(parts)


def deletion_curves(model: nn.Module, x: Tensor, heatmaps: Tensor | np.ndarray,
                    target: Tensor, *, masks: Tensor | np.ndarray | None = None,
                    orders: tuple[str, ...] = ORDERS,
                    fractions: tuple[float, ...] = FRACTIONS,
                    fill: str | float | Tensor = "mean", noise: float = ROAD_NOISE,
                    seed: int = 0, batch_size: int = 256) -> DeletionCurves:
    """The probability of ``target`` as a growing share of each image's pixels is removed.

    Args:
        model: maps images in [0, 1] to logits; evaluated in eval mode, left as found.
        x: images (N, C, H, W) in [0, 1].
        heatmaps: (N, H, W) maps (or (N, C, H, W) attributions, summed over channels) that
            rank the pixels, most relevant first.
        target: (N,) the explained class of each image.
        masks: (N, H, W), True on the digit: needed by the region-first orders, and then
            also gives ``only_background`` and ``only_digit``.
        orders: which curves (see the module docstring).
        fractions: shares of the pixels removed, increasing from 0 to 1.
        fill: ``"mean"`` (each channel's mean over ``x``), a gray level, a (C,) color, or
            ``"road"`` (noisy linear imputation, pulled toward the mean color where
            nothing is left to impute from).
        noise: ROAD's noise (standard deviation, pixels in [0, 1]).
        seed: the random order's and ROAD's noise's random stream.
    """
    check_input(x)
    maps = to_map(heatmaps if isinstance(heatmaps, Tensor) else torch.from_numpy(
        np.asarray(heatmaps))).detach()
    n, _, h, w = x.shape
    if maps.shape != (n, h, w):
        raise ShortcutlabError(f"heatmaps {tuple(maps.shape)} do not match the images "
                               f"{tuple(x.shape)}; upsample them to the image size first")
    target = torch.as_tensor(target, device=x.device, dtype=torch.long).expand(n)
    steps = np.asarray(fractions, dtype=np.float64)
    if steps.ndim != 1 or len(steps) < 2 or np.any(np.diff(steps) <= 0) or steps[0] < 0 \
            or steps[-1] > 1:
        raise ShortcutlabError("fractions must increase within [0, 1], at least two of them")
    mask_t = None
    if masks is not None:
        mask_t = torch.as_tensor(np.asarray(masks) if not isinstance(masks, Tensor)
                                 else masks).bool().reshape(n, h, w)
    constant = x.mean(dim=(0, 2, 3)).detach()
    if isinstance(fill, str):
        if fill not in ("mean", "road"):
            raise ShortcutlabError(f"fill must be 'mean', 'road', a gray level or a color, "
                                   f"got {fill!r}")
        fill_value: Tensor | str = constant if fill == "mean" else "road"
        fill_name = fill
    else:
        fill_value = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(-1)
        fill_value = fill_value.expand(x.shape[1]).clone()
        if float(fill_value.min()) < 0 or float(fill_value.max()) > 1:
            raise ShortcutlabError("a constant fill must be in [0, 1]")
        fill_name = "constant " + ",".join(f"{float(v):.3g}" for v in fill_value)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    try:
        scores = {}
        for order in orders:
            ranking = removal_order(maps, order, mask_t, generator).to(x.device)
            position = torch.empty_like(ranking)
            position.scatter_(1, ranking, torch.arange(h * w, device=x.device).expand(n, -1))
            curve = []
            for fraction in steps:
                removed = (position < round(fraction * h * w)).reshape(n, h, w)
                images = _remove(x, removed, fill_value, rng, noise, constant)
                curve.append(_probabilities(model, images, target, batch_size))
            scores[order] = torch.stack(curve, dim=1).cpu().numpy().astype(np.float64)
        only_background = only_digit = None
        if mask_t is not None:
            digit = mask_t.to(x.device)
            only_background = _probabilities(
                model, _remove(x, ~digit, fill_value, rng, noise, constant), target,
                batch_size).cpu().numpy().astype(np.float64)
            only_digit = _probabilities(
                model, _remove(x, digit, fill_value, rng, noise, constant), target,
                batch_size).cpu().numpy().astype(np.float64)
    finally:
        model.train(was_training)
    return DeletionCurves(steps, scores, fill_name, only_background, only_digit)
