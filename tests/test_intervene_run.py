"""Interventions trained end to end by the trainer: run directories, the CLI and the table."""

from __future__ import annotations

import json

import pytest
import torch

from shortcutlab import models
from shortcutlab.artifacts import read_json
from shortcutlab.cli import main
from shortcutlab.errors import ShortcutlabError
from shortcutlab.intervene import intervene_run, run_all

FAST = ["--set", "epochs=2", "--threads", "1"]  # 400 training images: 3 steps per epoch
TRAINER_KEYS = {"easy_train", "easy_val", "test_easy", "hard", "unbiased",
                "color_following_rate", "selected_step"}


@pytest.fixture(scope="module")
def teacher_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    assert main(["intervene", "--method", "teacher", "--data", str(tiny_data), "--out",
                 str(out), *FAST]) == 0
    return out


def test_cli_trains_a_method_into_a_loadable_run(tiny_data, tmp_path, capsys):
    out = tmp_path / "rrr"
    assert main(["intervene", "--method", "rrr", "--data", str(tiny_data), "--out", str(out),
                 "--seed", "1", "--set", "penalty=3", *FAST]) == 0
    assert "hard inverted" in capsys.readouterr().out
    metrics = read_json(out / "metrics.json")
    assert set(metrics) >= TRAINER_KEYS
    assert metrics["method"] == "rrr" and metrics["uses"] == ["masks"]
    assert metrics["hparams"]["penalty"] == 3.0 and metrics["hparams"]["epochs"] == 2
    for key in ("hard_inverted", "background_share"):
        assert 0.0 <= metrics[key] <= 1.0
    config = read_json(out / "config.json")
    assert config["method"] == "rrr" and config["seed"] == 1
    assert config["model"]["name"] == "cnn3" and config["model"]["kwargs"] == {}
    assert config["trainer"]["select"] == "best-val"
    model = models.load(out)
    assert model(torch.rand(2, 3, 28, 28)).shape == (2, 10)
    # The same run again is refused rather than overwritten ...
    assert main(["intervene", "--method", "rrr", "--data", str(tiny_data), "--out", str(out),
                 "--seed", "1", "--set", "penalty=3", *FAST]) == 2
    # ... and --resume returns the finished run unchanged.
    assert main(["intervene", "--method", "rrr", "--data", str(tiny_data), "--out", str(out),
                 "--seed", "1", "--set", "penalty=3", "--resume", *FAST]) == 0
    assert read_json(out / "metrics.json") == metrics


def test_tea_distills_the_teacher_into_a_run(tiny_data, teacher_run, tmp_path):
    metrics = intervene_run(tiny_data, tmp_path / "tea", "tea", teacher_dir=teacher_run,
                            overrides={"epochs": 2}, threads=1)
    assert metrics["method"] == "tea" and metrics["uses"] == ["teacher"]
    student, teacher = models.load(tmp_path / "tea"), models.load(teacher_run)
    # The student's read-out is the teacher's, copied and frozen.
    torch.testing.assert_close(student.classifier.fc2.weight, teacher.classifier.fc2.weight)
    assert not torch.equal(student.classifier.fc1.weight, teacher.classifier.fc1.weight)


def test_tea_without_teacher_says_how_to_get_one(tiny_data, tmp_path):
    with pytest.raises(ShortcutlabError, match="--method teacher"):
        intervene_run(tiny_data, tmp_path / "tea", "tea", overrides={"epochs": 2})
    with pytest.raises(ShortcutlabError, match="no trained model"):
        intervene_run(tiny_data, tmp_path / "tea", "tea", teacher_dir=tmp_path)


