"""The whole study, end to end on the synthetic source: every stage, the report, resuming,
re-running exactly what a config change affects, and the report in a real browser."""

from __future__ import annotations

import dataclasses
import shutil
import tomllib

import pytest

from shortcutlab.artifacts import read_json

# A study small enough for the test suite: synthetic digits, tiny budgets everywhere. The
# plain tables win over the [quick.*] defaults, so the study also runs with quick=True.
TINY = """
[study]
device = "cpu"
[data]
source = "synthetic"
limit = 400
[lazy]
steps = 20
swap_images = 20
[standard]
model = "mlp"
epochs = 1.0
swap_images = 20
[cured]
epochs = 1.0
[probe]
steps = 4
max_units = 2
facet_units = 1
facets = 2
logit_samples = 1
per_digit = 1
exemplar_images = 50
judge = false
[explain]
limit = 20
sanity_images = 2
examples = 2
faithfulness = 16
removal_steps = 4
[attack]
limit = 6
steps = 5
regions = ["all"]
max_eps = 0.5
precision = 0.01
[sae]
expansion = 2
steps = 20
images = 100
per_digit = 1
"""

ALL_STAGES = ["data", "lazy", "standard", "cured", "probe", "explain", "attack", "sae"]


def write_config(path, extra: str = ""):
    path.write_text(TINY + extra)
    return path


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    """The tiny study with ``device = "cpu"`` on a machine that claims a CUDA GPU: a stage
    that ignored the study's device would pick CUDA (and fail on a CPU-only build); every
    device a module is moved to is recorded."""
    import torch

    from shortcutlab.study import run_study

    root = tmp_path_factory.mktemp("study")
    config = root / "study.toml"  # in this process (workers = 1), where the patches hold
    config.write_text(TINY.replace("[study]\n", "[study]\nworkers = 1\n"))
    moves: list[torch.device] = []
    original_to = torch.nn.Module.to

    def recording_to(module, *args, **kwargs):
        device = kwargs.get("device", args[0] if args else None)
        if isinstance(device, str | torch.device):
            moves.append(torch.device(device))
        return original_to(module, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: True)
        patch.setattr(torch.nn.Module, "to", recording_to)
        report = run_study(root / "out", config, quick=True)
    QUICK_STUDY_DEVICES.extend(moves)
    return root / "out", config, report


QUICK_STUDY_DEVICES: list = []


def copy_study(quick_study, tmp_path):
    out, config, _ = quick_study
    shutil.copytree(out, tmp_path / "out")
    return tmp_path / "out", config


def test_quick_study_runs_every_stage_and_reports_every_task(quick_study):
    out, _, report = quick_study
    assert report.ran == ALL_STAGES
    summary = read_json(out / "summary.json")
    stages = summary["stages"]
    assert set(stages) == set(ALL_STAGES)
    cured = stages["cured"]
    assert set(cured["methods"]) == {"color-consistency", "jtt"}
    assert cured["run"] == cured["method"] in cured["methods"]
    chosen = cured["methods"][cured["method"]]["easy_val_conflicting"]
    assert all(chosen >= row["easy_val_conflicting"] for row in cured["methods"].values())
    assert (out / "cured" / cured["run"] / "model.json").is_file()
    # the analyses compare or cover the lazy and the cured model
    assert set(stages["probe"]["models"]) == set(stages["sae"]["models"]) == {"lazy", "cured"}
    assert len(stages["attack"]["models"]) == 2 and stages["attack"]["comparison"]
    # Task 5's numbers come from the worst-case ensemble, with FMN beside the bisection
    assert stages["attack"]["attack"]["members"] == ["pgd", "fmn", "apgd-ce", "apgd-dlr"]
    for entry in stages["attack"]["models"].values():
        assert set(entry["by_attack"]) == {"pgd", "fmn", "apgd-ce", "apgd-dlr"}
        assert entry["color_shift"]["region"] == "background"
        assert entry["fmn_vs_bisection"]["n_both"] >= 0
    assert {"min_eps_by_attack.png", "fmn_vs_bisection.png"} <= {
        figure["path"] for figure in stages["attack"]["figures"]}
    assert set(stages["explain"]["methods"]) == {"gradcam", "lrp"}
    for name in ALL_STAGES:
        for figure in stages[name].get("figures", []):
            assert (out / name / figure["path"]).is_file(), (name, figure)
    headline = summary["headline"]
    assert set(headline) == {f"task{k}" for k in range(7)}
    assert headline["task4"]["method"] == cured["method"]
    assert set(summary["timings"]) == set(ALL_STAGES)
    assert 100 * 2**20 < summary["peak_memory_bytes"] < 64 * 2**30  # torch alone is ~200 MiB
    html = (out / "report.html").read_text()
    for task in range(7):
        assert f'id="task{task}"' in html
    assert "above 70% on the hard set" in html and "larger median epsilon" in html
    assert "the worst case of four targeted L-inf attacks" in html and "FMN smaller" in html
    assert "How cheap the shortcut is" in html
    assert "survive a recoloring at least 25 points more often" in html
    assert all(0 <= entry["recolored_kept"] <= 1 for entry in stages["probe"]["models"].values())
    # Task 3's deletion curves and Task 6's fidelity reach the report
    for method in ("gradcam", "lrp"):
        curves = stages["explain"]["methods"][method]["faithfulness"]
        assert set(curves) == {"model", "compare"} and curves["model"]["n"] == 16
    assert "removing the background first hurts the lazy model" in html
    assert "Deletion curves on 16 test_hard images" in html
    assert all(entry["fidelity"]["ce_clean"] > 0 for entry in stages["sae"]["models"].values())
    assert "fidelity" in html and "dense" in html
    for name in ("lazy", "cured"):  # the report links each model's feature browser
        assert f'href="sae/{name}/features.html"' in html
        assert (out / "sae" / name / "features.html").is_file()
    assert "r2" in html and "dead features" in html
    assert html.count("figure missing") == 0
    # Task 3's panel and Task 5's examples link to the same images in the explorer
    panel = stages["explain"]["panel"]
    assert panel["split"] == "test_easy" and len(panel["index"]) == len(panel["digits"]) == 10
    assert f'href="http://127.0.0.1:8765/#split=test_easy&amp;index={panel["index"][0]}"' in html
    examples = stages["attack"]["examples"]
    assert examples["index"] and all(
        f"#split=test_hard&amp;index={index}&amp;attack=3" in html for index in examples["index"])


