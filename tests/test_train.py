"""The trainer on the tiny synthetic dataset: learning, selection, resume, determinism."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
import torch

from shortcutlab import models
from shortcutlab.artifacts import read_json, read_jsonl
from shortcutlab.errors import ShortcutlabError
from shortcutlab.train import ERM, TrainConfig, build_config, train_run
from shortcutlab.train.config import lr_factor, parse_selection

TINY = {"model": "cnn3", "model_kwargs": {"width": 4, "hidden": 16}, "batch_size": 32,
        "lr": 0.05, "threads": 1, "device": "cpu"}


def tiny_run(data, out, **overrides):
    settings = {**TINY, "steps": 40, "eval_every": 10, **overrides}
    return train_run(data, out, preset=None, **settings)


def weights(run_dir):
    return torch.load(run_dir / "model.pt", weights_only=True)


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_training_lowers_the_loss_and_writes_the_run_dir(tiny_data, tmp_path):
    metrics = tiny_run(tiny_data, tmp_path / "run", steps=60)
    log = read_jsonl(tmp_path / "run" / "log.jsonl")
    assert [r["step"] for r in log] == [10, 20, 30, 40, 50, 60]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    for key in ("easy_train", "easy_val", "test_easy", "hard", "unbiased",
                "color_following_rate"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["selected_step"] == 60 and metrics["method"] == "erm"
    assert read_json(tmp_path / "run" / "metrics.json") == json.loads(
        json.dumps(metrics))
    config = read_json(tmp_path / "run" / "config.json")
    assert config["trainer"]["steps"] == 60 and config["model"]["name"] == "cnn3"
    assert config["dataset_id"] == read_json(tiny_data / "meta.json")["dataset_id"]
    assert not (tmp_path / "run" / "checkpoints").exists()
    model = models.load(tmp_path / "run")
    assert model(torch.rand(2, 3, 28, 28)).shape == (2, 10)


def test_best_val_selects_the_best_logged_checkpoint(tiny_data, tmp_path):
    metrics = tiny_run(tiny_data, tmp_path / "run", select="best-val")
    log = read_jsonl(tmp_path / "run" / "log.jsonl")
    best = max(log, key=lambda r: (r["easy_val"], -r["step"]))
    assert metrics["selected_step"] == best["step"]
    assert metrics["easy_val"] == pytest.approx(best["easy_val"])


def test_first_rule_stops_at_the_first_checkpoint_that_clears_it(tiny_data, tmp_path):
    full = tiny_run(tiny_data, tmp_path / "full", steps=60, select="last")
    log = read_jsonl(tmp_path / "full" / "log.jsonl")
    threshold = sorted(r["easy_val"] for r in log)[len(log) // 2]
    first = next(r for r in log if r["easy_val"] >= threshold)
    metrics = tiny_run(tiny_data, tmp_path / "first", steps=60,
                       select=f"first:easy_val>={threshold}")
    assert metrics["selected_step"] == first["step"] == metrics["steps_trained"]
    assert metrics["selection_met"]
    assert metrics["easy_val"] == pytest.approx(first["easy_val"])
    assert full["selected_step"] == 60


def test_train_accuracy_is_computed_only_when_the_val_condition_holds(tiny_data, tmp_path):
    tiny_run(tiny_data, tmp_path / "full", steps=60, select="last")
    log = read_jsonl(tmp_path / "full" / "log.jsonl")
    threshold = sorted(r["easy_val"] for r in log)[len(log) // 2]
    rule = f"first:easy_val>={threshold},easy_train>=0.0"
    metrics = tiny_run(tiny_data, tmp_path / "run", steps=60, select=rule)
    log = read_jsonl(tmp_path / "run" / "log.jsonl")
    assert all(("easy_train" in r) == (r["easy_val"] >= threshold) for r in log)
    assert metrics["selected_step"] == log[-1]["step"]
    assert metrics["easy_train"] == pytest.approx(log[-1]["easy_train"])
    # an unreachable train condition keeps training, checking train only where val holds
    metrics = tiny_run(tiny_data, tmp_path / "never", steps=60,
                       select=f"first:easy_val>={threshold},easy_train>=1.5")
    assert not metrics["selection_met"] and metrics["selected_step"] == 60


def test_a_rule_that_never_fires_keeps_the_last_checkpoint(tiny_data, tmp_path, capsys):
    metrics = tiny_run(tiny_data, tmp_path / "run", select="first:easy_val>=1.5")
    assert metrics["selected_step"] == 40 and not metrics["selection_met"]
    assert "never fired" in capsys.readouterr().err


def test_dense_evaluation_near_the_threshold(tiny_data, tmp_path):
    tiny_run(tiny_data, tmp_path / "run", steps=40, eval_every=20, eval_dense_every=5,
             eval_dense_margin=2.0, select="first:easy_val>=1.5")
    steps = [r["step"] for r in read_jsonl(tmp_path / "run" / "log.jsonl")]
    assert steps == [20, 25, 30, 35, 40]


class Interrupt(Exception):
    pass


def interrupt_at(step):
    def callback(record):
        if record["step"] == step:
            raise Interrupt
    return callback


@pytest.mark.parametrize("select", ["last", "best-val"])
def test_resume_gives_the_same_model_as_an_uninterrupted_run(tiny_data, tmp_path, select):
    tiny_run(tiny_data, tmp_path / "straight", select=select)
    with pytest.raises(Interrupt):
        tiny_run(tiny_data, tmp_path / "resumed", select=select, on_eval=interrupt_at(20))
    assert (tmp_path / "resumed" / "checkpoints" / "state.pt").is_file()
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    with pytest.raises(ShortcutlabError, match="--resume"):
        tiny_run(tiny_data, tmp_path / "resumed", select=select)
    metrics = tiny_run(tiny_data, tmp_path / "resumed", select=select, resume=True)
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed")
    straight = read_json(tmp_path / "straight" / "metrics.json")
    assert metrics["selected_step"] == straight["selected_step"]
    drop = {"elapsed_s"}
    logs = [[{k: v for k, v in r.items() if k not in drop} for r in read_jsonl(p / "log.jsonl")]
            for p in (tmp_path / "straight", tmp_path / "resumed")]
    assert logs[0] == logs[1]
    # resuming a finished run is a no-op that returns its metrics
    again = tiny_run(tiny_data, tmp_path / "resumed", select=select, resume=True)
    assert again == metrics


def test_resume_refuses_different_settings(tiny_data, tmp_path):
    with pytest.raises(Interrupt):
        tiny_run(tiny_data, tmp_path / "run", on_eval=interrupt_at(10))
    with pytest.raises(ShortcutlabError, match="lr"):
        tiny_run(tiny_data, tmp_path / "run", lr=0.1, resume=True)
    # runtime settings may change between a run and its resume
    tiny_run(tiny_data, tmp_path / "run", checkpoint_every=5, resume=True)


def test_same_seed_same_model_other_seed_other_model(tiny_data, tmp_path):
    tiny_run(tiny_data, tmp_path / "a", steps=20, seed=3)
    tiny_run(tiny_data, tmp_path / "b", steps=20, seed=3)
    tiny_run(tiny_data, tmp_path / "c", steps=20, seed=4)
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    wa, wc = weights(tmp_path / "a"), weights(tmp_path / "c")
    assert not torch.equal(wa["features.conv1.weight"], wc["features.conv1.weight"])


def test_force_overwrites_an_existing_run(tiny_data, tmp_path):
    tiny_run(tiny_data, tmp_path / "run", steps=10)
    metrics = tiny_run(tiny_data, tmp_path / "run", steps=20, force=True)
    assert metrics["steps_trained"] == 20


def test_unknown_settings_are_rejected_with_the_valid_keys():
    with pytest.raises(ShortcutlabError, match="batch_size"):
        build_config("lazy", learning_rate=0.1)
    with pytest.raises(ShortcutlabError, match="preset"):
        build_config("nope")
    with pytest.raises(ShortcutlabError, match="first:"):
        build_config(None, select="first:easy_val=0.9")
    with pytest.raises(ShortcutlabError, match="optimizer"):
        build_config(None, optimizer="lbfgs")


def test_method_hyperparameters_reach_the_algorithm(tiny_data, tmp_path):
    seen = {}

    class Scaled(ERM):
        name = "scaled-erm-test"
        default_hparams: ClassVar[dict] = {"loss_scale": 1.0}

        def setup(self, context):
            seen["scale"] = self.hparams["loss_scale"]
            seen["num_train"] = context.num_train
            seen["train_keys"] = sorted(context.train)

    tiny_run(tiny_data, tmp_path / "run", steps=10, algorithm=Scaled, loss_scale=0.5)
    assert seen == {"scale": 0.5, "num_train": seen["num_train"],
                    "train_keys": ["colors", "images", "labels", "masks"]}
    assert read_json(tmp_path / "run" / "config.json")["hparams"] == {"loss_scale": 0.5}
    with pytest.raises(ShortcutlabError, match="loss_scale"):
        build_config(None, Scaled, loss_scael=0.5)


def test_a_method_can_exclude_its_first_stage_from_selection(tiny_data, tmp_path):
    class TwoStage(ERM):
        name = "two-stage-test"

        def selectable(self, step):
            return step > 20

    metrics = tiny_run(tiny_data, tmp_path / "run", steps=40, select="first:easy_val>=0.0",
                       algorithm=TwoStage)
    assert metrics["selected_step"] == 30


def test_an_intervention_trains_by_name_in_a_fresh_interpreter(tiny_data, tmp_path):
    """``algorithm="jtt"`` needs no import of shortcutlab.intervene first, and the
    intervention's own hyperparameters are resolved by its table (defaults, types)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    run = tmp_path / "jtt"
    settings = {**TINY, "model_kwargs": {"width": 2, "hidden": 8}, "batch_size": 16,
                "steps": 4, "eval_every": 2}
    script = "\n".join([
        "import sys",
        "from shortcutlab.train import get_algorithm, train_run",
        "assert not [m for m in sys.modules if m.startswith('shortcutlab.intervene')]",
        f"metrics = train_run({str(tiny_data)!r}, {str(run)!r}, preset=None, "
        f"algorithm='jtt', upweight='5', **{settings!r})",
        "assert metrics['method'] == 'jtt', metrics",
        "assert get_algorithm('jtt').__module__ == 'shortcutlab.intervene.methods.jtt'",
    ])
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src, "SHORTCUTLAB_PROGRESS": "0"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert read_json(run / "config.json")["hparams"] == {"identify_fraction": 0.2,
                                                         "upweight": 5}
    with pytest.raises(ShortcutlabError, match="jtt hyperparameters: identify_fraction"):
        build_config(None, "jtt", upweigth=5)
    with pytest.raises(ShortcutlabError, match="upweight"):
        build_config(None, "jtt", upweight="many")
    with pytest.raises(ShortcutlabError, match=r"unknown training algorithm 'nonsense'; "
                                               r"choose one of: .*jtt"):
        build_config(None, "nonsense")


