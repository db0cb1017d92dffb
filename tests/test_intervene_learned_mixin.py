"""LearnedMixin + H: the color model learns from its own loss only, the gate and the model
from the ensemble, hooks never outlive a step, and training resumes exactly."""

from __future__ import annotations

import copy

import pytest
import torch

from shortcutlab import models
from shortcutlab.hooks import hook_count
from shortcutlab.intervene.hparams import resolve_hparams
from shortcutlab.intervene.methods.learned_mixin import LearnedMixin
from shortcutlab.train.algorithm import TrainContext

pytestmark = pytest.mark.usefixtures("one_thread")


def build(tensors, **overrides) -> LearnedMixin:
    torch.manual_seed(0)
    algorithm = LearnedMixin(models.create("cnn3", width=4, hidden=16),
                             resolve_hparams("learned-mixin", overrides))
    algorithm.setup(TrainContext(num_train=len(tensors["labels"]), total_steps=10,
                                 device=torch.device("cpu"), train=tensors,
                                 generator=torch.Generator().manual_seed(0)))
    return algorithm


def test_the_color_model_learns_only_from_its_own_loss(train_tensors, batch_of):
    """The ensemble sees the color model's prediction as given (Clark et al.): the same
    step with and without the ensemble's terms moves the color model alike."""
    batch = batch_of(train_tensors, 32)
    branches = []
    for entropy_weight in (0.0, 2.0):
        algorithm = build(train_tensors, entropy_weight=entropy_weight)
        before = copy.deepcopy(algorithm.gate.state_dict())
        algorithm.update(batch, 0)
        branches.append(copy.deepcopy(algorithm.bias_branch.state_dict()))
        assert any(not torch.equal(v, before[k]) for k, v in algorithm.gate.state_dict().items())
        assert hook_count(algorithm.model) == 0
    for key, value in branches[0].items():
        torch.testing.assert_close(value, branches[1][key], rtol=0, atol=0)


def test_one_step_logs_its_terms_and_trains_the_model(train_tensors, batch_of):
    algorithm = build(train_tensors)
    model = copy.deepcopy(algorithm.model.state_dict())
    stats = algorithm.update(batch_of(train_tensors, 32), 0)
    assert {"loss", "ce", "ensemble_ce", "bias_ce", "entropy"} <= set(stats)
    assert all(torch.isfinite(torch.tensor(list(stats.values()))))
    assert any(not torch.equal(v, model[k]) for k, v in algorithm.model.state_dict().items())


def test_training_state_round_trips(train_tensors, batch_of):
    first = build(train_tensors)
    batch = batch_of(train_tensors, 32)
    first.update(batch, 0)
    second = build(train_tensors)
    second.load_training_state(copy.deepcopy(first.training_state()))
    first.update(batch, 1)
    second.update(batch, 1)
    for mine, theirs in ((first.model, second.model), (first.gate, second.gate),
                         (first.bias_branch, second.bias_branch)):
        for key, value in mine.state_dict().items():
            assert torch.allclose(value, theirs.state_dict()[key]), key
