"""``shortcutlab attack`` end to end on the tiny dataset, its statistics and its errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from shortcutlab import models
from shortcutlab.artifacts import load_npz
from shortcutlab.attack.experiment import (
    distribution,
    paired_comparison,
    quantile,
    source_images,
)
from shortcutlab.cli import main
from shortcutlab.data import Split
from shortcutlab.errors import ShortcutlabError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory, train_tiny):
    root = tmp_path_factory.mktemp("attack_runs")
    models.save(train_tiny(tiny_data, steps=150, seed=0), root / "lazy")
    models.save(train_tiny(tiny_data, steps=60, seed=1), root / "other")
    return root / "lazy", root / "other"


LIMIT = 8
EPS = 0.05


@pytest.fixture(scope="module")
def cli_out(tiny_data, runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("attack_out")
    code = main(["attack", str(runs[0]), "--compare", str(runs[1]), "--data", str(tiny_data),
                 "--split", "test_easy", "--source", "7", "--target", "3", "--confidence",
                 "0.9", "--eps", str(EPS), "--steps", "4", "--limit", str(LIMIT),
                 "--out", str(out), "--save-examples"])
    assert code == 0
    return out


def test_cli_writes_the_documented_attack_json(cli_out):
    summary = json.loads((cli_out / "attack.json").read_text())
    assert summary["split"] == "test_easy"
    assert [m["role"] for m in summary["models"]] == ["run", "compare"]
    assert [m["name"] for m in summary["models"]] == ["lazy", "other"]
    for model in summary["models"]:
        assert model["n"] == LIMIT
        assert 0.0 <= model["success_rate_at_eps"] <= 1.0
        assert set(model["min_eps"]) >= {"median", "q1", "q3", "max", "mean", "n_found"}
        stats = model["min_eps"]
        if stats["n_found"] == LIMIT:
            assert stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"]
        assert set(model["masked"]) == {"background", "digit"}
        for masked in model["masked"].values():
            assert masked["n"] == LIMIT and 0.0 <= masked["success_rate_at_eps"] <= 1.0
            assert "median" in masked["min_eps"]
    comparison = summary["comparison"]
    assert comparison["run"] == "lazy" and comparison["compare"] == "other"
    for region in ("all", "background", "digit"):
        assert {"median_ratio", "p_value", "n_pairs", "ties"} <= set(comparison[region])
    assert summary["settings"]["eps"] == EPS and summary["attack"]["norm"] == "linf"


def test_transfer_rates_are_checked_on_the_other_model(cli_out, runs, tiny_data):
    """The transfer block: every region's rate is a share, and it is taken over exactly
    the images that fooled their own model at the budget."""
    summary = json.loads((cli_out / "attack.json").read_text())
    transfer = summary["comparison"]["transfer"]
    assert set(transfer["run_to_compare"]) == {"all", "background", "digit"}
    for key in ("run_to_compare", "compare_to_run"):
        for row in transfer[key].values():
            assert row["transfer_rate"] is None or 0.0 <= row["transfer_rate"] <= 1.0
    made = next(m for m in summary["models"] if m["role"] == "run")
    assert transfer["run_to_compare"]["all"]["n_fooled"] == round(
        made["success_rate_at_eps"] * made["n"])


def test_cli_per_image_files_agree_with_the_summary(cli_out, runs):
    summary = json.loads((cli_out / "attack.json").read_text())
    per_image = load_npz(cli_out / "min_eps.npz", summary["files"]["min_eps.npz"])
    for model in summary["models"]:
        eps = per_image[f"{model['role']}_all"]
        assert len(eps) == LIMIT
        median = quantile(eps, 0.5)
        assert model["min_eps"]["median"] == (median if math.isfinite(median) else None)


def test_cli_examples_are_honest(cli_out, runs):
    summary = json.loads((cli_out / "attack.json").read_text())
    examples = load_npz(cli_out / "examples.npz", summary["files"]["examples.npz"])
    original, adversarial = examples["original"], examples["adversarial"]
    assert original.shape == adversarial.shape == (LIMIT, 3, 28, 28)
    assert original.dtype == adversarial.dtype == np.float32
    assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
    assert np.abs(adversarial - original).max() <= EPS + 1e-6
    assert examples["target_prob"].shape == (LIMIT,)
    model = models.load(runs[0])
    with torch.no_grad():
        probs = model(torch.from_numpy(adversarial)).softmax(dim=1).numpy()
    np.testing.assert_allclose(examples["target_prob"], probs[:, 3], atol=1e-5)
    assert np.array_equal(examples["success"], (probs.argmax(1) == 3) & (probs[:, 3] >= 0.9))
    assert "compare_adversarial" in examples


def test_cli_draws_its_figures(cli_out):
    for name in ("examples_at_eps.png", "examples_min_eps.png", "min_eps.png"):
        data = (cli_out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


@pytest.mark.parametrize(("flags", "message"), [
    (["--confidence", "1.5"], "confidence"),
    (["--confidence", "0"], "confidence"),
    (["--eps", "0.0505"], "multiple"),
    (["--source", "3"], "differ"),
    (["--source", "12"], "class"),
    (["--regions", "all,sky"], "regions"),
])
def test_cli_rejects_bad_input_clearly(tiny_data, runs, tmp_path, capsys, flags, message):
    code = main(["attack", str(runs[0]), "--data", str(tiny_data), "--out", str(tmp_path),
                 "--steps", "1", "--limit", "2", *flags])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "attack.json").exists()


def test_cli_explains_a_missing_model(tiny_data, tmp_path, capsys):
    assert main(["attack", str(tmp_path / "nope"), "--data", str(tiny_data),
                 "--out", str(tmp_path / "out")]) == 2
    assert "model" in capsys.readouterr().err


def test_cli_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["attack", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--compare" in text and "example" in text


def test_a_split_without_the_source_class_is_an_error():
    images = np.zeros((3, 28, 28, 3), np.uint8)
    split = Split("test_hard", images, np.array([1, 2, 3]), np.array([0, 0, 0]),
                  np.zeros((3, 28, 28), bool))
    with pytest.raises(ShortcutlabError, match="no image of class 7"):
        source_images(split, 7)


# -- statistics ------------------------------------------------------------------------------
def test_quantiles_let_unfound_images_through_as_infinity():
    values = np.array([0.1, 0.2, 0.3, np.inf])
    assert quantile(values, 0.5) == pytest.approx(0.25)
    assert quantile(values, 1.0) == math.inf
    assert quantile(values, 0.9) == math.inf
    stats = distribution(values)
    assert stats["max"] is None and stats["mean"] is None and stats["n_found"] == 3
    assert stats["median"] == pytest.approx(0.25)


def test_paired_comparison_detects_a_consistent_difference():
    rng = np.random.default_rng(0)
    lazy = np.round(rng.uniform(0.05, 0.2, size=60), 3)
    robust = lazy * 1.5 + 0.01
    result = paired_comparison(lazy, robust)
    assert result["median_ratio"] == pytest.approx(np.median(robust) / np.median(lazy))
    assert result["p_value"] < 1e-6 and result["compare_needs_more"] == 1.0
    same = paired_comparison(lazy, lazy.copy())
    assert same["p_value"] is None and same["ties"] == 60 and same["median_ratio"] == 1.0
    noisy = paired_comparison(lazy, lazy + rng.normal(0, 0.01, size=60))
    assert noisy["p_value"] > 0.01
    with_inf = paired_comparison(np.append(lazy, 0.1), np.append(robust, np.inf))
    assert with_inf["n_pairs"] == 60
