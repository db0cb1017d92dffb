"""``shortcutlab explain`` end to end on the tiny dataset with tiny models trained here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shortcutlab.cli import main
from shortcutlab.data import load_split

PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("one_thread")  # the runs below are trained on it too


@pytest.fixture(scope="module")
def tiny_runs(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny cnn3 runs (different recipes and seeds) trained with the real trainer."""
    from shortcutlab.train import train_run

    root = tmp_path_factory.mktemp("explain_runs")
    runs = []
    for name, preset, seed in (("lazy", "lazy", 0), ("standard", "standard", 1)):
        out = root / name
        train_run(tiny_data, out, preset=preset, seed=seed, model_kwargs={"width": 4,
                  "hidden": 16}, steps=40, eval_every=20, select="last")
        runs.append(out)
    return runs[0], runs[1]


def splits_of(summary: dict, role: str) -> dict:
    return summary["models"][role]["splits"]


def test_explain_cli_with_comparison(tiny_data, tiny_runs, tmp_path, capsys):
    lazy, standard = tiny_runs
    out = tmp_path / "lrp"
    code = main(["explain", str(lazy), "--data", str(tiny_data), "--method", "lrp",
                 "--epsilon", "0.01", "--compare", str(standard), "--out", str(out),
                 "--limit", "64", "--sanity-images", "4", "--examples", "3",
                 "--splits", "test_easy", "test_hard", "--threads", "1",
                 "--faithfulness", "24", "--removal-steps", "4", "--fill", "road"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "background share" in printed and "explain.json" in printed
    summary = json.loads((out / "explain.json").read_text())
    assert summary["method"] == "lrp"
    assert summary["method_options"] == {"rule": "epsilon", "epsilon": 0.01}
    assert set(summary["models"]) == {"model", "compare"}
    assert summary["models"]["model"]["label"] == "lazy"
    assert summary["models"]["compare"]["label"] == "standard"
    for role in ("model", "compare"):
        splits = summary["models"][role]["splits"]
        assert set(splits) == {"test_easy", "test_hard"}
        for metrics in splits.values():
            assert metrics["n"] == 64
            share = metrics["background_share"]
            assert 0.0 <= share["mean"] <= 1.0 and share["n"] + share["undefined"] == 64
            assert 0.0 <= metrics["pointing_game"] <= 1.0
            assert 0.0 < metrics["background_area"] < 1.0
            assert 0.0 <= metrics["accuracy"] <= 1.0
        hard = splits["test_hard"]["conflicting"]
        assert hard["n"] == 64  # no hard image has its own color
        answers = hard["by_answer"]
        assert sum(part["n"] for part in answers.values()) == 64
        if "digit" in answers:
            assert answers["digit"]["accuracy"] == 1.0
        stages = summary["sanity"][role]["randomized_from_top"]
        assert stages[0].startswith("none") and stages[-1] == "features.conv1"
    from shortcutlab.explain import headline

    short = headline(summary)
    assert short["method"] == "lrp" and short["compare"]["label"] == "standard"
    assert short["model"]["test_hard"]["background_share"] == \
        splits_of(summary, "model")["test_hard"]["background_share"]["mean"]
    for role in ("model", "compare"):
        curves = summary["faithfulness"][role]
        assert curves["n"] == 24 and curves["fill"] == "road" and curves["split"] == "test_hard"
        assert curves["fractions"] == [0.0, 0.25, 0.5, 0.75, 1.0]
        assert set(curves["auc"]) == {"map", "random", "background-first", "digit-first"}
        for curve in curves["curve"].values():
            assert curve[0] == pytest.approx(curves["clean"])
            # the same fill everywhere at 100% removed: every order ends at the same point
            assert curve[-1] == pytest.approx(curves["curve"]["map"][-1], abs=0.05)
    figures = summary["figures"]
    assert set(figures) == {"aha", "shares", "examples", "sanity", "sanity_maps", "aha_images",
                            "aha_panel", "faithfulness"}
    assert figures["aha_images"] == "test splits"
    panel = figures["aha_panel"]  # the panel's digits: test_easy images in their own color
    easy = load_split(tiny_data, "test_easy")
    assert panel["split"] == "test_easy" and panel["digits"] == list(range(10))
    assert [int(easy.labels[i]) for i in panel["index"]] == panel["digits"]
    assert all(easy.colors[i] == easy.labels[i] for i in panel["index"])
    for key in ("aha", "shares", "examples", "sanity", "sanity_maps", "faithfulness"):
        assert (out / figures[key]).read_bytes()[:8] == PNG


def test_explain_cli_gradcam_single_model_json_only(tiny_data, tiny_runs, tmp_path):
    lazy, _ = tiny_runs
    out = tmp_path / "gradcam"
    assert main(["explain", str(lazy), "--data", str(tiny_data), "--out", str(out),
                 "--limit", "40", "--sanity-images", "0", "--no-figures", "--faithfulness", "0",
                 "--target", "label", "--layer", "features.relu3"]) == 0
    summary = json.loads((out / "explain.json").read_text())
    assert summary["method"] == "gradcam" and summary["target"] == "label"
    assert summary["method_options"] == {"layer": "features.relu3"}
    assert set(summary["models"]) == {"model"} and summary["sanity"] == {}
    assert summary["faithfulness"] == {}
    assert summary["figures"] == {}
    assert sorted(p.name for p in out.iterdir()) == ["explain.json"]


def test_explain_cli_errors_are_clear(tiny_data, tmp_path, capsys):
    assert main(["explain", str(tmp_path), "--data", str(tiny_data),
                 "--out", str(tmp_path / "out")]) == 2
    assert "holds no trained model" in capsys.readouterr().err
    assert main(["explain", str(tmp_path), "--data", str(tmp_path / "missing"),
                 "--out", str(tmp_path / "out")]) == 2
    assert "not a shortcutlab dataset" in capsys.readouterr().err


def test_explain_help_lists_methods(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = capsys.readouterr().out
    for word in ("gradcam", "gradcampp", "lrp", "ixg", "ig", "--compare", "explain.json"):
        assert word in text