def test_lr_schedules():
    config = TrainConfig(schedule="cosine", warmup_steps=10)
    assert lr_factor(config, 0, 110) == pytest.approx(0.1)
    assert lr_factor(config, 10, 110) == pytest.approx(1.0)
    assert lr_factor(config, 60, 110) == pytest.approx(0.5)
    linear = TrainConfig(schedule="linear")
    assert lr_factor(linear, 50, 100) == pytest.approx(0.5)
    step = TrainConfig(schedule="step", step_every=10, step_gamma=0.5)
    assert lr_factor(step, 25, 100) == pytest.approx(0.25)


def test_selection_rules_parse():
    rule = parse_selection("first:easy_val_conflicting<0.2")
    assert rule.fires({"easy_val_conflicting": 0.1})
    assert not rule.fires({"easy_val_conflicting": 0.3})
    both = parse_selection("first:easy_val>=0.95, easy_train>=0.96")
    assert both.metrics == ("easy_val", "easy_train")
    assert both.distance({"easy_val": 0.94}) == pytest.approx(0.01)
    assert not both.fires({"easy_val": 0.97, "easy_train": 0.955})
    assert parse_selection("best-val").kind == "best"
    for bad in ("first:", "first:easy_val>=0.9,", "first:easy_val=0.9", "worst"):
        with pytest.raises(ShortcutlabError):
            parse_selection(bad)


