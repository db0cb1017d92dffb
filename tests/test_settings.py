"""The trainer's settings are declared once: TrainConfig, the train flags and their help
come from one table, so the command line and a config refuse a value in the same words."""

from __future__ import annotations

import argparse

import pytest

from shortcutlab.cli import build_parser, main
from shortcutlab.errors import ShortcutlabError
from shortcutlab.settings import SETTINGS
from shortcutlab.train.config import TrainConfig

BAD = {"lr": "0", "momentum": "1", "weight_decay": "-1", "batch_size": "0", "epochs": "-2",
       "steps": "0", "warmup_steps": "-3", "eval_every": "0", "optimizer": "rmsprop",
       "schedule": "wavy"}


def test_every_trainer_setting_is_declared_once():
    assert set(SETTINGS) == set(TrainConfig.keys())
    TrainConfig().validate()  # the defaults satisfy their own declarations


def test_every_flag_of_train_comes_from_a_declaration():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {action.dest: action for action in train._actions}
    for name, setting in SETTINGS.items():
        if name in ("device", "threads"):  # every model-running command's shared flags
            continue
        assert (name in flags) == setting.flag, name
        if setting.flag:
            assert flags[name].help == setting.help


@pytest.mark.parametrize("name", sorted(BAD))
def test_the_flag_and_the_config_refuse_a_value_in_the_same_words(name, capsys, tmp_path):
    setting = SETTINGS[name]
    text = BAD[name]
    value = text if setting.kinds == (str,) else (float(text) if float in setting.kinds
                                                  else int(text))
    with pytest.raises(ShortcutlabError) as refused:
        TrainConfig(**{name: value}).validate()
    flag = f"--{name.replace('_', '-')}"
    code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), flag, text])
    err = capsys.readouterr().err
    assert code == 2 and flag in err
    if setting.choices is None:  # argparse words a bad choice itself
        assert setting.describe() in str(refused.value) and setting.describe() in err
    assert not (tmp_path / "run").exists()


def test_a_flag_parses_its_kind():
    assert SETTINGS["lr"].parse("0.5") == 0.5
    assert SETTINGS["batch_size"].parse("32") == 32
    with pytest.raises(argparse.ArgumentTypeError, match="an integer"):
        SETTINGS["batch_size"].parse("3.5")
    with pytest.raises(ShortcutlabError, match="grad_clip must be a number in"):
        TrainConfig(grad_clip=float("nan")).validate()
    with pytest.raises(ShortcutlabError, match="early_stop must be true or false"):
        TrainConfig(early_stop="yes").validate()


@pytest.mark.parametrize("quick", [False, True])
def test_the_study_defaults_pass_their_commands_checks(quick):
    from shortcutlab.study.config import load_config
    from shortcutlab.study.options import check_study_options
    from shortcutlab.study.run import STAGES

    checks = {stage.name: stage.options for stage in STAGES if stage.options is not None}
    assert set(checks) == {stage.name for stage in STAGES}  # every stage is checked
    check_study_options(load_config(None, quick=quick), checks)
