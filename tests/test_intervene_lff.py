"""LfF: its weights stay sane at the extremes, the debiased model waits for the biased one,
and whole runs on tiny data never end below chance."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from shortcutlab import models
from shortcutlab.artifacts import read_jsonl
from shortcutlab.intervene.hparams import resolve_hparams
from shortcutlab.intervene.methods.lff import LearningFromFailure, relative_difficulty
from shortcutlab.train import TrainConfig
from shortcutlab.train.algorithm import TrainContext
from shortcutlab.train.metrics import below_chance, chance_level
from shortcutlab.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")

HUGE = torch.finfo(torch.float32).max


def build(tensors, total_steps: int = 100, **overrides) -> LearningFromFailure:
    torch.manual_seed(0)
    model = models.create("cnn3", width=4, hidden=16)
    algorithm = LearningFromFailure(model, resolve_hparams("lff", overrides))
    algorithm.setup(TrainContext(num_train=len(tensors["labels"]), total_steps=total_steps,
                                 device=torch.device("cpu"), train=tensors,
                                 generator=torch.Generator().manual_seed(0)))
    return algorithm


@pytest.mark.parametrize("loss_b, loss_d", [
    ([0.0, 0.0, 1.0, 0.5], [0.0, 1.0, 0.0, 0.5]),
    ([1e-30, 1.0, 1e-12, 1.0], [1.0, 1e-30, 1e-12, 1.0]),
    ([1e30, HUGE, 0.0, HUGE], [0.0, 1e30, HUGE, HUGE]),
])
def test_relative_difficulty_stays_in_zero_one_and_finite(loss_b, loss_d):
    weight = relative_difficulty(torch.tensor(loss_b), torch.tensor(loss_d))
    assert torch.isfinite(weight).all()
    assert ((weight >= 0) & (weight <= 1)).all()


def test_relative_difficulty_follows_which_model_fails():
    weight = relative_difficulty(torch.tensor([1.0, 0.0, 0.5, 0.0]),
                                 torch.tensor([0.0, 1.0, 0.5, 0.0]))
    assert weight.tolist() == pytest.approx([1.0, 0.0, 0.5, 0.0], abs=1e-6)


def test_class_normalized_losses_are_at_most_one_even_when_a_class_has_no_loss(
        train_tensors, batch_of):
    algorithm = build(train_tensors)
    batch = batch_of(train_tensors, 64)
    n = len(train_tensors["labels"])
    for ema in (torch.zeros(n), torch.full((n,), 1e30), torch.rand(n)):
        ema[batch.index[:5]] = 0.0
        scaled = algorithm._class_normalized(ema, batch.index, batch.labels)
        assert torch.isfinite(scaled).all() and (scaled >= 0).all() and (scaled <= 1).all()


def test_the_debiased_model_waits_for_the_biased_one(train_tensors, batch_of):
    algorithm = build(train_tensors, total_steps=100)  # warmup 0.05: the first 5 steps
    assert algorithm.warmup_steps == 5
    assert not algorithm.selectable(5) and algorithm.selectable(6)
    batch = batch_of(train_tensors, 64)
    debiased = copy.deepcopy(algorithm.model.state_dict())
    biased = copy.deepcopy(algorithm.biased.state_dict())
    for step in range(5):
        stats = algorithm.update(batch, step)
        assert math.isfinite(stats["loss"]) and 0.0 <= stats["weight"] <= 1.0
    for key, value in algorithm.model.state_dict().items():
        assert torch.equal(value, debiased[key]), key
    assert not torch.equal(algorithm.biased.features.conv1.weight,
                           biased["features.conv1.weight"])
    algorithm.update(batch, 5)
    assert not torch.equal(algorithm.model.features.conv1.weight,
                           debiased["features.conv1.weight"])


def test_warmup_zero_trains_both_models_from_the_first_step(train_tensors, batch_of):
    algorithm = build(train_tensors, warmup=0.0)
    assert algorithm.warmup_steps == 0 and algorithm.selectable(1)
    before = copy.deepcopy(algorithm.model.features.conv1.weight)
    algorithm.update(batch_of(train_tensors, 64), 0)
    assert not torch.equal(algorithm.model.features.conv1.weight, before)


@pytest.mark.parametrize("warmup", [-0.1, 1.0])
def test_a_warmup_outside_zero_one_is_refused(train_tensors, warmup):
    from shortcutlab.errors import ShortcutlabError

    with pytest.raises(ShortcutlabError, match="warmup"):
        build(train_tensors, warmup=warmup)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lff_on_tiny_data_never_ends_below_chance(tiny_data, tmp_path, seed):
    """The trainer stops a run that falls below chance (TrainingDiverged) or whose loss
    turns non-finite, so finishing is the check; the numbers are asserted too."""
    config = TrainConfig(model="cnn3", model_kwargs={"width": 8, "hidden": 32},
                         optimizer="adam", lr=1e-3, batch_size=64, epochs=20,
                         schedule="cosine", eval_every=3, select="best-val", threads=1,
                         device="cpu")
    metrics = train(tiny_data, tmp_path / "run", config, seed=seed,
                    algorithm=LearningFromFailure)
    log = read_jsonl(tmp_path / "run" / "log.jsonl")
    assert metrics["steps_trained"] == 120
    assert all(math.isfinite(record["train_loss"]) for record in log)
    assert not below_chance(metrics["easy_val"], chance_level(10))
    assert metrics["easy_val"] > chance_level(10)


def test_the_sampled_batch_draws_only_seen_images_in_proportion_to_their_weights(
        train_tensors, batch_of):
    algorithm = build(train_tensors, total_steps=100)
    batch = batch_of(train_tensors, 64)
    algorithm.update(batch, 0)  # the first 64 images are seen, the rest are not
    weights = algorithm._all_weights()
    seen = torch.zeros_like(weights, dtype=torch.bool)
    seen[batch.index] = True
    assert (weights[~seen] == 0).all() and (weights[seen] > 0).any()

    drawn: list[torch.Tensor] = []
    original = torch.multinomial

    def recording(*args, **kwargs):
        result = original(*args, **kwargs)
        drawn.append(result)
        return result

    torch.multinomial = recording
    try:
        for _ in range(200):
            algorithm._sampled_loss()
    finally:
        torch.multinomial = original
    counts = torch.bincount(torch.cat(drawn), minlength=len(weights)).double()
    assert counts[~seen].sum() == 0
    expected = weights.double() / weights.double().sum() * counts.sum()
    heavy = expected > 200  # enough draws for the relative error to be small
    assert heavy.any()
    assert torch.allclose(counts[heavy], expected[heavy], rtol=0.25)


def test_without_sampling_the_official_weighted_batch_trains(train_tensors, batch_of):
    algorithm = build(train_tensors, total_steps=100, sampling=0, warmup=0.0)
    before = copy.deepcopy(algorithm.model.features.conv1.weight)
    stats = algorithm.update(batch_of(train_tensors, 64), 0)
    assert math.isfinite(stats["loss"])
    assert not torch.equal(algorithm.model.features.conv1.weight, before)
