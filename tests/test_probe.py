"""Feature visualization, selectivity and the probe command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from shortcutlab.cli import main
from shortcutlab.data import load_split
from shortcutlab.data.palette import palette_array
from shortcutlab.errors import ShortcutlabError
from shortcutlab.hooks import capture, edit_output, hook_count
from shortcutlab.probe.checks import class_logit_checks, dominant_colors
from shortcutlab.probe.grayscale import GrayRecipe, gray_classifier, to_gray
from shortcutlab.probe.objectives import (
    Channel,
    ClassLogit,
    Diversity,
    Neuron,
    parse_objective,
)
from shortcutlab.probe.params import FourierImage, PixelImage, color_correlation_sqrt
from shortcutlab.probe.selectivity import (
    balanced_images,
    color_grid,
    label_unit,
    normalized_entropy,
    polysemanticity,
    selectivity,
    top_exemplars,
    unit_activations,
)
from shortcutlab.probe.transforms import apply_transforms
from shortcutlab.probe.visualize import VisConfig, visualize

pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny ops


@pytest.mark.parametrize("param", ["fourier", "pixel"])
def test_objective_values_increase_during_optimization(small_cnn, param):
    objectives = [Channel("features.conv2", 0), Channel("features.conv3", 3),
                  Neuron("features.conv1", 1, 5, 5), ClassLogit(4),
                  Channel("features.conv3", 1) - Channel("features.conv3", 2)]
    vis = visualize(small_cnn, objectives, VisConfig(param=param, steps=40, lr=0.05, tv=0.01),
                    show_progress=False)
    assert vis.images.shape == (5, 1, 3, 28, 28)
    assert float(vis.images.min()) >= 0.0 and float(vis.images.max()) <= 1.0
    start, end = vis.history[:3].mean(0), vis.history[-3:].mean(0)
    assert torch.all(end > start), (start, end)
    # the reported final values are what the objectives read on the final images
    with capture(small_cnn, ["features.conv2", "output"]) as acts:
        small_cnn(vis.images[:, 0])
        torch.testing.assert_close(Channel("features.conv2", 0)(acts)[0], vis.values[0, 0])
        torch.testing.assert_close(ClassLogit(4)(acts)[3], vis.values[3, 0])
    assert hook_count(small_cnn) == 0


def test_batched_units_do_not_interact(small_cnn):
    """Adam steps each image on its own gradients: a unit's image is the same in any batch."""
    config = VisConfig(param="pixel", steps=15, transforms=(), batch_units=2)
    units = [Channel("features.conv3", 0), Channel("features.conv3", 5)]
    together = visualize(small_cnn, units, config, show_progress=False)
    alone = visualize(small_cnn, units, VisConfig(param="pixel", steps=15, transforms=(),
                                                  batch_units=2), show_progress=False)
    torch.testing.assert_close(together.images, alone.images)
    # a unit optimized alone from the same start ends where it ended in the batch
    torch.manual_seed(0)
    start = PixelImage(2, generator=torch.Generator().manual_seed(0)).logits.detach()
    single = PixelImage(1)
    single.logits.data.copy_(start[:1])
    optimizer = torch.optim.Adam(single.parameters(), lr=config.lr)
    with capture(small_cnn, ["features.conv3"]) as acts:
        for _ in range(config.steps):
            small_cnn(single())
            loss = -units[0](acts).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    torch.testing.assert_close(single().detach()[0], together.images[0, 0], atol=1e-5, rtol=0)


def test_diversity_separates_facets(small_cnn):
    unit = [Channel("features.conv3", 2)]
    plain = visualize(small_cnn, unit, VisConfig(steps=30, facets=3, seed=1), show_progress=False)
    diverse = visualize(small_cnn, unit, VisConfig(steps=30, facets=3, diversity=5.0, seed=1),
                        show_progress=False)

    def spread(vis):
        images = vis.images[0].flatten(1)
        return float(torch.pdist(images).mean())

    assert spread(diverse) > spread(plain)


def test_objective_algebra_and_parsing():
    acts = {"a": torch.arange(24.0).reshape(2, 3, 2, 2), "output": torch.tensor([[1.0, 5.0]])}
    a, b = Channel("a", 0), Channel("a", 2)
    torch.testing.assert_close((a - 0.5 * b)(acts), a(acts) - 0.5 * b(acts))
    torch.testing.assert_close(Neuron("a", 1, 1, 0)(acts), acts["a"][:, 1, 1, 0])
    assert parse_objective("a:0 - a:2").name == "a:0 - a:2"
    assert parse_objective("logit:1")({"output": acts["output"]}).item() == 5.0
    assert parse_objective("a:1@0,1")(acts).tolist() == acts["a"][:, 1, 0, 1].tolist()
    with pytest.raises(ShortcutlabError, match="channels"):
        Channel("a", 7)(acts)
    with pytest.raises(ShortcutlabError, match="cannot read"):
        parse_objective("nonsense")
    with pytest.raises(ShortcutlabError, match="conv layer"):
        Neuron("f", 0)({"f": torch.zeros(1, 4)})
    same = {"a": torch.ones(3, 4, 2, 2)}
    torch.testing.assert_close(Diversity("a")(same), -torch.ones(3))
    assert Diversity("a")({"a": torch.ones(1, 4, 2, 2)}).tolist() == [0.0]


