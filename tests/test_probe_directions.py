"""Direction objectives (SAE features, mean differences) and feature accentuation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shortcutlab.errors import ShortcutlabError
from shortcutlab.hooks import capture
from shortcutlab.probe.directions import accentuate, color_direction, mean_difference
from shortcutlab.probe.objectives import Channel, Direction
from shortcutlab.probe.visualize import VisConfig, evaluate_objectives, visualize

pytestmark = pytest.mark.usefixtures("one_thread")
LAYER = "features.conv3"


def test_a_one_hot_direction_is_the_channel_mean(small_cnn):
    x = torch.rand(4, 3, 28, 28)
    with capture(small_cnn, [LAYER]) as acts:
        small_cnn(x)
        width = acts[LAYER].shape[1]
        unit = torch.zeros(width)
        unit[3] = 1.0
        along = evaluate_objectives([Direction(LAYER, unit)], acts, 4)
        channel = evaluate_objectives([Channel(LAYER, 3)], acts, 4)
    torch.testing.assert_close(along, channel)
    with pytest.raises(ShortcutlabError, match="coordinates"), \
            capture(small_cnn, [LAYER]) as acts:
        small_cnn(x)
        Direction(LAYER, torch.ones(width + 1))(acts)


def test_mean_difference_is_the_difference_of_mean_activations(small_cnn):
    a, b = torch.rand(6, 3, 28, 28), torch.rand(5, 3, 28, 28) * 0.5
    direction = mean_difference(small_cnn, LAYER, a, b)
    with capture(small_cnn, [LAYER]) as acts, torch.no_grad():
        small_cnn(a)
        mean_a = acts[LAYER].mean(dim=(0, 2, 3))
        small_cnn(b)
        mean_b = acts[LAYER].mean(dim=(0, 2, 3))
    torch.testing.assert_close(direction.vector, mean_a - mean_b, atol=1e-5, rtol=1e-5)
    with pytest.raises(ShortcutlabError, match="both sides"):
        mean_difference(small_cnn, LAYER, a[:0], b)


def test_accentuation_raises_the_objective_and_stays_near_the_image(small_cnn, tiny_data):
    from shortcutlab.data import load_split

    direction = color_direction(small_cnn, LAYER, tiny_data, "yellow", limit=300)
    split = load_split(tiny_data, "test_hard").subset(np.arange(6))
    x, masks = split.image_tensor(), torch.from_numpy(split.masks)
    loose = accentuate(small_cnn, x, direction, masks, steps=30, lr=0.02, closeness=0.1)
    assert bool((loose.after > loose.before).all())
    assert float(loose.images.min()) >= 0.0 and float(loose.images.max()) <= 1.0
    assert ((loose.background_share >= 0) & (loose.background_share <= 1)).all()
    assert np.allclose(loose.area_share, (~masks).flatten(1).float().mean(1).numpy())
    tight = accentuate(small_cnn, x, direction, masks, steps=30, lr=0.02, closeness=100.0)
    moved = lambda result: float((result.images - x).abs().mean())  # noqa: E731
    assert moved(tight) < moved(loose)
    # and the same direction can be visualized from noise like any objective
    vis = visualize(small_cnn, [direction], VisConfig(steps=4), show_progress=False)
    assert vis.images.shape == (1, 1, 3, 28, 28)
    with pytest.raises(ShortcutlabError, match="unknown color"):
        color_direction(small_cnn, LAYER, tiny_data, "teal")


def test_an_sae_feature_becomes_a_direction(tiny_run, tmp_path):
    from shortcutlab import models
    from shortcutlab.cli import main
    from shortcutlab.decompose.run import feature_direction, load_sae

    out = tmp_path / "sae"
    assert main(["sae", "train", str(tiny_run), "--out", str(out), "--steps", "20",
                 "--images", "100", "--expansion", "2", "--threads", "1"]) == 0
    direction = feature_direction(out, 1)
    sae, meta = load_sae(out)
    assert direction.layer == meta["layer"]
    torch.testing.assert_close(direction.vector, sae.W_dec[1].detach())
    model = models.load(tiny_run)
    vis = visualize(model, [direction], VisConfig(steps=4), show_progress=False)
    assert torch.isfinite(vis.values).all()
    with pytest.raises(ShortcutlabError, match="does not exist"):
        feature_direction(out, 10_000)


def test_the_accentuate_command_matches_the_library(tiny_run, tiny_data, tmp_path, train_tiny):
    import json

    from shortcutlab import models
    from shortcutlab.cli import main
    from shortcutlab.data import load_split
    from shortcutlab.probe.directions import accentuate

    other = tmp_path / "other"
    models.save(train_tiny(tiny_data, steps=20, seed=1), other)
    out = tmp_path / "accent"
    assert main(["accentuate", str(tiny_run), "--compare", str(other), "--data",
                 str(tiny_data), "--direction", "color:yellow", "--images", "5", "--steps", "3",
                 "--out", str(out), "--threads", "1"]) == 0
    report = json.loads((out / "accentuate.json").read_text())
    assert (out / "accentuate.png").is_file() and set(report["models"]) == {tiny_run.name,
                                                                         "other"}
    entry = report["models"][tiny_run.name]
    assert entry["layer"] == LAYER and entry["direction"] == "yellow minus the other colors"
    # the same numbers as the library call on the same images
    hard = load_split(tiny_data, "test_hard")
    chosen = hard.subset(np.flatnonzero(hard.labels == 7)[:5])
    model = models.load(tiny_run)
    direction = color_direction(model, LAYER, tiny_data, "yellow")
    accent = accentuate(model, chosen.image_tensor(), direction,
                        torch.from_numpy(chosen.masks), steps=3, lr=0.02, closeness=0.01)
    assert entry["objective_after"] == pytest.approx(float(accent.after.mean()), rel=1e-5)
    assert entry["background_share_of_change"] == pytest.approx(
        float(accent.background_share.mean()), rel=1e-5)
    assert 0.0 <= entry["target_after"] <= 1.0

    assert main(["accentuate", str(tiny_run), "--data", str(tiny_data), "--direction",
                 "class:3-7", "--images", "3", "--steps", "2", "--out", str(tmp_path / "c"),
                 "--threads", "1"]) == 0
    sae = tmp_path / "sae"
    assert main(["sae", "train", str(tiny_run), "--out", str(sae), "--steps", "20",
                 "--images", "100", "--expansion", "2", "--threads", "1"]) == 0
    assert main(["accentuate", str(tiny_run), "--data", str(tiny_data), "--direction",
                 f"feature:{sae}:1", "--images", "3", "--steps", "2", "--out",
                 str(tmp_path / "f"), "--threads", "1"]) == 0
    feature = json.loads((tmp_path / "f" / "accentuate.json").read_text())
    assert "feature 1" in next(iter(feature["models"].values()))["direction"]


@pytest.mark.parametrize("flags, message", [
    (["--direction", "colour:yellow"], "unknown direction"),
    (["--direction", "class:3"], "write class:A-B"),
    (["--direction", "color:teal"], "unknown color"),
    (["--direction", "feature:nowhere"], "write feature:SAE_DIR:F"),
    (["--source", "11"], "has no image of class 11"),
])
def test_the_accentuate_command_explains_bad_input(tiny_run, tiny_data, tmp_path, capsys,
                                                   flags, message):
    from shortcutlab.cli import main

    assert main(["accentuate", str(tiny_run), "--data", str(tiny_data), "--out",
                 str(tmp_path / "x"), "--steps", "1", *flags]) == 2
    assert message in capsys.readouterr().err
