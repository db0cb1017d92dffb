"""Occlusion against Captum's ``Occlusion`` on the same model, images and windows."""

from __future__ import annotations

import pytest
import torch

from explain_models import random_cnn
from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain import occlusion as occlusion_module
from shortcutlab.explain.methods import attribution_maps, get_method

captum_attr = pytest.importorskip("captum.attr")


@pytest.mark.parametrize(("window", "stride"), [(4, 2), (5, 3), (3, 3)])
def test_occlusion_matches_captum(window, stride):
    model = random_cnn(0)
    x = torch.rand(5, 3, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 3, 7, 1, 9])
    ours = occlusion_module.occlusion(model, x, target, window=window, stride=stride,
                                      chunk=64)
    theirs = captum_attr.Occlusion(model).attribute(
        x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
        baselines=0.0, target=target)
    # Captum spreads each drop over the window's values of every channel: summed over the
    # channels, each pixel holds three equal shares of our single map value
    # (Captum accumulates in float32 whatever the input)
    torch.testing.assert_close(ours, theirs.double().sum(dim=1) / 3, atol=1e-5, rtol=1e-5)
    assert float(ours.abs().max()) > 0


def test_occlusion_is_a_registered_method_and_checks_its_window(small_cnn):
    x = torch.rand(3, 3, 28, 28)
    maps = attribution_maps(small_cnn, x, torch.tensor([1, 2, 3]), get_method("occlusion"),
                            {"window": 7, "stride": 7})
    assert maps.shape == (3, 28, 28)
    with pytest.raises(ShortcutlabError, match="window"):
        occlusion_module.occlusion(small_cnn, x, torch.tensor([1, 2, 3]), window=40)
