"""RUBi: its bias branch reads colors only, it trains both networks, and resumes exactly."""

from __future__ import annotations

import copy

import pytest
import torch

from shortcutlab import models
from shortcutlab.intervene.hparams import resolve_hparams
from shortcutlab.intervene.methods.rubi import ColorOnlyNet, ReducingUnimodalBias
from shortcutlab.train.algorithm import TrainContext

pytestmark = pytest.mark.usefixtures("one_thread")


def build(tensors) -> ReducingUnimodalBias:
    torch.manual_seed(0)
    algorithm = ReducingUnimodalBias(models.create("cnn3", width=4, hidden=16),
                                     resolve_hparams("rubi", {}))
    algorithm.setup(TrainContext(num_train=len(tensors["labels"]), total_steps=10,
                                 device=torch.device("cpu"), train=tensors,
                                 generator=torch.Generator().manual_seed(0)))
    return algorithm


def test_the_bias_branch_cannot_see_where_the_pixels_are():
    torch.manual_seed(0)
    branch = ColorOnlyNet(10)
    images = torch.rand(4, 3, 28, 28)
    shuffled = images.flatten(2)[:, :, torch.randperm(28 * 28)].reshape(images.shape)
    assert torch.allclose(branch(images), branch(shuffled), atol=1e-5)
    recolored = images.flip(1)  # the same places, other colors: another output
    assert not torch.allclose(branch(images), branch(recolored), atol=1e-3)


def test_one_step_trains_the_model_and_the_bias_branch(train_tensors, batch_of):
    algorithm = build(train_tensors)
    model = copy.deepcopy(algorithm.model.state_dict())
    branch = copy.deepcopy(algorithm.bias_branch.state_dict())
    stats = algorithm.update(batch_of(train_tensors, 32), 0)
    assert {"loss", "ce", "fused_ce", "bias_ce"} <= set(stats)
    assert any(not torch.equal(v, model[k]) for k, v in algorithm.model.state_dict().items())
    assert any(not torch.equal(v, branch[k])
               for k, v in algorithm.bias_branch.state_dict().items())


def test_training_state_round_trips(train_tensors, batch_of, assert_resumes_exactly):
    assert_resumes_exactly(lambda: build(train_tensors), batch_of(train_tensors, 32),
                           ("model", "bias_branch"))
