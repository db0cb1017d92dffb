"""Did an intervention converge? The still-rising rule, the learning-curve figures, and
each method's control trained with exactly its budget."""

from __future__ import annotations

import json
import warnings

import pytest

from shortcutlab.artifacts import read_json, read_jsonl
from shortcutlab.cli import main
from shortcutlab.intervene import run_all
from shortcutlab.intervene.convergence import (
    FIGURE,
    UndertrainedWarning,
    assess,
    assess_run,
    still_rising,
)
from shortcutlab.intervene.run import intervene_run

pytestmark = pytest.mark.usefixtures("one_thread")

# 400 training images, 32 per step: 12 steps per epoch, an evaluation every 6 steps. At a
# constant learning rate easy val is still climbing steeply after two epochs.
EARLY = ["--set", "epochs=2", "--set", "batch_size=32", "--set", "schedule=constant"]


# --- the rule -------------------------------------------------------------------------

@pytest.mark.parametrize("values", [
    [0.2, 0.4, 0.6, 0.8],                  # climbing to the end
    [0.90, 0.90, 0.90, 0.93],              # a plateau left for a last jump
    [0.5, 0.9, 0.6, 0.7, 0.8, 0.85, 0.9],  # an early spike, then a climb past the window
    [0.5, None, 0.6, float("nan"), 0.7],   # missing evaluations are skipped
])
def test_still_rising_fires_on_a_climb(values):
    assert still_rising(values)


@pytest.mark.parametrize("values", [
    [],
    [0.5],                                         # one evaluation: nothing to compare
    [0.2, 0.9, 0.95, 0.97, 0.97, 0.97, 0.97],      # a flat plateau
    [0.2, 0.9, 0.970, 0.971, 0.972, 0.973],        # a plateau creeping up within tolerance
    [0.2, 0.9, 0.97, 0.975, 0.968, 0.972],         # a noisy plateau
    [0.2, 0.6, 0.9, 0.8],                          # fell at the end
    [0.2, 0.95, 0.7, 0.8, 0.9],                    # climbing, but below an earlier value
])
def test_still_rising_is_silent_on_a_plateau_or_a_fall(values):
    assert not still_rising(values)


def test_still_rising_window_and_tolerance():
    values = [0.80, 0.90, 0.917, 0.92]
    assert still_rising(values)                          # 0.92 vs mean(0.80, 0.90, 0.917)
    assert not still_rising(values, window=1)            # 0.92 vs 0.917: within 0.005 ...
    assert still_rising(values, window=1, tolerance=0.001)  # ... but not within 0.001
    assert not still_rising(values, tolerance=0.1)


def _records(values, every=6):
    return [{"step": every * (i + 1), "easy_val": v, "easy_val_conflicting": v / 2}
            for i, v in enumerate(values)]


def test_assess_needs_the_last_evaluation_selected():
    records = _records([0.2, 0.4, 0.6, 0.8])
    verdict = assess(records, {"selection": "best-val", "selected_step": 24,
                               "hparams": {"epochs": 2}})
    assert verdict["undertrained"] and verdict["suggested_epochs"] == 4
    assert "step 24" in verdict["reason"] and "easy_val" in verdict["reason"]
    assert "--set epochs=4" in verdict["advice"]
    # The same curve whose best checkpoint came earlier (it fell at the end, say): silent.
    earlier = assess(records, {"selection": "best-val", "selected_step": 18,
                               "hparams": {"epochs": 2}})
    assert not earlier["undertrained"] and earlier["reason"] is None
    # A first: rule stops where it fires; there is nothing to be still rising.
    first = assess(records, {"selection": "first:easy_val>=0.7", "selected_step": 24})
    assert not first["undertrained"] and first["metric"] is None


def _crafted_run(path, values, selected_step):
    path.mkdir()
    lines = "".join(json.dumps(r) + "\n" for r in _records(values))
    (path / "log.jsonl").write_text(lines)
    (path / "metrics.json").write_text(json.dumps(
        {"selection": "best-val", "selected_step": selected_step, "epochs_trained": 3.0}))
    return path


def test_assess_run_reads_a_run_directory(tmp_path):
    plateau = _crafted_run(tmp_path / "plateau", [0.3, 0.8, 0.95, 0.955, 0.956, 0.957], 36)
    assert not assess_run(plateau)["undertrained"]
    rising = _crafted_run(tmp_path / "rising", [0.3, 0.5, 0.7, 0.8, 0.85, 0.9], 36)
    verdict = assess_run(rising)
    assert verdict["undertrained"] and verdict["suggested_epochs"] == 6


