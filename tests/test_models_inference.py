"""``batched_forward``: the same outputs as one unbatched forward, whatever the chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shortcutlab import models
from shortcutlab.data import images_to_tensor
from shortcutlab.models import batched_forward


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return models.create("cnn3", width=4, hidden=16).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(23, 3, 28, 28, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("batch_size", [1, 5, 23, 100])
def test_equals_an_unbatched_forward(model, images, batch_size):
    with torch.no_grad():
        expected = model(images)
    out = batched_forward(model, images, batch_size)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_is_bit_identical_to_the_same_chunks_by_hand(model, images):
    with torch.no_grad():
        expected = torch.cat([model(images[s:s + 7]) for s in range(0, len(images), 7)])
    assert torch.equal(batched_forward(model, images, 7), expected)  # 23 = 3 * 7 + 2


def test_empty_input_runs_nothing(images):
    calls = []
    out = batched_forward(lambda x: calls.append(x), images[:0], 4)
    assert calls == [] and out.shape == (0, 0)


def test_fn_keeps_what_it_returns_and_tuples_are_joined_per_field(model, images):
    with torch.no_grad():
        probs = torch.cat([torch.softmax(model(images[s:s + 4]), 1) for s in range(0, 23, 4)])
    values, indices = batched_forward(model, images, 4,
                                      fn=lambda m, x: torch.softmax(m(x), 1).max(1))
    assert torch.equal(values, probs.max(1).values)
    assert torch.equal(indices, probs.argmax(1))
    argmax = batched_forward(model, images, 4, fn=lambda m, x: m(x).argmax(1), to_cpu=True)
    assert argmax.dtype == torch.long and torch.equal(argmax, probs.argmax(1))


def test_uint8_images_are_converted_like_images_to_tensor(model):
    pixels = np.random.default_rng(0).integers(0, 256, (9, 28, 28, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = torch.cat([model(images_to_tensor(pixels[s:s + 4]))
                              for s in range(0, 9, 4)])
    assert torch.equal(batched_forward(model, pixels, 4, device="cpu"), expected)


def test_no_gradients_unless_asked(model, images):
    assert not batched_forward(model, images, 8).requires_grad
    assert batched_forward(model, images, 8, grad=True).requires_grad


def test_leaves_the_model_mode_alone(images):
    model = models.create("cnn3", width=4, hidden=16).train()
    batched_forward(model, images, 8)
    assert model.training


def test_a_plain_callable_keeps_its_chunks_where_they_are(images):
    seen = []
    out = batched_forward(lambda x: seen.append(x.device) or x.sum((1, 2, 3)), images, 10)
    assert seen == [images.device] * 3 and torch.allclose(out, images.sum((1, 2, 3)))


def test_rejects_a_non_positive_batch_size(model, images):
    with pytest.raises(ValueError, match="batch_size"):
        batched_forward(model, images, 0)
