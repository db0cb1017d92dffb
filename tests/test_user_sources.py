"""A user's grayscale source: any number of classes, any image size, a palette to match."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shortcutlab.cli import main
from shortcutlab.data import BuildConfig, build_dataset, load_meta, load_source, load_split
from shortcutlab.data.idx import write_idx
from shortcutlab.errors import ShortcutlabError

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = 26


def _glyph_source(size: int = 32, train: int = 1300, test: int = 260) -> dict[str, np.ndarray]:
    """26 classes, each a fixed pattern of bars, shifted by up to two pixels per image."""
    rng = np.random.default_rng(0)
    prototypes = np.zeros((CLASSES, size, size), np.uint8)
    for k in range(CLASSES):
        for _ in range(3):
            a, b = sorted(rng.integers(4, size - 4, 2))
            line = rng.integers(6, size - 6)
            if rng.random() < 0.5:
                prototypes[k, line - 1:line + 2, a:b + 4] = 255
            else:
                prototypes[k, a:b + 4, line - 1:line + 2] = 255

    def part(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n, dtype=np.int64) % CLASSES
        shifts = rng.integers(-2, 3, (n, 2))
        images = np.stack([np.roll(prototypes[label], tuple(shift), (0, 1))
                           for label, shift in zip(labels, shifts, strict=True)])
        return images, labels

    train_images, train_labels = part(train)
    test_images, test_labels = part(test)
    return {"train_images": train_images, "train_labels": train_labels,
            "test_images": test_images, "test_labels": test_labels}


@pytest.fixture(scope="module")
def glyph_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("glyphs") / "glyphs.npz"
    np.savez(path, **_glyph_source())
    return path


def test_a_26_class_source_builds_trains_and_evaluates(glyph_npz, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["data", "build", "--source", str(glyph_npz), "--out", str(data)]) == 2
    assert "--palette wheel" in capsys.readouterr().err  # ten colors cannot cover 26 classes
    assert main(["data", "build", "--source", str(glyph_npz), "--palette", "wheel",
                 "--out", str(data)]) == 0
    meta = load_meta(data)
    assert meta["classes"] == CLASSES and len(meta["palette"]) == CLASSES
    assert len(meta["counts"]["train"]) == CLASSES
    train = load_split(data, "train")
    assert train.images.shape[1:] == (28, 28, 3)  # resized from 32x32
    assert np.mean(train.colors == train.labels) == pytest.approx(0.95, abs=0.01)
    hard = load_split(data, "test_hard")
    assert not np.any(hard.colors == hard.labels) and hard.colors.max() == CLASSES - 1
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--preset", "standard",
                 "--steps", "30", "--threads", "1"]) == 0
    assert json.loads((run / "model.json").read_text())["kwargs"] == {"num_classes": CLASSES}
    assert main(["evaluate", str(run), "--data", str(data), "--swap-images", "52"]) == 0
    report = json.loads((run / "evaluate" / "evaluate.json").read_text())
    assert report["classes"] == CLASSES
    assert len(report["splits"]["test_hard"]["per_class"]) == CLASSES
    assert np.asarray(report["color_swap"]["follows_color"]).shape == (CLASSES, CLASSES)
    for method in ("groupdro", "reweight"):  # (label, color) groups: 26 x 26 of them
        out = tmp_path / method
        assert main(["intervene", "--method", method, "--data", str(data), "--out", str(out),
                     "--set", "epochs=1", "--threads", "1"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert 0.0 <= metrics["hard"] <= 1.0 and metrics["hard_inverted"] is not None
    # the same config and source give the same bytes
    again = build_dataset(BuildConfig(source=str(glyph_npz), palette="wheel"),
                          tmp_path / "again", load_source(str(glyph_npz)))
    assert again["files"] == meta["files"]


def test_an_idx_directory_is_a_source(tmp_path):
    source = _glyph_source(size=28, train=260, test=52)
    folder = tmp_path / "idx"
    folder.mkdir()
    for key, name in (("train_images", "train-images-idx3-ubyte"),
                      ("train_labels", "train-labels-idx1-ubyte"),
                      ("test_images", "t10k-images-idx3-ubyte"),
                      ("test_labels", "t10k-labels-idx1-ubyte")):
        array = source[key] if "images" in key else source[key].astype(np.uint8)
        write_idx(folder / f"{name}.gz", array, compress=True)
    loaded = load_source(str(folder))
    assert np.array_equal(loaded["train_images"], source["train_images"])
    assert np.array_equal(loaded["test_labels"], source["test_labels"])


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("test_labels"), "lacks test_labels"),
    (lambda s: s.update(train_images=s["train_images"].astype(np.float32)),
     r"train_images are float32 .*expected uint8"),
    (lambda s: s.update(train_labels=s["train_labels"][:-1]), "one per image"),
    (lambda s: s.update(train_labels=np.where(s["train_labels"] == 4, 5,
                                              s["train_labels"])), r"class\(es\) 4 have no"),
])
def test_a_bad_source_is_explained(tmp_path, damage, message):
    source = _glyph_source(size=28, train=260, test=52)
    damage(source)
    path = tmp_path / "bad.npz"
    np.savez(path, **source)
    with pytest.raises(ShortcutlabError, match=message):
        load_source(str(path))


def test_a_palette_file_names_its_colors(glyph_npz, tmp_path):
    palette = tmp_path / "palette.json"
    palette.write_text(json.dumps({"colors": [[10 * c, 255 - 9 * c, 128] for c in range(26)],
                                   "names": [chr(ord("a") + c) for c in range(26)]}))
    meta = build_dataset(BuildConfig(source=str(glyph_npz), palette=str(palette), limit=100),
                         tmp_path / "data", load_source(str(glyph_npz)))
    assert meta["color_names"][25] == "z" and meta["palette"][1] == [10, 246, 128]


def test_a_dataset_whose_source_moved_says_so(glyph_npz, tmp_path):
    from shortcutlab.data.recolor import split_digits

    source = tmp_path / "moving.npz"
    source.write_bytes(glyph_npz.read_bytes())
    data = tmp_path / "data"
    build_dataset(BuildConfig(source=str(source), palette="wheel", limit=60), data,
                  load_source(str(source)))
    assert split_digits(data, "val").shape[1:] == (28, 28)
    source.unlink()
    with pytest.raises(ShortcutlabError, match=r"no longer there.*put the source back"):
        split_digits(data, "val")