def test_all_writes_the_table_and_skips_finished_runs(tiny_data, teacher_run, tmp_path):
    out = tmp_path / "table"
    lines: list[str] = []
    table = run_all(tiny_data, out, seeds=[0], methods=["jtt", "tea"],
                    overrides={"jtt": {"epochs": 2}, "tea": {"epochs": 2},
                               "teacher": {"epochs": 2}},
                    teacher_dir=teacher_run, log=lines.append, threads=1)
    # jtt and tea train with different optimizers, so each has its own control.
    kinds = [(row["kind"], row["name"]) for row in table["rows"]]
    assert [k for k, _ in kinds] == ["method", "control", "method", "control"]
    assert kinds[1][1] != kinds[3][1]
    for name in ("table.md", "table.csv", "table.json", "table.png"):
        assert (out / name).is_file()
    markdown = (out / "table.md").read_text()
    assert "`jtt`" in markdown and "↳ erm-control" in markdown and "hard (inverted)" in markdown
    stored = json.loads((out / "table.json").read_text())
    assert len(stored["runs"]) == 4  # 2 methods + 2 controls
    assert lines[0].startswith("4 runs, 0 already finished")
    model_file = out / "methods" / "jtt" / "seed0" / "model.pt"
    stamp = model_file.stat().st_mtime_ns
    lines.clear()
    again = run_all(tiny_data, out, seeds=[0], methods=["jtt", "tea"],
                    overrides={"jtt": {"epochs": 2}, "tea": {"epochs": 2}},
                    teacher_dir=teacher_run, log=lines.append, threads=1)
    assert lines[0].startswith("4 runs, 4 already finished")
    assert model_file.stat().st_mtime_ns == stamp
    assert json.dumps(again["rows"]) == json.dumps(table["rows"])  # NaN-aware

    # --table-only: a seed that was never trained is listed and counted, not trained.
    lines.clear()
    partial = run_all(tiny_data, out, seeds=[0, 1], methods=["jtt", "tea"],
                      overrides={"jtt": {"epochs": 2}, "tea": {"epochs": 2}},
                      teacher_dir=teacher_run, log=lines.append, train=False)
    assert lines[0].startswith("8 runs, 4 already finished")
    assert sum(line.startswith("missing:") for line in lines) == 4
    assert not (out / "methods" / "jtt" / "seed1").exists()
    assert [row["seeds"] for row in partial["rows"]] == [1, 1, 1, 1]
    assert json.dumps(partial["rows"]) == json.dumps(table["rows"])


def fail_method(monkeypatch, method: str, error: Exception):
    """Make the table's runs of ``method`` raise ``error``; return the real trainer."""
    from shortcutlab.intervene import table as table_module

    real = table_module.intervene_run

    def failing(data_dir, run_dir, name, **kwargs):
        if name == method:
            raise error
        return real(data_dir, run_dir, name, **kwargs)

    monkeypatch.setattr(table_module, "intervene_run", failing)
    return real


def test_a_diverged_run_is_listed_and_does_not_stop_the_table(tiny_data, tmp_path,
                                                             monkeypatch):
    from shortcutlab.errors import TrainingDiverged
    from shortcutlab.intervene import table as table_module

    real = fail_method(monkeypatch, "jtt", TrainingDiverged(
        "jtt diverged at step 3 of 6: its loss is not finite"))
    out = tmp_path / "table"
    lines: list[str] = []
    settings = {"jtt": {"epochs": 2}, "groupdro": {"epochs": 2}}
    table = run_all(tiny_data, out, seeds=[0], methods=["jtt", "groupdro"],
                    overrides=settings, log=lines.append, threads=1)
    rows = {(row["kind"], row["name"]): row for row in table["rows"]}
    assert rows[("method", "jtt")]["seeds"] == 0
    assert rows[("method", "jtt")]["diverged_seeds"] == [0]
    assert rows[("method", "groupdro")]["seeds"] == 1  # the rest of the table trained
    assert table["targets"]["diverged"] == ["jtt"]
    assert any("jtt seed 0 diverged" in line for line in lines)
    markdown = (out / "table.md").read_text()
    assert "0 (+1 diverged)" in markdown and "its loss is not finite" in markdown
    assert (out / "methods" / "jtt" / "seed0" / "diverged.json").is_file()

    # Training is deterministic: a second pass skips the diverged run instead of retrying.
    monkeypatch.setattr(table_module, "intervene_run", real)
    lines.clear()
    again = run_all(tiny_data, out, seeds=[0], methods=["jtt", "groupdro"],
                    overrides=settings, log=lines.append, threads=1)
    assert lines[0].startswith("3 runs, 3 already finished")
    assert again["targets"]["diverged"] == ["jtt"]
    # Other settings are another run: the old divergence does not apply to it.
    lines.clear()
    retried = run_all(tiny_data, out, seeds=[0], methods=["jtt", "groupdro"],
                      overrides={**settings, "jtt": {"epochs": 2, "upweight": 5}},
                      log=lines.append, threads=1)
    assert retried["targets"]["diverged"] == []


