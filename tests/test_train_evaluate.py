"""``shortcutlab evaluate`` and the train/evaluate CLI, end to end on the tiny dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from shortcutlab import models
from shortcutlab.artifacts import read_json
from shortcutlab.cli import main
from shortcutlab.data import load_split
from shortcutlab.train.evaluate import confusion_matrix, evaluate_model, split_report


class ColorReader(nn.Module):
    """Predicts the class that owns the image's mean background color: a perfect cheater."""

    def __init__(self) -> None:
        super().__init__()
        from shortcutlab.data import palette_array

        self.register_buffer("palette", torch.from_numpy(palette_array()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # background pixels are the darker ones; their mean color points at the palette
        brightness = x.mean(1, keepdim=True)
        background = (brightness < brightness.flatten(1).median(1).values[:, None, None, None])
        mean = (x * background).sum((2, 3)) / background.sum((2, 3)).clamp(min=1)
        mean = mean / mean.norm(dim=1, keepdim=True).clamp(min=1e-6)
        palette = self.palette / self.palette.norm(dim=1, keepdim=True)
        return 10 * mean @ palette.T


def test_split_report_counts():
    labels = np.array([0, 0, 1, 1])
    colors = np.array([0, 1, 1, 0])
    predictions = np.array([0, 1, 1, 1])
    report = split_report(labels, colors, predictions)
    assert report["accuracy"] == 0.75
    assert report["per_class"][:2] == [0.5, 1.0] and report["per_class"][2] is None
    assert report["aligned"] == 1.0 and report["conflicting"] == 0.5
    assert report["color_following"] == 0.75
    assert confusion_matrix(labels, predictions)[0].tolist()[:2] == [1, 1]


def test_a_pure_color_reader_follows_color_everywhere(tiny_data):
    report = evaluate_model(ColorReader(), tiny_data, swap_images=100)
    hard = load_split(tiny_data, "test_hard")
    # the color reader is the hypothesis the evaluation must be able to prove
    assert report["metrics"]["color_following_rate"] > 0.9
    assert report["metrics"]["hard"] < 0.1
    assert report["splits"]["test_easy"]["aligned"] > 0.9
    assert report["splits"]["test_easy"]["conflicting"] < 0.1
    for mode in ("random", "inverted"):
        entry = report["hard_modes"][mode]
        assert entry["color_following"] > 0.9
        assert sum(map(sum, entry["confusion"])) == len(hard)
    inverted = np.array(report["hard_modes"]["inverted"]["confusion"])
    assert (inverted.argmax(1) == (np.arange(10) + 1) % 10).all()  # 1 in blue -> 2, ...
    swap = np.array(report["color_swap"]["follows_color"], dtype=float)
    assert np.nanmean(swap) > 0.9
    assert report["metrics"]["color_swap_follows_color"] > 0.9


def test_train_and_evaluate_from_the_command_line(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--data", str(tiny_data), "--out", str(run), "--preset", "none",
                 "--model", "cnn3", "--model-arg", "width=4", "--model-arg", "hidden=16",
                 "--steps", "30", "--eval-every", "10", "--batch-size", "32", "--lr", "0.05",
                 "--threads", "1", "--select", "best-val"])
    assert code == 0
    out = capsys.readouterr().out
    assert "easy_val" in out and "hard" in out
    metrics = read_json(run / "metrics.json")
    assert metrics["selection"] == "best-val"
    assert read_json(run / "config.json")["model"]["kwargs"] == {"width": 4, "hidden": 16}

    # an existing run is protected; a bad setting is a clear error, not a traceback
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--preset", "none"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "x"),
                 "--set", "eval_evry=3"]) == 2
    assert "eval_every" in capsys.readouterr().err

    code = main(["evaluate", str(run), "--data", str(tiny_data), "--swap-images", "50",
                 "--threads", "1"])
    assert code == 0
    report = read_json(run / "evaluate" / "evaluate.json")
    for name in ("confusion_random.png", "confusion_inverted.png", "color_swap.png",
                 "per_class.png"):
        assert (run / "evaluate" / name).read_bytes().startswith(b"\x89PNG")
    assert report["metrics"]["easy_val"] == pytest.approx(metrics["easy_val"])
    assert report["metrics"]["hard"] == pytest.approx(metrics["hard"])
    assert report["metrics"]["color_following_rate"] == pytest.approx(
        metrics["color_following_rate"])
    assert len(report["color_swap"]["follows_color"]) == 10
    assert report["model"]["name"] == "cnn3"


def test_evaluate_without_a_model_says_what_to_do(tiny_data, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--data", str(tiny_data)]) == 2
    assert "shortcutlab train" in capsys.readouterr().err


def test_models_load_after_training(tiny_data, tmp_path):
    from shortcutlab.train import train_run

    train_run(tiny_data, tmp_path / "r", preset=None, model="mlp", model_kwargs={"hidden": 8},
              steps=5, eval_every=5, threads=1)
    assert isinstance(models.load(tmp_path / "r"), nn.Module)


def test_cell_mean_weighs_every_digit_color_pair_alike():
    from shortcutlab.train.metrics import cell_mean_accuracy, split_scores

    # Cell (0, 0): 8 images, all right; cell (1, 2): 2 images, none right.
    labels = torch.tensor([0] * 8 + [1] * 2)
    colors = torch.tensor([0] * 8 + [2] * 2)
    correct = torch.tensor([True] * 8 + [False] * 2)
    assert cell_mean_accuracy(correct, labels, colors) == pytest.approx(0.5)
    logits = torch.nn.functional.one_hot(torch.tensor([0] * 8 + [0] * 2), 10).float()
    scores = split_scores(logits, labels, colors)
    assert scores["acc"] == pytest.approx(0.8) and scores["cell_mean"] == pytest.approx(0.5)


def test_evaluation_reuses_the_trainers_predictions_only_for_the_same_model_and_data(
        tiny_data, tmp_path):
    from shortcutlab.data import BuildConfig, build_dataset, load_source
    from shortcutlab.train import train_run
    from shortcutlab.train.evaluate import evaluate_run, run_predictions

    run = tmp_path / "run"
    train_run(tiny_data, run, preset=None, model="cnn3", model_kwargs={"width": 4, "hidden": 16},
              steps=20, eval_every=10)
    known = run_predictions(run, tiny_data)
    # the selected model's own predictions, split by split, in split order
    assert set(known) == {"train", "val", "test_easy", "test_hard", "test_unbiased"}
    fresh = evaluate_model(models.load(run), tiny_data, swap_images=0)
    for split, predictions in known.items():
        data = load_split(tiny_data, split)
        expected = models.batched_forward(models.load(run), data.images, 100,
                                          fn=lambda m, x: m(x).argmax(1), to_cpu=True)
        assert np.array_equal(predictions, expected.numpy()), split
    reused = evaluate_run(run, tiny_data, tmp_path / "evaluate", swap_images=0)
    assert reused["splits"] == fresh["splits"]

    # another model in the run directory, or another dataset: predict again
    other = tmp_path / "other_data"
    build_dataset(BuildConfig(source="synthetic", limit=100, seed=1), other,
                  load_source("synthetic", limit=100))
    assert run_predictions(run, other) == {}
    torch.manual_seed(1)
    models.save(models.create("cnn3", width=4, hidden=16), run)
    assert run_predictions(run, tiny_data) == {}
