"""Background share, pointing game, rank correlation and the randomization sanity check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from explain_models import random_cnn
from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain import (
    background_area,
    background_share,
    cascading_randomization,
    grad_cam,
    pointing_game,
    rank_correlation,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: no OpenMP overhead


def square_mask() -> torch.Tensor:
    """A 4x4 image whose 'digit' is the central 2x2 square."""
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 1:3, 1:3] = True
    return mask


def test_background_share_on_hand_made_maps():
    mask = square_mask()
    on_digit = torch.zeros(1, 4, 4)
    on_digit[0, 1, 1] = 2.0
    on_background = torch.zeros(1, 4, 4)
    on_background[0, 0, 0] = 1.0
    mixed = torch.zeros(1, 4, 4)
    mixed[0, 1, 2] = 3.0        # on the digit
    mixed[0, 3, 3] = 1.0        # background
    mixed[0, 0, 3] = -5.0       # negative evidence does not count
    maps = torch.cat([on_digit, on_background, mixed, torch.ones(1, 4, 4),
                      -torch.ones(1, 4, 4)])
    masks = mask.expand(5, 4, 4)
    share = background_share(maps, masks)
    torch.testing.assert_close(share[:4], torch.tensor([0.0, 1.0, 0.25, 12 / 16],
                                                       dtype=torch.float64))
    assert math.isnan(share[4])  # no positive attribution: undefined
    torch.testing.assert_close(background_area(masks), torch.full((5,), 0.75,
                                                                  dtype=torch.float64))
    # channels are summed first: (N, C, H, W) attributions
    channels = torch.zeros(1, 3, 4, 4)
    channels[0, 0, 0, 0] = 1.0
    channels[0, 2, 0, 0] = 1.0
    channels[0, 1, 1, 1] = 2.0
    assert float(background_share(channels, mask)) == pytest.approx(0.5)
    assert float(background_share(channels.numpy(), mask.numpy())) == pytest.approx(0.5)


def test_pointing_game_on_hand_made_maps():
    mask = square_mask().expand(4, 4, 4)
    maps = torch.zeros(4, 4, 4)
    maps[0, 2, 2] = 1.0                      # peak on the digit
    maps[1, 0, 0] = 1.0                      # peak in the corner
    maps[2, 0, 1] = 1.0                      # next to the digit
    maps[2, 2, 1] = 0.5
    hits = pointing_game(maps, mask)
    assert hits.tolist() == [True, False, False, False]  # map 3 is all zero: no peak
    assert pointing_game(maps, mask, tolerance=1).tolist() == [True, True, True, False]


def test_metric_input_errors():
    with pytest.raises(ShortcutlabError, match="differ in shape"):
        background_share(torch.zeros(2, 7, 7), torch.zeros(2, 28, 28, dtype=torch.bool))
    with pytest.raises(ShortcutlabError, match="tolerance"):
        pointing_game(torch.zeros(1, 4, 4), square_mask(), tolerance=-1)


def test_rank_correlation_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, size=(5, 30)).astype(float)
    b = a + rng.normal(size=(5, 30))
    ours = rank_correlation(a, b)
    expected = [spearmanr(a[i], b[i]).statistic for i in range(5)]
    np.testing.assert_allclose(ours, expected, rtol=1e-12)
    assert np.isnan(rank_correlation(np.ones((1, 9)), a[:1, :9]))[0]


def test_cascading_randomization_decorrelates_and_leaves_the_model_alone():
    model = random_cnn(0, width=6, dtype=torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(8, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    target = model(x).argmax(1)
    rng_state = torch.get_rng_state()
    result = cascading_randomization(model, lambda m: grad_cam(m, x, target), seed=3, keep=2)
    assert result.stages == ["none (trained model)", "fc2", "fc1", "conv3", "conv2", "conv1"]
    assert result.spearman[0]["mean"] == 1.0
    assert result.spearman[-1]["mean"] < 0.9
    assert len(result.maps) == 6 and result.maps[0].shape == (2, 28, 28)
    assert torch.equal(torch.get_rng_state(), rng_state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    again = cascading_randomization(model, lambda m: grad_cam(m, x, target), seed=3, keep=2)
    assert again.spearman == result.spearman  # seeded
    assert set(result.to_json()) == {"randomized_from_top", "spearman", "spearman_abs"}
