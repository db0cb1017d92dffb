"""The study machinery with workers: independent stages side by side in their own
processes, the same results and report as one after another, a failure stopping the rest.

The stage functions live at module level: a worker process imports them by name."""

from __future__ import annotations

import os
import time

import pytest
import torch

from shortcutlab.artifacts import read_json
from shortcutlab.errors import ShortcutlabError
from shortcutlab.study.pipeline import Stage, StageContext, critical_path, run_pipeline


def _value(ctx: StageContext) -> dict:
    upstream = sum(result.summary["value"] for result in ctx.inputs.values())
    return {"value": ctx.config.get("value", 1) + upstream, "pid": os.getpid(),
            "threads": torch.get_num_threads()}


def _meets(ctx: StageContext) -> dict:
    """Leaves a sign that it started and waits (a minute at most) for its sibling's."""
    root = ctx.out.parent
    (root / f"{ctx.name}.started").write_text("")
    sibling = root / ("c.started" if ctx.name == "a" else "a.started")
    deadline = time.monotonic() + 60
    while not sibling.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return _value(ctx) | {"met": sibling.exists()}


def _fails(ctx: StageContext) -> dict:
    raise ShortcutlabError("stage c cannot go on: its input is bad")


def stages(a=_meets, c=_meets) -> list[Stage]:
    return [Stage("a", a), Stage("b", _value, inputs=("a",)), Stage("c", c),
            Stage("d", _value, inputs=("b", "c"))]


CONFIG = {"a": {"value": 1}, "c": {"value": 5}}


def test_independent_stages_run_side_by_side_with_the_results_of_one_by_one(tmp_path):
    torch.set_num_threads(2)
    together = run_pipeline(tmp_path / "two", stages(), CONFIG, workers=2,
                            log_file=tmp_path / "study.log")
    alone = run_pipeline(tmp_path / "one", stages(a=_value, c=_value), CONFIG)
    assert together.ran == alone.ran == ["a", "b", "c", "d"]  # the stages' order
    summaries = {name: result.summary for name, result in together.results.items()}
    assert summaries["a"]["met"] and summaries["c"]["met"]  # each saw the other running
    assert {name: s["value"] for name, s in summaries.items()} == {
        name: result.summary["value"] for name, result in alone.results.items()}
    pids = {s["pid"] for s in summaries.values()}
    assert len(pids) == 2 and os.getpid() not in pids  # the two workers, not this one
    assert {s["threads"] for s in summaries.values()} == {1}  # 2 threads over 2 workers
    marker = read_json(tmp_path / "two" / "d" / "stage.json")
    assert marker["process"] == summaries["d"]["pid"] and marker["peak_memory_bytes"] > 0
    logged = (tmp_path / "study.log").read_text()
    assert all(f"stage {name}: done" in logged for name in "abcd")


def test_a_finished_study_with_workers_starts_no_process(tmp_path):
    run_pipeline(tmp_path, stages(a=_value, c=_value), CONFIG)
    again = run_pipeline(tmp_path, stages(a=_value, c=_value), CONFIG, workers=2)
    assert again.ran == [] and again.skipped == ["a", "b", "c", "d"]
    changed = run_pipeline(tmp_path, stages(a=_value, c=_value), {**CONFIG, "a": {"value": 2}},
                           workers=2)
    assert changed.ran == ["a", "b", "d"] and changed.skipped == ["c"]
    assert changed.results["d"].summary["value"] == 1 + (1 + 2) + 5


def test_a_failing_stage_stops_what_reads_it_and_raises_its_error(tmp_path):
    with pytest.raises(ShortcutlabError, match="stage c cannot go on"):
        run_pipeline(tmp_path, stages(a=_value, c=_fails), CONFIG, workers=2)
    assert read_json(tmp_path / "c" / "stage.json")["status"] == "running"  # resumable
    assert not (tmp_path / "d").exists()  # it reads c: never started
    done = {name for name in "ab" if (tmp_path / name / "stage.json").is_file()
            and read_json(tmp_path / name / "stage.json")["status"] == "done"}
    assert "a" in done  # a sibling already running is let finish
    report = run_pipeline(tmp_path, stages(a=_value, c=_value), CONFIG, workers=2)
    assert "c" in report.ran and "d" in report.ran and "a" in report.skipped


def test_workers_are_checked(tmp_path):
    from shortcutlab.study.run import study_workers

    assert study_workers(3, torch.device("cpu")) == 3
    assert study_workers(0, torch.device("cuda")) == 1
    assert study_workers(0, torch.device("cpu")) == max(1, min(4, (os.cpu_count() or 1) // 2))
    with pytest.raises(ShortcutlabError, match="workers must be"):
        study_workers(-1, torch.device("cpu"))


def test_the_stage_on_the_longest_chain_starts_first():
    chain = [Stage("data", _value, cost=0.1), Stage("short", _value, inputs=("data",)),
             Stage("long", _value, inputs=("data",), cost=3),
             Stage("after", _value, inputs=("long",), cost=2)]
    rank = critical_path(chain)
    assert rank == {"after": 2, "long": 5, "short": 1, "data": 5.1}
    assert sorted(chain, key=lambda stage: -rank[stage.name])[1].name == "long"