# --- end to end -----------------------------------------------------------------------

def test_an_early_stopped_run_is_flagged(tiny_data, tmp_path, capsys):
    out = tmp_path / "early"
    assert main(["intervene", "--method", "erm-control", "--data", str(tiny_data), "--out",
                 str(out), *EARLY, "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "looks undertrained" in err and "--set epochs=4" in err
    metrics = read_json(out / "metrics.json")
    steps = [r["step"] for r in read_jsonl(out / "log.jsonl")]
    assert metrics["selected_step"] == steps[-1]
    assert metrics["undertrained"] is True
    assert metrics["convergence"]["suggested_epochs"] == 4
    assert "still rising" in metrics["convergence"]["reason"]
    assert metrics["convergence"]["figure"] == FIGURE and (out / FIGURE).is_file()
    # The library says it as a warning.
    with pytest.warns(UndertrainedWarning, match="--set epochs=4"):
        intervene_run(tiny_data, out, "erm-control", resume=True, measure=False,
                      overrides={"epochs": 2, "batch_size": 32, "schedule": "constant"})


# --- --all: each method's control trains with exactly its budget -----------------------

OVERRIDES = {"reweight": {"epochs": 1},
             "groupdro": {"epochs": 1, "batch_size": 64, "lr": 0.002, "schedule": "constant"}}


@pytest.fixture(scope="module")
def table_dir(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("table")
    lines: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndertrainedWarning)  # run_all logs them instead
        table = run_all(tiny_data, out, seeds=[0], methods=["reweight", "groupdro"],
                        overrides=OVERRIDES, log=lines.append, threads=1)
    return out, table, lines


@pytest.mark.parametrize("method", ["reweight", "groupdro"])
def test_each_control_has_its_methods_budget(table_dir, method):
    out, table, _ = table_dir
    control = next(r["name"] for r in table["rows"]
                   if r["kind"] == "control" and r["paired_with"] == method)
    ran = out / "methods" / method / "seed0"
    paired = out / "controls" / control / "seed0"
    configs = read_json(ran / "config.json"), read_json(paired / "config.json")
    assert configs[1]["method"] == "erm-control"
    # The whole trainer setting: optimizer, lr, momentum, weight decay, clipping, batch
    # size, epochs/steps, schedule, warmup, evaluation cadence, selection rule.
    assert configs[0]["trainer"] == configs[1]["trainer"]
    for key, value in OVERRIDES[method].items():
        assert configs[0]["trainer"][key] == value
    assert configs[0]["seed"] == configs[1]["seed"]
    metrics = read_json(ran / "metrics.json"), read_json(paired / "metrics.json")
    for key in ("steps_trained", "epochs_trained", "selection"):
        assert metrics[0][key] == metrics[1][key]
    logs = [[r["step"] for r in read_jsonl(d / "log.jsonl")] for d in (ran, paired)]
    assert logs[0] == logs[1]  # evaluated at the same steps
    assert [r["lr"] for r in read_jsonl(ran / "log.jsonl")] == \
        [r["lr"] for r in read_jsonl(paired / "log.jsonl")]


def test_all_draws_one_convergence_figure_per_method(table_dir):
    out, table, lines = table_dir
    controls = {r["name"] for r in table["rows"] if r["kind"] == "control"}
    assert len(controls) == 2  # groupdro's settings differ, so it has a control of its own
    figures = table["convergence"]["figures"]
    assert figures == {"reweight": "convergence/reweight.png",
                       "groupdro": "convergence/groupdro.png"}
    for path in figures.values():
        assert (out / path).is_file()
        assert f"`{path}`" in (out / "table.md").read_text()
        assert any(line.endswith(str(out / path)) for line in lines)
    assert read_json(out / "table.json")["convergence"]["figures"] == figures
    for run in ("methods/reweight/seed0", "methods/groupdro/seed0",
                *(f"controls/{key}/seed0" for key in controls)):
        assert (out / run / FIGURE).is_file()
        assert isinstance(read_json(out / run / "metrics.json")["undertrained"], bool)
    flagged = {(u["kind"], u["name"]) for u in table["convergence"]["undertrained"]}
    for kind, name in flagged:
        assert any(line.startswith(f"warning: {kind} {name} seed 0 looks undertrained")
                   for line in lines)