def test_fourier_parametrization_and_transforms():
    generator = torch.Generator().manual_seed(0)
    image = FourierImage(4, generator=generator)()
    image = image.detach()
    assert image.shape == (4, 3, 28, 28) and 0 < float(image.min()) < float(image.max()) < 1
    rgb = np.zeros((10, 4, 4, 3), dtype=np.uint8)
    rgb[:5, ..., 0] = 255
    sqrt = color_correlation_sqrt(rgb)
    np.testing.assert_allclose(sqrt @ sqrt.T, np.cov(rgb.reshape(-1, 3) / 255.0, rowvar=False),
                               atol=1e-6)
    x = torch.rand(2, 3, 28, 28)
    assert torch.equal(apply_transforms(x, (), generator), x)


class ToyUnits(nn.Module):
    """Two hand-built units: unit 0 reads the red channel, unit 1 a digit-shape template."""

    def __init__(self, template: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("template", template)
        self.units = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, 0].mean(dim=(1, 2))
        # every palette color has a channel at most 128/255, the digit stroke is white:
        # pixels whose darkest channel is bright are digit, whatever the color
        white = torch.relu(x.amin(dim=1) - 0.9)
        shape = (white * self.template).sum(dim=(1, 2))
        return self.units(torch.stack([red, shape], dim=1))


def test_color_selectivity_separates_hand_built_units(tiny_data):
    train = load_split(tiny_data, "train")
    template = torch.from_numpy(train.masks[train.labels == 1].mean(0)
                                - train.masks.mean(0)).float()
    toy = ToyUnits(template)
    grid = color_grid(tiny_data, "val", per_digit=4)
    assert grid.images.shape == (10, 4, 10, 28, 28, 3)
    acts = unit_activations(toy, "units", grid.flat_images())
    stats = selectivity(acts.reshape(10, 4, 10, -1))
    assert stats["color_index"][0] > 0.9
    assert stats["color_index"][1] < 0.1
    assert stats["color_eta2"][0] > 0.8 > stats["digit_eta2"][0]
    assert stats["digit_eta2"][1] > stats["color_eta2"][1]
    assert stats["preferred_color"][0] in (0, 4, 6, 7)  # the colors with a full red channel
    assert stats["preferred_digit"][1] == 1

    images, labels, colors = balanced_images(tiny_data, "val", limit=300)
    exemplars = top_exemplars(unit_activations(toy, "units", images), k=20)
    poly = polysemanticity(exemplars, labels, colors)
    assert poly["color_entropy"][0] < poly["digit_entropy"][0]
    assert poly["digit_entropy"][1] < poly["color_entropy"][1]


def test_unit_labels():
    assert label_unit(0.9, 0.05, 1, 3, 1.0, 0.95) == "color:green"
    assert label_unit(0.1, 0.7, 1, 3, 1.0, 0.1) == "digit:3"
    assert label_unit(0.1, 0.2, 1, 3, 1.0, 0.2) == "shape"
    assert label_unit(0.3, 0.2, 1, 3, 1.0, 0.8) == "mixed"
    assert label_unit(0.0, 0.0, 0, 0, 0.0, 0.0) == "dead"


def test_exemplars_and_entropy():
    acts = np.array([[1.0, 0.0], [3.0, 2.0], [2.0, 5.0], [0.0, 1.0]])
    assert top_exemplars(acts, 2).tolist() == [[1, 2], [2, 1]]
    assert normalized_entropy(np.array([[3, 3, 3, 3]]))[0] == 0.0
    assert normalized_entropy(np.arange(10)[None])[0] == pytest.approx(1.0)


def test_dominant_color_and_gray_conversion():
    palette = torch.from_numpy(palette_array(np.float32))
    flat = palette[:, :, None, None].expand(10, 3, 8, 8).clone()
    flat[:, :, :2, :] = 1.0  # a white stroke abstains
    dominant, share = dominant_colors(flat)
    assert dominant.tolist() == list(range(10)) and np.all(share == 1.0)
    report = class_logit_checks(flat, np.arange(10))
    assert report["dominant_color_match"] == 1.0
    assert torch.all(to_gray(flat)[:, :, :2] == 1.0) and torch.all(to_gray(flat)[:8, :, 2:] == 0)


