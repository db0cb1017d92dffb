"""Deletion curves: the orders, the fills, and a story that can fail on models built to
read only the background or only the digit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain.faithfulness import _impute, deletion_curves, removal_order

SIZE = 12
DIGIT = torch.zeros(SIZE, SIZE, dtype=torch.bool)
DIGIT[3:9, 4:8] = True  # every image's "digit": a fixed central block


class RegionReader(nn.Module):
    """Class 0's logit grows with the red of one region (the digit or the background)."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = (x[:, 0] * self.region).sum(dim=(1, 2)) / self.region.sum()
        green = (x[:, 1] * self.region).sum(dim=(1, 2)) / self.region.sum()
        score = 12 * (red - green)
        return torch.stack([score, -score], dim=1)


def red_images(n: int = 6) -> torch.Tensor:
    """Red everywhere (digit and background), with a little per-image texture."""
    generator = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 3, SIZE, SIZE)
    x[:, 0] = 0.8 + 0.2 * torch.rand(n, SIZE, SIZE, generator=generator)
    x[:, 1] = 0.1 * torch.rand(n, SIZE, SIZE, generator=generator)
    return x


def test_orders_rank_the_map_first_and_keep_regions_together():
    maps = torch.rand(4, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    masks = DIGIT.expand(4, -1, -1)
    order = removal_order(maps, "map")
    ranked = maps.flatten(1).gather(1, order)
    assert bool((ranked[:, :-1] >= ranked[:, 1:]).all())
    digit_count = int(DIGIT.sum())
    for name, first in (("digit-first", True), ("background-first", False)):
        order = removal_order(maps, name, masks)
        on_digit = masks.flatten(1).gather(1, order)
        split = digit_count if first else SIZE * SIZE - digit_count
        assert bool((on_digit[:, :split] == first).all())
        assert bool((on_digit[:, split:] == (not first)).all())
        # inside each region, still the map's order
        values = maps.flatten(1).gather(1, order)
        assert bool((values[:, :split - 1] >= values[:, 1:split]).all())
    with pytest.raises(ShortcutlabError, match="masks"):
        removal_order(maps, "digit-first")
    with pytest.raises(ShortcutlabError, match="unknown removal order"):
        removal_order(maps, "lerf")


@pytest.mark.parametrize("fill", [0.5, (0.0, 0.0, 1.0)])
def test_removing_the_region_a_model_reads_destroys_its_answer(fill):
    x = red_images()
    masks = DIGIT.expand(len(x), -1, -1)
    target = torch.zeros(len(x), dtype=torch.long)
    aucs = {}
    for name, region in (("background", ~DIGIT), ("digit", DIGIT)):
        model = RegionReader(region)
        maps = region.float().expand(len(x), -1, -1) + 0.01 * torch.rand(len(x), SIZE, SIZE)
        curves = deletion_curves(model, x, maps, target, masks=masks, fill=fill)
        assert np.allclose(curves.scores["map"][:, 0], curves.scores["random"][:, 0])
        aucs[name] = {order: float(curves.auc(order).mean()) for order in curves.scores}
        # a map on the region the model reads beats a random order
        assert aucs[name]["map"] < aucs[name]["random"] - 0.05
        removed_alone = curves.only_background if name == "background" else curves.only_digit
        kept_alone = curves.only_digit if name == "background" else curves.only_background
        assert float(removed_alone.mean()) <= 0.5 + 1e-6 < float(kept_alone.mean())  # chance
    background, digit = aucs["background"], aucs["digit"]
    assert background["background-first"] < background["digit-first"]
    assert digit["digit-first"] < digit["background-first"]


def test_road_imputes_from_the_surroundings():
    # a smooth image (a horizontal ramp) with a hole: linear imputation continues the ramp
    ramp = torch.linspace(0.2, 0.8, SIZE).expand(SIZE, SIZE)
    image = torch.stack([ramp, 1 - ramp, torch.full_like(ramp, 0.5)])[None].double().numpy()
    hole = np.zeros((1, SIZE, SIZE), dtype=bool)
    hole[0, 4:8, 4:8] = True
    filled = _impute(image, hole, np.array([0.0, 0.0, 0.0]), np.random.default_rng(0), 0.0)
    assert np.abs(filled - image).max() < 0.01  # the anchor's pull is tiny next to neighbours
    assert np.array_equal(filled[:, :, ~hole[0]], image[:, :, ~hole[0]])  # the rest is kept
    # nothing left to impute from: the constant fill
    everything = np.ones((1, SIZE, SIZE), dtype=bool)
    filled = _impute(image, everything, np.array([0.3, 0.3, 0.3]), np.random.default_rng(0),
                     0.0)
    assert np.abs(filled - 0.3).max() < 1e-6


def test_the_curves_are_reproducible_and_leave_the_model_as_found():
    x = red_images()
    model = RegionReader(~DIGIT).train()
    maps = torch.rand(len(x), SIZE, SIZE)
    target = torch.zeros(len(x), dtype=torch.long)
    first = deletion_curves(model, x, maps, target, fill="road", seed=3,
                            orders=("map", "random"))
    again = deletion_curves(model, x, maps, target, fill="road", seed=3,
                            orders=("map", "random"))
    for order in first.scores:
        np.testing.assert_array_equal(first.scores[order], again.scores[order])
    assert model.training
    assert first.only_background is None  # no masks, no region scores
    summary = first.summary()
    assert set(summary["auc"]) == {"map", "random"} and summary["fill"] == "road"
    assert 0.0 <= summary["auc"]["map"] <= 1.0


def test_bad_arguments_are_refused():
    x = red_images(2)
    model = RegionReader(DIGIT)
    target = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ShortcutlabError, match="do not match"):
        deletion_curves(model, x, torch.rand(2, 5, 5), target, orders=("map",))
    with pytest.raises(ShortcutlabError, match="fractions"):
        deletion_curves(model, x, torch.rand(2, SIZE, SIZE), target, orders=("map",),
                        fractions=(0.5, 0.2))
    with pytest.raises(ShortcutlabError, match="fill"):
        deletion_curves(model, x, torch.rand(2, SIZE, SIZE), target, orders=("map",),
                        fill="zeros")