def test_an_unknown_selection_metric_is_reported(tiny_data, tmp_path):
    with pytest.raises(ShortcutlabError, match="easy_val"):
        tiny_run(tiny_data, tmp_path / "run", steps=10, select="first:hard<0.2")


def test_a_killed_training_process_resumes_to_the_same_model(tiny_data, tmp_path):
    """SIGKILL the CLI once it has written a checkpoint, then resume: same final weights."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    settings = {**TINY, "model_kwargs": {"width": 2, "hidden": 8}, "batch_size": 16,
                "steps": 300, "eval_every": 50, "select": "best-val"}
    run = tmp_path / "killed"
    command = [sys.executable, "-m", "shortcutlab", "train", "--data", str(tiny_data),
               "--out", str(run), "--preset", "none", "--model", "cnn3",
               "--model-arg", "width=2", "--model-arg", "hidden=8", "--batch-size", "16",
               "--steps", "300", "--eval-every", "50", "--lr", "0.05", "--select", "best-val",
               "--threads", "1", "--device", "cpu"]
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src, "SHORTCUTLAB_PROGRESS": "0"}
    process = subprocess.Popen(command, env=env)
    checkpoint = run / "checkpoints" / "state.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if (run / "metrics.json").exists():
        pytest.skip("the run finished before it could be killed")
    assert checkpoint.exists()
    train_run(tiny_data, run, preset=None, resume=True, **settings)
    train_run(tiny_data, tmp_path / "straight", preset=None, **settings)
    assert (run / "model.pt").read_bytes() == (tmp_path / "straight" / "model.pt").read_bytes()


def test_a_missing_split_is_reported_before_training_and_blocks_nothing(tiny_data, tmp_path,
                                                                         capsys):
    import shutil

    from shortcutlab.cli import main

    partial = tmp_path / "data"
    shutil.copytree(tiny_data, partial)
    (partial / "test_hard.npz").unlink()
    run = tmp_path / "run"
    argv = ["train", "--data", str(partial), "--out", str(run), "--steps", "4",
            "--batch-size", "16", "--model-arg", "width=4", "--model-arg", "hidden=8"]
    assert main(argv) == 2
    assert "lacks test_hard.npz" in capsys.readouterr().err
    assert not (run / "config.json").exists()  # the corrected command is not blocked
    shutil.copy(tiny_data / "test_hard.npz", partial / "test_hard.npz")
    assert main(argv) == 0
