"""Grad-CAM (vs Captum), Grad-CAM++ (vs pytorch-grad-cam), gradient methods (vs Captum)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explain_models import hooks_left, random_cnn, random_mlp
from shortcutlab import models
from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain import (
    grad_cam,
    grad_cam_pp,
    input_x_gradient,
    integrated_gradients,
)
from shortcutlab.explain.gradcam import layer_activation_and_gradient

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: no OpenMP overhead

CNNS = [
    dict(seed=0, dtype=torch.float32),
    dict(seed=1, width=6, kernel=5, dtype=torch.float32),
    dict(seed=2, pool="avg", head="gap", dtype=torch.float32),
    dict(seed=3, batch_norm=True, dtype=torch.float32),
]


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 28, 28, generator=torch.Generator().manual_seed(seed))


def captum_grad_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor,
                    target: torch.Tensor) -> torch.Tensor:
    cam = captum_attr.LayerGradCam(model, layer)
    return cam.attribute(x, target=target, relu_attributions=True)[:, 0].detach()


@pytest.mark.parametrize("config", CNNS)
@pytest.mark.parametrize("layer_name", ["conv3", "relu2"])
def test_grad_cam_matches_captum(config, layer_name):
    model = random_cnn(**config)
    layer = getattr(model, layer_name)
    for n, seed in ((1, 0), (7, 1)):
        x = images(n, seed)
        explicit = torch.arange(n) % 10
        ours = grad_cam(model, x, explicit, layer=layer_name, upsample=False)
        torch.testing.assert_close(ours, captum_grad_cam(model, layer, x, explicit),
                                   rtol=1e-5, atol=1e-5)
        predicted = model(x).argmax(1)
        ours = grad_cam(model, x, None, layer=layer, upsample=False)
        torch.testing.assert_close(ours, captum_grad_cam(model, layer, x, predicted),
                                   rtol=1e-5, atol=1e-5)
        single = grad_cam(model, x, 4, layer=layer, upsample=False)
        torch.testing.assert_close(single, captum_grad_cam(model, layer, x, torch.full((n,), 4)),
                                   rtol=1e-5, atol=1e-5)


def test_grad_cam_defaults_shapes_and_upsampling():
    model = models.create("cnn3", width=4, hidden=16).eval()
    x = images(5, 2)
    low = grad_cam(model, x, 3, upsample=False)  # default layer: the last Conv2d (conv3)
    assert low.shape == (5, 7, 7)
    torch.testing.assert_close(low, grad_cam(model, x, 3, layer="features.conv3",
                                             upsample=False))
    high = grad_cam(model, x, 3)
    assert high.shape == (5, 28, 28)
    assert (high >= 0).all() and (low >= 0).all()
    expected = nn.functional.interpolate(low[:, None], size=(28, 28), mode="bilinear",
                                         align_corners=False)[:, 0]
    torch.testing.assert_close(high, expected)
    assert not high.requires_grad
    assert hooks_left(model) == []


def test_grad_cam_survives_in_place_activations_after_the_layer():
    model = random_cnn(8, dtype=torch.float32)
    x = images(3, 4)
    expected = grad_cam(model, x, 2, layer="conv3", upsample=False)
    model.relu3.inplace = True
    torch.testing.assert_close(grad_cam(model, x, 2, layer="conv3", upsample=False), expected)


def test_grad_cam_pp_matches_pytorch_grad_cam_weights():
    grad_cam_lib = pytest.importorskip("pytorch_grad_cam")
    model = random_cnn(4, width=5, dtype=torch.float32)
    x = images(6, 3)
    target = torch.tensor([0, 1, 2, 3, 4, 5])
    activation, gradient, _ = layer_activation_and_gradient(model, x, target, "conv3")
    reference = grad_cam_lib.GradCAMPlusPlus(model, [model.conv3])
    try:
        weights = reference.get_cam_weights(x, [model.conv3], None, activation.numpy(),
                                            gradient.numpy())
    finally:
        reference.activations_and_grads.release()
    expected = np.maximum((weights[:, :, None, None] * activation.numpy()).sum(1), 0)
    ours = grad_cam_pp(model, x, target, layer="conv3", upsample=False)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-4, atol=1e-6)
    assert hooks_left(model) == []


def test_grad_cam_leaves_no_hook_and_restores_grad_mode_after_errors():
    class Boom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    model = random_cnn(5, dtype=torch.float32)
    model.fc1 = nn.Sequential(Boom())
    for grad_mode in (True, False):
        with torch.set_grad_enabled(grad_mode):
            with pytest.raises(RuntimeError, match="boom"):
                grad_cam(model, images(2, 0), 1)
            assert torch.is_grad_enabled() is grad_mode
        assert hooks_left(model) == []
    with torch.no_grad():  # works under no_grad, and leaves it on
        cam = grad_cam(random_cnn(5, dtype=torch.float32), images(2, 0), 1)
        assert torch.is_grad_enabled() is False
    assert cam.shape == (2, 28, 28)


def test_grad_cam_bad_input_errors():
    model = models.create("cnn3", width=4, hidden=16).eval()
    x = images(3, 0)
    with pytest.raises(ShortcutlabError, match=r"no layer 'features\.nope'"):
        grad_cam(model, x, layer="features.nope")
    with pytest.raises(ShortcutlabError, match="3 inputs"):
        grad_cam(model, x, torch.tensor([1, 2]))
    with pytest.raises(ShortcutlabError, match="integer class indices"):
        grad_cam(model, x, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ShortcutlabError, match="convolutional layer"):
        grad_cam(model, x, 1, layer="classifier.fc1")
    with pytest.raises(ShortcutlabError, match="no Conv2d"):
        grad_cam(random_mlp(0, dtype=torch.float32), x)
    with pytest.raises(ShortcutlabError, match="float"):
        grad_cam(model, (x * 255).to(torch.uint8))
    assert hooks_left(model) == []


def test_input_x_gradient_matches_captum():
    model = random_cnn(6, dtype=torch.float64)
    x = images(4, 5).double()
    target = torch.tensor([9, 8, 7, 6])
    expected = captum_attr.InputXGradient(model).attribute(x.clone().requires_grad_(True),
                                                           target=target).detach()
    torch.testing.assert_close(input_x_gradient(model, x, target), expected)
    torch.testing.assert_close(input_x_gradient(model, x),
                               input_x_gradient(model, x, model(x).argmax(1)))


@pytest.mark.parametrize("batch_size", [512, 7])
def test_integrated_gradients_matches_captum_and_is_complete(batch_size):
    model = random_cnn(7, dtype=torch.float64)
    x = images(3, 6).double()
    target = torch.tensor([1, 5, 2])
    ours = integrated_gradients(model, x, target, steps=16, method="riemann_middle",
                                batch_size=batch_size)
    # (Captum's trapezoid weights sum to (n-1)/n, so we compare a rule both define alike.)
    expected = captum_attr.IntegratedGradients(model).attribute(
        x, target=target, n_steps=16, method="riemann_middle")
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-10)
    # completeness: attributions add up to logit(x) - logit(baseline), up to quadrature error
    fine = integrated_gradients(model, x, target, steps=128)
    gap = (model(x) - model(torch.zeros_like(x))).gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(fine.sum(dim=(1, 2, 3)), gap, rtol=2e-2, atol=1e-3)
