"""Our localization and faithfulness numbers against Quantus' metrics on the same maps.

Documented differences, each kept out of the compared inputs:
* pointing game: Quantus counts a hit when *any* of several tied maxima lies on the mask,
  we take the first maximum in reading order, and a map without a positive value has no
  peak for us (a miss); the maps compared here have one positive maximum each.
* relevance mass accuracy is Quantus' share of the raw attribution inside the mask (after
  its optional normalization); our background share counts positive attribution only, so
  the two agree as ``1 - background_share`` on the maps' positive part, without Quantus'
  normalization (a division by the maximum, which a ratio does not feel anyway).
* ROAD's noisy linear imputation: ours pulls every imputed pixel slightly toward a
  constant color (weight 1e-3 against neighbours that weigh 1 in all) so that a removed
  region with no kept neighbour stays solvable, and clips to the pixel range; with the
  pull off, no noise and a removal that leaves every region a kept neighbour, the two
  solve the same system.
* model-parameter randomisation (MPRT): Quantus re-seeds the generator before each
  layer's re-initialization, we draw every layer from one stream; with
  ``reseed_each_layer`` our cascade draws the same weights, and the per-layer Spearman
  correlations agree.
* pixel flipping: Quantus flips one channel value at a time in the order of the
  attribution; given the map repeated over the three channels, it has flipped whole pixels
  after every third step of 56 values, where we compare it with our ``map`` order.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shortcutlab.data import load_split
from shortcutlab.explain.faithfulness import deletion_curves
from shortcutlab.explain.gradcam import grad_cam
from shortcutlab.explain.metrics import background_share, pointing_game

quantus = pytest.importorskip("quantus")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def explained(tiny_data, trained):
    split = load_split(tiny_data, "test_hard")
    chosen = split.subset(np.arange(24))
    x = chosen.image_tensor()
    with torch.no_grad():
        predicted = trained(x).argmax(1)
    maps = grad_cam(trained, x, predicted).detach()
    # break exact ties (Grad-CAM upsampling repeats values) so that orders are unique
    maps = maps + 1e-4 * torch.rand(maps.shape, generator=torch.Generator().manual_seed(0))
    return x, predicted, maps, torch.from_numpy(chosen.masks)


def test_pointing_game_matches_quantus(explained):
    x, predicted, maps, masks = explained
    assert bool((maps.flatten(1).amax(1) > 0).all())
    ours = pointing_game(maps, masks).numpy()
    theirs = quantus.PointingGame(disable_warnings=True)(
        model=None, x_batch=x.numpy(), y_batch=predicted.numpy(),
        a_batch=maps[:, None].numpy(), s_batch=masks[:, None].numpy().astype(np.float32))
    np.testing.assert_array_equal(ours, np.asarray(theirs, dtype=bool))
    assert 0 < ours.sum() < len(ours)  # both outcomes occur: the comparison can fail


def test_relevance_mass_accuracy_is_one_minus_our_background_share(explained):
    x, predicted, maps, masks = explained
    positive = maps.clamp(min=0)
    ours = 1 - background_share(positive, masks).numpy()
    theirs = quantus.RelevanceMassAccuracy(normalise=False, abs=False, disable_warnings=True)(
        model=None, x_batch=x.numpy(), y_batch=predicted.numpy(),
        a_batch=positive[:, None].numpy(), s_batch=masks[:, None].numpy().astype(np.float32))
    np.testing.assert_allclose(ours, np.asarray(theirs), atol=1e-6)


def test_pixel_flipping_matches_quantus(explained, trained):
    x, predicted, maps, _ = explained
    pixels = x.shape[2] * x.shape[3]
    per_step = 56  # pixels per step: 14 steps over 28 x 28
    fractions = tuple(np.arange(0, pixels + 1, per_step) / pixels)
    ours = deletion_curves(trained, x, maps, predicted, orders=("map",), fractions=fractions,
                           fill=0.25)
    # Quantus wants the step to divide the pixel count and then counts channel values:
    # every third of its 56-value steps ends on 56 whole pixels
    theirs = quantus.PixelFlipping(features_in_step=per_step, perturb_baseline=0.25,
                                   disable_warnings=True)(
        model=trained.eval(), x_batch=x.numpy(), y_batch=predicted.numpy(),
        a_batch=maps[:, None].expand_as(x).numpy(), softmax=True, device="cpu",
        channel_first=True)
    theirs = np.asarray(theirs)
    assert theirs.shape == (len(x), 3 * (len(fractions) - 1))
    theirs = theirs[:, 2::3]
    np.testing.assert_allclose(ours.scores["map"][:, 1:], theirs, atol=1e-6)
    assert float(np.ptp(theirs)) > 0.1  # the curves move: a comparison of flat lines is none


def test_road_imputation_matches_quantus(explained):
    from quantus.functions.perturb_func import noisy_linear_imputation

    from shortcutlab.explain.faithfulness import _impute

    x = explained[0][:4].double().numpy()
    rng = np.random.default_rng(0)
    for image in x:
        removed = rng.random(image.shape[1:]) < 0.3
        theirs = noisy_linear_imputation(image, np.flatnonzero(removed.ravel()), noise=0.0)
        ours = _impute(image[None], removed[None], np.zeros(3), rng, 0.0, anchor=0.0)[0]
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
        assert float(np.abs(ours - image).max()) > 0.05  # pixels were really replaced


def test_cascading_randomization_matches_quantus_mprt(explained, trained):
    from shortcutlab.explain.sanity import cascading_randomization

    x, predicted, _, _ = explained
    x, predicted = x[:8], predicted[:8]

    def ours_maps(model):
        return grad_cam(model, x, predicted).detach()

    def their_maps(model, inputs, targets, **_):
        images = torch.as_tensor(inputs, dtype=torch.float32)
        classes = torch.as_tensor(targets, dtype=torch.long)
        return grad_cam(model, images, classes).detach().numpy()[:, None]

    seed = 42
    ours = cascading_randomization(trained.eval(), ours_maps, seed=seed + 1,
                                   reseed_each_layer=True)
    metric = quantus.MPRT(seed=seed, disable_warnings=True)
    theirs = metric(model=trained.eval(), x_batch=x.numpy(), y_batch=predicted.numpy(),
                    a_batch=their_maps(trained, x.numpy(), predicted.numpy()),
                    explain_func=their_maps, device="cpu", channel_first=True,
                    batch_size=8)
    layers = [name for name in theirs if name != "original"]
    assert layers == ours.stages[1:]
    per_layer = []
    for index, name in enumerate(layers, start=1):
        ours_mean = ours.spearman_abs[index]["mean"]
        their_values = np.asarray(theirs[name], dtype=float)
        their_mean = float(np.nanmean(their_values))
        np.testing.assert_allclose(ours_mean, their_mean, atol=1e-6, err_msg=name)
        per_layer.append(their_mean)
    assert max(per_layer) - min(per_layer) > 0.05  # the randomization does move the maps