class _ChannelReader(torch.nn.Module):
    """Class c's logit: how strongly the image has channel c (mod 3) as its brightest, or
    with ``gray``, a color-blind score of the image's brightness pattern."""

    def __init__(self, gray: bool) -> None:
        super().__init__()
        self.gray = gray
        self.weight = torch.nn.Parameter(torch.randn(10, 64,
                                                     generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gray:
            return x.mean(1).flatten(1) @ self.weight.T
        means = x.mean(dim=(2, 3))
        return torch.stack([means[:, c % 3] * (c + 1) for c in range(10)], dim=1)


def test_recoloring_keeps_a_shape_readers_class_and_not_a_color_readers():
    from shortcutlab.probe.checks import recolored_kept

    generator = torch.Generator().manual_seed(1)
    images = torch.rand(12, 3, 8, 8, generator=generator) * 0.2
    images[:, 0] += 0.7  # red-dominated pictures
    color = _ChannelReader(gray=False)
    classes = color(images).argmax(1).numpy()
    assert recolored_kept(color, images, classes).mean() == 0.0
    gray = _ChannelReader(gray=True)
    classes = gray(images).argmax(1).numpy()
    assert recolored_kept(gray, images, classes).mean() == 1.0
    report = class_logit_checks(images, classes, model=gray)
    assert report["recolored_kept"] == 1.0 and "recolored_kept" in report["per_image"][0]


def test_gray_judge_is_trained_once_and_cached(tmp_path, monkeypatch):
    from shortcutlab.data import load_source

    monkeypatch.setenv("SHORTCUTLAB_CACHE", str(tmp_path))
    source = load_source("synthetic", limit=400)
    recipe = GrayRecipe(source="synthetic", width=4, hidden=16, epochs=8, batch_size=32, lr=3e-3)
    model, info = gray_classifier(recipe, source, show_progress=False)
    assert info["test_accuracy"] > 0.5  # procedural digits are easy; chance is 0.1
    again, info_again = gray_classifier(recipe, source, show_progress=False)
    assert info_again == info
    x = torch.rand(3, 3, 28, 28)
    torch.testing.assert_close(again(x), model(x))
    other = gray_classifier(GrayRecipe(source="synthetic", width=4, hidden=16, epochs=1,
                                       batch_size=32), source, show_progress=False)[1]
    assert other["key"] != info["key"]


def test_hooks_are_removed_after_exceptions(small_cnn):
    with pytest.raises(RuntimeError), capture(small_cnn, ["features.conv1", "output"]):
        small_cnn(torch.rand(1, 3, 28, 28))
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError), edit_output(small_cnn, "features.conv2", lambda t: t * 0):
        raise RuntimeError("boom")
    with pytest.raises(ShortcutlabError):
        visualize(small_cnn, [Channel("features.conv3", 99)], VisConfig(steps=2),
                  show_progress=False)
    assert hook_count(small_cnn) == 0


def test_probe_cli_end_to_end(tiny_run, tmp_path, capsys):
    out = tmp_path / "probe"
    code = main(["probe", str(tiny_run), "--out", str(out), "--steps", "6", "--max-units", "3",
                 "--facets", "2", "--facet-units", "1", "--logit-samples", "1",
                 "--per-digit", "2", "--exemplars", "4", "--no-judge", "--threads", "1",
                 "--exemplar-source", "split", "--exemplar-images", "100",
                 "--layers", "features.conv1,classifier.fc1",
                 "--objective", "features.conv1:0 - features.conv1:1"])
    assert code == 0
    result = json.loads((out / "probe.json").read_text())
    assert set(result["layers"]) == {"features.conv1", "classifier.fc1"}
    table = result["layers"]["features.conv1"]
    assert table["units"] == 4 and len(table["ranked_by_color_index"]) == 4
    ranks = [row["color_index"] for row in table["ranked_by_color_index"]]
    assert ranks == sorted(ranks, reverse=True)
    assert result["class_logits"]["count"] == 10
    assert 0.0 <= result["class_logits"]["dominant_color_match"] <= 1.0
    assert result["custom_objectives"][0]["objective"] == "features.conv1:0 - features.conv1:1"
    for name in result["figures"]:
        assert (out / name).stat().st_size > 0
    arrays = np.load(out / "probe.npz")
    assert arrays["vis/features.conv1"].shape == (3, 28, 28, 3)
    assert len(arrays["units/features.conv1"]) == 3
    assert arrays["class_logits"].shape == (10, 28, 28, 3)
    assert "dominant_color_match" in capsys.readouterr().out


def test_probe_cli_reports_bad_input(tiny_run, tmp_path, capsys):
    assert main(["probe", str(tiny_run), "--out", str(tmp_path), "--layers", "nope"]) == 2
    assert "has no layer 'nope'" in capsys.readouterr().err
    assert main(["probe", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "no trained model" in capsys.readouterr().err
