"""A run that diverges stops with TrainingDiverged and writes no model; a sane one is not
flagged."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from shortcutlab.artifacts import read_jsonl
from shortcutlab.errors import ShortcutlabError, TrainingDiverged
from shortcutlab.train import ERM, TrainConfig
from shortcutlab.train.metrics import below_chance, chance_floor, chance_level
from shortcutlab.train.trainer import MIN_JUDGED_STEPS, train

pytestmark = pytest.mark.usefixtures("one_thread")

# tiny_data: 400 training images, so batches of 32 make 12 steps an epoch; a run is
# judged against chance from MIN_JUDGED_STEPS on (or once it was clearly above chance)
PER_EPOCH = 12


def config(**overrides) -> TrainConfig:
    settings = {"model": "cnn3", "model_kwargs": {"width": 8, "hidden": 32},
                "optimizer": "adam", "lr": 3e-3, "batch_size": 32, "steps": 36,
                "eval_every": 4, "threads": 1, "device": "cpu", **overrides}
    return TrainConfig(**settings)


class NaNAt(ERM):
    """Plain cross-entropy whose reported loss turns into ``BAD`` from 0-based step ``AT``."""

    name = "nan-at"
    AT = 9
    BAD = math.nan

    def update(self, batch, step):
        scalars = super().update(batch, step)
        return {"loss": self.BAD} if step >= self.AT else scalars


class InfAt(NaNAt):
    name = "inf-at"
    BAD = math.inf


class WrongClass(ERM):
    """Learns to answer, for every image, the class after its label: always wrong."""

    name = "wrong-class"

    def update(self, batch, step):
        loss = F.cross_entropy(self.model(batch.images), (batch.labels + 1) % 10)
        self.step_optimizer(loss)
        return {"loss": float(loss.detach())}


class TurnsWrong(ERM):
    """Plain cross-entropy until ``SWITCH`` (easy val well above chance), then the output
    layer's rows are rolled by one, so each answer becomes the next class, and it stops
    learning."""

    name = "turns-wrong"
    SWITCH = 30

    def update(self, batch, step):
        if step < self.SWITCH:
            return super().update(batch, step)
        if step == self.SWITCH:
            with torch.no_grad():
                last = self.model.classifier.fc2
                last.weight.copy_(last.weight.roll(1, 0))
                last.bias.copy_(last.bias.roll(1, 0))
        return {"loss": 1.0}


def assert_no_model(run):
    for name in ("model.pt", "model.json", "metrics.json"):
        assert not (run / name).exists(), name
    assert not (run / "checkpoints").exists()
    assert (run / "config.json").is_file()


@pytest.mark.parametrize("algorithm", [NaNAt, InfAt])
def test_a_non_finite_loss_stops_the_run_naming_method_and_step(tiny_data, tmp_path,
                                                                algorithm):
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as caught:
        train(tiny_data, run, config(), algorithm=algorithm)
    message = str(caught.value)
    step = algorithm.AT + 1  # counted like log.jsonl: the 10th update
    assert algorithm.name in message and f"step {step} of 36" in message
    assert str(algorithm.BAD) in message
    assert "--lr" in message and "grad_clip" in message and "--force" in message
    assert isinstance(caught.value, ShortcutlabError)  # the CLI prints it, no traceback
    assert_no_model(run)
    # the evaluations before the failure stay in the log (steps 4 and 8)
    assert [record["step"] for record in read_jsonl(run / "log.jsonl")] == [4, 8]


def test_a_real_blow_up_is_caught_before_a_model_is_written(tiny_data, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"erm diverged at step \d+ of 36"):
        train(tiny_data, run, config(optimizer="sgd", lr=1e12))
    assert_no_model(run)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_model_trained_to_be_wrong_is_caught_once_it_is_judged(tiny_data, tmp_path, seed):
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as caught:
        train(tiny_data, run, config(steps=150, eval_every=10), algorithm=WrongClass,
              seed=seed)
    message = str(caught.value)
    log = read_jsonl(run / "log.jsonl")
    judged_early = max(record["easy_val"] for record in log[:-1]) >= 2 * chance_level(10)
    assert log[-1]["step"] >= MIN_JUDGED_STEPS or judged_early
    assert below_chance(log[-1]["easy_val"], chance_level(10))
    assert f"wrong-class diverged at step {log[-1]['step']} of 150" in message
    assert f"accuracy is {log[-1]['easy_val']:.3f}" in message
    assert "below chance" in message and "0.100" in message
    assert "--lr" in message and "grad_clip" in message
    assert_no_model(run)


def test_a_fall_below_chance_is_caught_early_once_the_run_was_clearly_above(tiny_data,
                                                                            tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="turns-wrong diverged") as caught:
        # batches of 8: 50 steps an epoch
        train(tiny_data, run, config(batch_size=8, steps=50, eval_every=5, lr=0.01),
              algorithm=TurnsWrong)
    log = read_jsonl(run / "log.jsonl")
    assert max(record["easy_val"] for record in log) >= 2 * chance_level(10)
    assert log[-1]["step"] < 50 and f"step {log[-1]['step']} " in str(caught.value)
    assert "down from" in str(caught.value)
    assert_no_model(run)


def test_evaluations_before_a_minimum_of_training_are_not_judged(tiny_data, tmp_path):
    """An untrained or barely trained model may score anything on color-biased data."""
    run = tmp_path / "run"
    train(tiny_data, run, config(steps=2 * PER_EPOCH, eval_every=1), algorithm=WrongClass)
    log = read_jsonl(run / "log.jsonl")
    assert any(below_chance(record["easy_val"], chance_level(10)) for record in log)
    assert (run / "model.pt").is_file() and (run / "metrics.json").is_file()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_normal_erm_run_is_not_flagged(tiny_data, tmp_path, seed):
    run = tmp_path / "run"
    metrics = train(tiny_data, run, config(steps=150, eval_every=10, select="best-val"),
                    seed=seed)
    assert metrics["easy_val"] > chance_level(10)
    assert (run / "model.pt").is_file() and (run / "metrics.json").is_file()
    assert all(math.isfinite(record["train_loss"]) for record in read_jsonl(run / "log.jsonl"))


def test_sgd_erm_with_the_trainer_defaults_is_not_flagged(tiny_data, tmp_path):
    for seed in (0, 1):
        metrics = train(tiny_data, tmp_path / f"run{seed}",
                        config(optimizer="sgd", lr=0.05, steps=150, eval_every=10),
                        seed=seed)
        assert metrics["steps_trained"] == 150


def test_below_chance_has_a_margin_under_the_chance_floor():
    chance = chance_level(10)
    assert chance == pytest.approx(0.1)
    assert below_chance(0.012, chance) and below_chance(0.07, chance)
    assert not below_chance(0.09, chance)   # a constant answer of a rarer class
    assert not below_chance(0.1, chance) and not below_chance(None, chance)
    assert below_chance(0.3, chance_level(2)) and not below_chance(0.4, chance_level(2))


def test_the_chance_floor_is_the_worst_constant_answer_when_classes_are_unbalanced():
    balanced = torch.arange(10).repeat(10)
    assert chance_floor(balanced, 10) == pytest.approx(0.1)
    assert chance_floor(torch.arange(5).repeat(10), 10) == pytest.approx(0.1)  # 5 absent
    few = torch.cat([torch.zeros(4, dtype=torch.long), torch.arange(1, 10).repeat(12)])
    assert chance_floor(few, 10) == pytest.approx(4 / 112)

