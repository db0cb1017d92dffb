"""The study machinery: skipping, re-running exactly what changed, resuming, forcing."""

from __future__ import annotations

import pytest
import torch

from shortcutlab.errors import ShortcutlabError
from shortcutlab.study.config import load_config
from shortcutlab.study.pipeline import Stage, StageContext, run_pipeline


class Recorder:
    """Stage functions that record their calls and can be told to fail once."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.fail_once: set[str] = set()

    def stage(self, name: str):
        def run(ctx: StageContext) -> dict:
            self.calls.append((name, ctx.resume))
            (ctx.out / "progress.txt").write_text("partial")
            if name in self.fail_once:
                self.fail_once.discard(name)
                raise KeyboardInterrupt  # an interruption mid-stage
            upstream = sum(result.summary["value"] for result in ctx.inputs.values())
            return {"value": ctx.config.get("value", 1) + upstream}
        return run


def make_stages(recorder: Recorder) -> list[Stage]:
    return [
        Stage("a", recorder.stage("a")),
        Stage("b", recorder.stage("b"), inputs=("a",)),
        Stage("c", recorder.stage("c")),
        Stage("d", recorder.stage("d"), inputs=("b", "c")),
    ]


def names(calls):
    return [name for name, _ in calls]


def test_rerun_skips_and_config_change_reruns_only_downstream(tmp_path):
    recorder = Recorder()
    stages = make_stages(recorder)
    config = {"a": {"value": 1}, "b": {}, "c": {"value": 5}, "d": {}}
    report = run_pipeline(tmp_path, stages, config)
    assert names(recorder.calls) == ["a", "b", "c", "d"]
    assert report.results["d"].summary["value"] == 8  # a=1, b=1+a, c=5, d=1+b+c
    recorder.calls.clear()
    report = run_pipeline(tmp_path, stages, config)
    assert recorder.calls == [] and report.skipped == ["a", "b", "c", "d"]
    run_pipeline(tmp_path, stages, {**config, "c": {"value": 6}})
    assert names(recorder.calls) == ["c", "d"]


def test_interrupted_stage_resumes_and_earlier_stages_are_kept(tmp_path):
    recorder = Recorder()
    stages = make_stages(recorder)
    recorder.fail_once.add("b")
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tmp_path, stages, {})
    assert names(recorder.calls) == ["a", "b"]
    recorder.calls.clear()
    run_pipeline(tmp_path, stages, {})
    assert recorder.calls[0] == ("b", True)  # re-entered with resume, a is not re-run
    assert names(recorder.calls) == ["b", "c", "d"]


def test_force_reruns_stage_and_dependents(tmp_path):
    recorder = Recorder()
    stages = make_stages(recorder)
    run_pipeline(tmp_path, stages, {})
    recorder.calls.clear()
    run_pipeline(tmp_path, stages, {}, force=["a"])
    assert names(recorder.calls) == ["a", "b", "d"]
    with pytest.raises(ShortcutlabError, match="unknown stage"):
        run_pipeline(tmp_path, stages, {}, force=["nope"])


def test_changed_config_wipes_stale_outputs(tmp_path):
    recorder = Recorder()
    stages = make_stages(recorder)
    run_pipeline(tmp_path, stages, {"a": {"value": 1}})
    (tmp_path / "a" / "stale.txt").write_text("from the old config")
    run_pipeline(tmp_path, stages, {"a": {"value": 2}})
    assert not (tmp_path / "a" / "stale.txt").exists()


def test_only_runs_what_is_needed(tmp_path):
    recorder = Recorder()
    run_pipeline(tmp_path, make_stages(recorder), {}, only=["b"])
    assert names(recorder.calls) == ["a", "b"]


def test_config_rejects_unknown_keys_and_applies_quick(tmp_path):
    default = load_config()
    quick = load_config(quick=True)
    assert default["data"]["limit"] == 0 and quick["data"]["limit"] > 0
    user = tmp_path / "user.toml"
    user.write_text("[data]\nbias = 0.9\n")
    assert load_config(user)["data"]["bias"] == 0.9
    user.write_text("[data]\nbais = 0.9\n")
    with pytest.raises(ShortcutlabError, match=r"data\.bais"):
        load_config(user)
    user.write_text("[data\n")
    with pytest.raises(ShortcutlabError, match="not valid TOML"):
        load_config(user)


def test_the_device_reaches_every_stage_and_no_key(tmp_path):
    seen = []

    def stage(ctx: StageContext) -> dict:
        seen.append((ctx.name, ctx.device))
        return {}

    stages = [Stage("a", stage), Stage("b", stage, inputs=("a",))]
    run_pipeline(tmp_path, stages, {}, device="cpu")
    assert seen == [("a", torch.device("cpu")), ("b", torch.device("cpu"))]
    seen.clear()
    # another device is a runtime setting: a finished pipeline is not re-run for it
    report = run_pipeline(tmp_path, stages, {}, device="meta")
    assert seen == [] and report.skipped == ["a", "b"]
    run_pipeline(tmp_path, stages, {}, device="meta", force=["a"])
    assert seen == [("a", torch.device("meta")), ("b", torch.device("meta"))]


def test_the_context_finds_the_dataset_and_the_models(tmp_path):
    found = {}

    def data(ctx):
        return {"dataset": "dataset"}

    def model(ctx):
        return {"run": "run", "method": "jtt"}

    def reader(ctx):
        found.update(dataset=ctx.dataset_dir, models=list(ctx.model_stages()),
                     run=ctx.run_dir("cured"), label=ctx.label("cured"))
        with pytest.raises(ShortcutlabError, match="does not read stage 'lazy'"):
            ctx.input("lazy")
        return {}

    stages = [Stage("data", data), Stage("cured", model),
              Stage("reader", reader, inputs=("data", "cured"))]
    run_pipeline(tmp_path, stages, {})
    assert found == {"dataset": tmp_path / "data" / "dataset", "models": ["cured"],
                     "run": tmp_path / "cured" / "run", "label": "cured (jtt)"}


def test_one_study_seed_is_every_stage_seed_unless_a_stage_sets_its_own(tmp_path):
    default = load_config()
    seeded = [name for name, table in default.items() if "seed" in table]
    assert {"data", "lazy", "standard", "cured", "probe", "explain", "attack", "sae"} <= \
        set(seeded)
    assert all(default[name]["seed"] == default["study"]["seed"] == 0 for name in seeded)
    replicated = load_config(seed=1)
    assert all(replicated[name]["seed"] == 1 for name in seeded)
    user = tmp_path / "user.toml"
    user.write_text("[study]\nseed = 4\n[lazy]\nseed = 9\n")
    config = load_config(user)
    assert config["lazy"]["seed"] == 9 and config["data"]["seed"] == 4
    user.write_text("[study]\nseed = -3\n")
    with pytest.raises(ShortcutlabError, match=r"\[study\] seed"):
        load_config(user)