def test_a_cpu_study_keeps_every_model_on_the_cpu_beside_a_gpu(quick_study):
    out, _, _ = quick_study
    assert QUICK_STUDY_DEVICES, "no stage moved a model: the check saw nothing"
    assert {device.type for device in QUICK_STUDY_DEVICES} == {"cpu"}
    assert read_json(out / "summary.json")["device"] == "cpu"


def with_stage(stages, name, run):
    return [dataclasses.replace(stage, run=run) if stage.name == name else stage
            for stage in stages]


def test_rerun_skips_a_changed_option_reruns_its_stage_and_an_interruption_resumes(
        quick_study, tmp_path, monkeypatch):
    from shortcutlab.study import run as study

    out, config = copy_study(quick_study, tmp_path)
    original = list(study.STAGES)
    assert study.run_study(out, config, quick=True).ran == []
    # the device is a runtime setting: another one re-runs nothing
    assert study.run_study(out, config, quick=True, runtime={"device": "auto"}).ran == []
    changed = write_config(tmp_path / "attack.toml", "[quick.attack]\nsteps = 6\n")
    entered = []

    def interrupted(ctx):
        entered.append(ctx.resume)
        (ctx.out / "partial").write_text("work done before the interruption")
        raise KeyboardInterrupt  # the user presses Ctrl-C during the attack

    monkeypatch.setattr(study, "STAGES", with_stage(original, "attack", interrupted))
    with pytest.raises(KeyboardInterrupt):
        study.run_study(out, changed, quick=True)
    assert read_json(out / "attack" / "stage.json")["status"] == "running"

    attack = next(stage.run for stage in original if stage.name == "attack")

    def resumed(ctx):
        entered.append(ctx.resume)
        assert (ctx.out / "partial").is_file()  # the stage's own files are kept to resume
        return attack(ctx)

    monkeypatch.setattr(study, "STAGES", with_stage(original, "attack", resumed))
    report = study.run_study(out, changed, quick=True)
    assert entered == [False, True]
    assert report.ran == ["attack"]  # only what the change affects
    assert read_json(out / "attack" / "stage.json")["summary"]["settings"]["steps"] == 6


@pytest.mark.slow
def test_a_lazy_change_reruns_exactly_what_reads_the_lazy_model(quick_study, tmp_path):
    from shortcutlab.study import run_study
    from shortcutlab.study.config import load_config
    from shortcutlab.study.pipeline import stage_keys
    from shortcutlab.study.run import STAGES

    out, config = copy_study(quick_study, tmp_path)
    changed = write_config(tmp_path / "lazy.toml", "[quick.lazy]\nsteps = 15\n")
    before, after = (stage_keys(STAGES, load_config(path, quick=True), {"quick": True})
                     for path in (config, changed))
    assert [name for name in ALL_STAGES if before[name] != after[name]] == [
        "lazy", "probe", "explain", "attack", "sae"]
    # one reader of the lazy model re-run for real (the others differ only by their key)
    report = run_study(out, changed, quick=True, only=("explain",))
    assert report.ran == ["lazy", "explain"]
    assert report.skipped == ["data", "cured"]