def _sweep_table(tiny_data, out, **kwargs):
    return run_all(tiny_data, out, seeds=[0], methods=["groupdro"],
                   overrides={"groupdro": {"epochs": 1}}, log=lambda line: None, **kwargs)


def _trial_states(out, storage=None):
    import optuna

    from shortcutlab.sweep.storage import default_url, normalize_url

    url = normalize_url(storage) if storage else default_url(out)
    names = [s.study_name for s in optuna.get_all_study_summaries(url)
             if s.study_name.startswith("intervene-")]
    return {name: sorted(t.state.name for t in optuna.load_study(study_name=name, storage=url)
                         .get_trials()) for name in names}, url


def test_all_runs_as_a_sweep_with_two_workers_and_resumes(tiny_data, tmp_path):
    out = tmp_path / "table"
    table = _sweep_table(tiny_data, out, workers=2)
    assert [row["seeds"] for row in table["rows"]] == [1, 1]
    states, _ = _trial_states(out)
    assert list(states.values()) == [["COMPLETE", "COMPLETE"]]  # the method and its control
    records = sorted((out / "runs").glob("*/sweep_trial.json"))
    assert len(records) == 2
    model = out / "methods" / "groupdro" / "seed0" / "model.pt"
    stamp = model.stat().st_mtime_ns
    again = _sweep_table(tiny_data, out, workers=2)  # everything finished: trains nothing
    assert model.stat().st_mtime_ns == stamp
    assert json.dumps(again["rows"]) == json.dumps(table["rows"])
    assert _trial_states(out)[0] == states


def test_a_failed_run_is_named_and_tried_again(tiny_data, tmp_path, monkeypatch):
    from shortcutlab.intervene import table as table_module

    real = fail_method(monkeypatch, "erm-control", RuntimeError("disk full"))
    out = tmp_path / "table"
    with pytest.raises(ShortcutlabError, match=r"1 run\(s\) failed: control erm-\w+ seed 0"):
        _sweep_table(tiny_data, out)
    errors = list((out / "runs").glob("*/sweep_error.json"))
    assert len(errors) == 1 and "disk full" in errors[0].read_text()
    assert (out / "methods" / "groupdro" / "seed0" / "model.pt").is_file()  # kept
    monkeypatch.setattr(table_module, "intervene_run", real)
    table = _sweep_table(tiny_data, out)  # the cause is gone: the failed run trains now
    assert [row["seeds"] for row in table["rows"]] == [1, 1]


@pytest.mark.postgres
def test_all_runs_on_postgres(tiny_data, tmp_path, postgres_url):
    import optuna

    out = tmp_path / "table"
    try:
        table = _sweep_table(tiny_data, out, workers=2, storage=postgres_url)
        assert [row["seeds"] for row in table["rows"]] == [1, 1]
        assert not (out / "sweep.db").exists()
    finally:
        states, url = _trial_states(out, postgres_url)
        for name in states:
            optuna.delete_study(study_name=name, storage=url)
    assert list(states.values()) == [["COMPLETE", "COMPLETE"]]
