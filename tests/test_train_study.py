"""The study's Task 1 stages: train and evaluate the lazy and standard presets."""

from __future__ import annotations

from shortcutlab.artifacts import read_json


def test_study_trains_and_evaluates_the_lazy_model(tmp_path):
    from shortcutlab.study import STAGES, run_study

    stages = {stage.name: stage for stage in STAGES}
    assert stages["lazy"].run is stages["standard"].run  # one stage function, two presets

    config = tmp_path / "study.toml"
    config.write_text(
        '[data]\nsource = "synthetic"\nlimit = 400\n'
        '[lazy]\nmodel = "mlp"\nsteps = 20\nswap_images = 20\n'
        '[standard]\nmodel = "mlp"\nepochs = 1.0\nswap_images = 20\n'
    )
    report = run_study(tmp_path / "study", config, only=("lazy",))
    assert report.ran == ["data", "lazy"]
    summary = read_json(tmp_path / "study" / "summary.json")["stages"]
    for stage in ("lazy",):
        entry = summary[stage]
        assert set(entry["metrics"]) >= {"easy_train", "easy_val", "hard", "color_following_rate"}
        assert (tmp_path / "study" / stage / "run" / "metrics.json").is_file()
        for figure in entry["figures"]:
            assert (tmp_path / "study" / stage / figure["path"]).is_file()
    assert summary["lazy"]["metrics"]["selected_step"] <= 20
    html = (tmp_path / "study" / "report.html").read_text()
    assert "Task 1" in html and "it reads color" in html and "A red 1" in html
    # a second run skips what is done
    again = run_study(tmp_path / "study", config, only=("lazy",))
    assert again.ran == []