def test_one_seed_flag_replicates_the_whole_study_on_another_seed(quick_study, tmp_path):
    from shortcutlab.cli import main
    from shortcutlab.study.config import load_config
    from shortcutlab.study.pipeline import stage_keys
    from shortcutlab.study.run import STAGES

    out, config = copy_study(quick_study, tmp_path)
    keys = {seed: stage_keys(STAGES, load_config(config, quick=True, seed=seed),
                             {"quick": True}) for seed in (0, 1)}
    assert all(keys[0][name] != keys[1][name] for name in ALL_STAGES)  # nothing is reused
    assert main(["study", "--out", str(out), "--config", str(config), "--quick",
                 "--seed", "1", "--only", "lazy"]) == 0
    summary = read_json(out / "summary.json")
    assert summary["seed"] == 1 and summary["ran"] == ["data", "lazy"]
    assert summary["stages"]["lazy"]["seed"] == 1
    assert read_json(out / "config.json")["attack"]["seed"] == 1
    first = read_json(quick_study[0] / "summary.json")["stages"]["data"]["dataset_id"]
    assert summary["stages"]["data"]["dataset_id"] != first  # another dataset draw


def test_print_config_shows_the_effective_seeds(capsys):
    from shortcutlab.cli import main

    assert main(["study", "--print-config", "--seed", "7"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed["study"]["seed"] == 7
    assert {table["seed"] for name, table in printed.items()
            if name not in ("study", "quick") and "seed" in table} == {7}


def test_print_config_shows_the_effective_config(capsys, tmp_path):
    from shortcutlab.cli import main
    from shortcutlab.study.config import load_config

    assert main(["study", "--print-config"]) == 0
    text = capsys.readouterr().out
    printed = tomllib.loads(text)
    assert "[quick.attack]" in text and printed.pop("quick")
    assert printed == load_config() and "# " in text  # the defaults, documented
    user = tmp_path / "user.toml"
    user.write_text("[attack]\nlimit = 17\n")
    assert main(["study", "--print-config", "--quick", "--config", str(user)]) == 0
    text = capsys.readouterr().out
    printed = tomllib.loads(text)
    assert printed == load_config(user, quick=True)
    assert printed["attack"]["limit"] == 17  # the user's value wins over the quick default
    assert printed["data"]["limit"] == load_config(quick=True)["data"]["limit"] > 0
    assert "quick" not in printed and "limit = 17" in text


def test_report_is_rebuilt_from_the_artifacts_alone(quick_study, tmp_path):
    from shortcutlab.cli import main

    out, _ = copy_study(quick_study, tmp_path)
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert 'id="task5"' in (out / "report.html").read_text()


def test_the_cured_model_is_chosen_on_easy_val_conflicting_images_only():
    from shortcutlab.study.cured import choose

    rows = {"a": {"easy_val_conflicting": 0.80, "hard": 0.99},
            "b": {"easy_val_conflicting": 0.85, "hard": 0.10},
            "c": {"easy_val_conflicting": 0.85, "hard": 0.50}}
    assert choose(rows) == "b"  # the hard set plays no part; ties go to the first listed


@pytest.mark.browser
def test_quick_study_report_opens_cleanly_in_chromium(quick_study, tmp_path):
    import matplotlib.image

    from shortcutlab.study.report.browser import inspect_page

    out, _, _ = quick_study
    check = inspect_page(out / "report.html", screenshot=tmp_path / "report.png")
    assert check.console_errors == []
    assert check.images >= 15 and check.broken_images == 0
    pixels = matplotlib.image.imread(tmp_path / "report.png")
    assert pixels.std() > 0.05, "the screenshot is blank"


@pytest.mark.slow
def test_the_study_runs_on_a_26_class_source_with_a_users_model(tmp_path, monkeypatch):
    """A user's grayscale source with 26 classes (synthetic glyphs, 32 x 32) and a user's
    network (tests/user_models/usernet.py: BatchNorm, in-place ReLUs, functional calls, a
    residual block) as the lazy and the cured model, through every stage and the report:
    the palette, the class count and the color names follow the source."""
    from pathlib import Path

    import numpy as np

    from shortcutlab.study import run_study
    from test_user_sources import _glyph_source

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "user_models"))
    source = tmp_path / "glyphs.npz"
    np.savez(source, **_glyph_source(train=2000, test=260))  # val keeps conflicting images
    config = tmp_path / "study.toml"
    config.write_text(TINY.replace('source = "synthetic"\nlimit = 400',
                                   f'source = "{source}"\npalette = "wheel"\nlimit = 0')
                      .replace("[lazy]\n", '[lazy]\nmodel = "usernet:build"\n')
                      .replace("[cured]\n", '[cured]\nmodel = "usernet:build"\n'))
    report = run_study(tmp_path / "out", config, quick=True)
    assert sorted(report.ran) == sorted(ALL_STAGES)
    labels = read_json(tmp_path / "out" / "sae" / "lazy" / "labels.json")
    assert len(labels["color_names"]) == 26 and labels["color_names"][25] == "hue 25"
    evaluate = read_json(tmp_path / "out" / "lazy" / "evaluate" / "evaluate.json")
    assert evaluate["classes"] == 26
    probe = read_json(tmp_path / "out" / "probe" / "lazy" / "probe.json")
    assert probe["class_logits"]["count"] == 26  # one class picture per class
    for run in ("lazy/run", "cured/color-consistency"):
        spec = read_json(tmp_path / "out" / run / "model.json")
        assert spec["name"] == "usernet:build" and spec["kwargs"] == {"num_classes": 26}
    assert (tmp_path / "out" / "report.html").is_file()
