"""SmoothGrad against Captum's ``NoiseTunnel``: the same maps without noise, the same
expectation with it."""

from __future__ import annotations

import pytest
import torch

from explain_models import random_cnn
from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain.gradients import input_x_gradient
from shortcutlab.explain.methods import attribution_maps, get_method
from shortcutlab.explain.smoothgrad import smooth_grad

captum_attr = pytest.importorskip("captum.attr")


def ixg(model, x, target):
    return input_x_gradient(model, x, target)


@pytest.fixture(scope="module")
def case():
    model = random_cnn(2)
    x = torch.rand(4, 3, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    return model, x, torch.tensor([2, 5, 8, 0])


def test_without_noise_it_is_the_base_method_as_captum_sees_it(case):
    model, x, target = case
    ours = smooth_grad(model, x, target, ixg, samples=3, noise=0.0)
    tunnel = captum_attr.NoiseTunnel(captum_attr.InputXGradient(model))
    theirs = tunnel.attribute(x, nt_type="smoothgrad", nt_samples=3, stdevs=0.0, target=target)
    torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-8)


def test_with_noise_it_estimates_what_captum_estimates(case):
    model, x, target = case
    ours = smooth_grad(model, x, target, ixg, samples=256, noise=0.1, seed=0)
    torch.manual_seed(0)
    tunnel = captum_attr.NoiseTunnel(captum_attr.InputXGradient(model))
    theirs = tunnel.attribute(x, nt_type="smoothgrad", nt_samples=256, stdevs=0.1,
                              target=target)
    for a, b in zip(ours.sum(1).flatten(1), theirs.sum(1).flatten(1), strict=True):
        correlation = torch.corrcoef(torch.stack([a, b]))[0, 1]
        assert float(correlation) > 0.9
    # and the noise does something: one draw of noise moves the map
    single = smooth_grad(model, x, target, ixg, samples=1, noise=0.1, seed=0)
    assert float((single - input_x_gradient(model, x, target)).abs().max()) > 1e-3


def test_it_wraps_any_registered_method_and_is_reproducible(small_cnn):
    x = torch.rand(3, 3, 28, 28)
    target = torch.tensor([1, 2, 3])
    method = get_method("smoothgrad")
    options = {"base": "gradcam", "samples": 4, "noise": 0.1}
    first = attribution_maps(small_cnn, x, target, method, options)
    again = attribution_maps(small_cnn, x, target, method, options)
    assert first.shape == (3, 28, 28)
    torch.testing.assert_close(first, again)
    with pytest.raises(ShortcutlabError, match="at least one sample"):
        smooth_grad(small_cnn, x, target, ixg, samples=0)
    with pytest.raises(ShortcutlabError, match="another method"):
        attribution_maps(small_cnn, x, target, method, {"base": "smoothgrad"})
