"""``shortcutlab data import``: a user's colored dataset in, the artifact layout out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shortcutlab.cli import main
from shortcutlab.data import load_meta, load_split
from shortcutlab.data.dataset import SPLITS
from shortcutlab.data.importer import import_dataset
from shortcutlab.errors import ShortcutlabError

pytestmark = pytest.mark.usefixtures("one_thread")


def _arrays(data_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    return {split: dict(np.load(data_dir / f"{split}.npz")) for split in SPLITS}


def _flat_npz(path: Path, splits: dict[str, dict[str, np.ndarray]]) -> Path:
    np.savez(path, **{f"{split}_{field}": array for split, fields in splits.items()
                      for field, array in fields.items()})
    return path


def test_import_round_trips_a_built_dataset(tiny_data, tmp_path, capsys):
    out = tmp_path / "imported"
    assert main(["data", "import", str(tiny_data), "--out", str(out)]) == 0
    assert "10 classes, 28x28 images, masks given" in capsys.readouterr().out
    for split in SPLITS:  # the same arrays in the same member order: the same bytes
        assert (out / f"{split}.npz").read_bytes() == (tiny_data / f"{split}.npz").read_bytes()
    built, imported = load_meta(tiny_data), load_meta(out)
    assert imported["sizes"] == built["sizes"] and imported["counts"] == built["counts"]
    assert imported["renderable"] is False and imported["classes"] == 10
    assert imported["bias"]["train"] == pytest.approx(0.95, abs=0.01)
    assert imported["bias"]["test_hard"] == 0.0
    loaded = load_split(out, "val")  # checksums verified like any dataset's
    assert loaded.images.shape[1:] == (28, 28, 3)
    # the same content from a single .npz gives the same dataset
    flat = _flat_npz(tmp_path / "flat.npz", _arrays(tiny_data))
    again = import_dataset(flat, tmp_path / "again")
    assert again["dataset_id"] == imported["dataset_id"]


def test_stages_run_on_an_imported_dataset_and_skip_rendering(tiny_data, tmp_path):
    out = tmp_path / "imported"
    import_dataset(tiny_data, out)
    run = tmp_path / "run"
    assert main(["train", "--data", str(out), "--out", str(run), "--steps", "20",
                 "--threads", "1"]) == 0
    assert main(["evaluate", str(run), "--data", str(out)]) == 0
    report = json.loads((run / "evaluate" / "evaluate.json").read_text())
    assert "imported" in report["rendered"] and "color_swap" not in report
    assert set(report["splits"]) == set(SPLITS)


def _good(tiny_data: Path) -> dict[str, dict[str, np.ndarray]]:
    return {split: {k: v[:50] for k, v in fields.items()}
            for split, fields in _arrays(tiny_data).items()}


def _float_images(s):
    s["train"]["images"] = s["train"]["images"].astype(np.float32) / 255


def _gray_images(s):
    s["val"]["images"] = s["val"]["images"][..., 0]


def _channels_first(s):
    s["val"]["images"] = s["val"]["images"].transpose(0, 3, 1, 2).copy()


def _label_too_big(s):
    s["test_hard"]["labels"][3] = 10


def _negative_label(s):
    s["train"]["labels"][0] = -1


def _float_labels(s):
    s["train"]["labels"] = s["train"]["labels"].astype(np.float64)


def _no_colors(s):
    del s["test_easy"]["colors"]


def _short_labels(s):
    s["train"]["labels"] = s["train"]["labels"][:-1]


def _bad_masks(s):
    s["train"]["masks"] = s["train"]["masks"][:, :20]


def _some_masks(s):
    del s["val"]["masks"]


def _other_size(s):
    s["test_unbiased"]["images"] = s["test_unbiased"]["images"][:, :20, :20]
    s["test_unbiased"]["masks"] = s["test_unbiased"]["masks"][:, :20, :20]


@pytest.mark.parametrize("damage, message", [
    (_float_images, r"train images are float32; expected uint8 .*multiply"),
    (_gray_images, r"val images have shape \(50, 28, 28\); expected \(N, H, W, 3\) .*grayscale"),
    (_channels_first, r"channels first"),
    (_label_too_big, r"test_hard labels go up to 10, out of range for 10 classes"),
    (_negative_label, r"train labels go down to -1"),
    (_float_labels, r"train labels are float64; expected integers"),
    (_no_colors, r"test_easy has no 'colors' array \(the bias attribute"),
    (_short_labels, r"train labels have shape \(49,\); expected \(50,\)"),
    (_bad_masks, r"train masks have shape \(50, 20, 28\); expected \(50, 28, 28\)"),
    (_some_masks, r"masks are given for some splits but not for val"),
    (_other_size, r"test_unbiased images are 20x20 but train's are 28x28"),
])
def test_import_rejects_each_malformed_field_with_its_own_message(
        tiny_data, tmp_path, damage, message):
    splits = _good(tiny_data)
    damage(splits)
    flat = _flat_npz(tmp_path / "bad.npz", splits)
    with pytest.raises(ShortcutlabError, match=message):
        import_dataset(flat, tmp_path / "out", classes=10 if damage is _label_too_big else None)
    assert not (tmp_path / "out").exists()  # nothing written


def test_import_names_missing_splits_and_keys(tiny_data, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "train.npz").write_bytes((tiny_data / "train.npz").read_bytes())
    with pytest.raises(ShortcutlabError, match=r"lacks val\.npz, test_easy\.npz"):
        import_dataset(partial, tmp_path / "out")
    np.savez(tmp_path / "odd.npz", pictures=np.zeros((2, 28, 28, 3), np.uint8))
    with pytest.raises(ShortcutlabError, match=r"name them SPLIT_FIELD.*it has: pictures"):
        import_dataset(tmp_path / "odd.npz", tmp_path / "out")


def test_more_than_ten_classes_need_a_palette(tmp_path, capsys):
    rng = np.random.default_rng(0)
    classes = 12
    splits = {}
    for split in SPLITS:
        labels = np.tile(np.arange(classes), 3)
        splits[split] = {"images": rng.integers(0, 256, (len(labels), 16, 16, 3), np.uint8),
                         "labels": labels, "colors": labels.copy()}
    flat = _flat_npz(tmp_path / "twelve.npz", splits)
    with pytest.raises(ShortcutlabError, match="12 classes but the default palette has 10"):
        import_dataset(flat, tmp_path / "out")
    palette = tmp_path / "palette.json"
    palette.write_text(json.dumps({"colors": [[20 * c, 0, 255 - 20 * c] for c in range(12)],
                                   "names": [f"hue{c}" for c in range(12)]}))
    assert main(["data", "import", str(flat), "--out", str(tmp_path / "out"),
                 "--palette", str(palette)]) == 0
    meta = load_meta(tmp_path / "out")
    assert meta["classes"] == 12 and meta["color_names"][11] == "hue11"
    assert meta["masks"] is False and meta["image_shape"] == [16, 16]
    assert "masks absent" in capsys.readouterr().out


def test_a_dataset_without_masks_is_refused_where_masks_are_needed(tiny_data, tmp_path,
                                                                   capsys):
    splits = _arrays(tiny_data)
    for fields in splits.values():
        del fields["masks"]
    out = tmp_path / "nomasks"
    import_dataset(_flat_npz(tmp_path / "nomasks.npz", splits), out)
    run = tmp_path / "run"
    assert main(["train", "--data", str(out), "--out", str(run), "--steps", "5"]) == 0
    assert main(["explain", str(run), "--data", str(out), "--out", str(tmp_path / "ex")]) == 2
    assert "no object masks" in capsys.readouterr().err
    assert main(["intervene", "--method", "rrr", "--data", str(out),
                 "--out", str(tmp_path / "rrr")]) == 2
    assert "rrr trains on the object masks" in capsys.readouterr().err


def test_bad_palettes_are_explained(tmp_path):
    from shortcutlab.data.importer import read_palette

    assert read_palette("#ff0000,#00ff80") == ([[255, 0, 0], [0, 255, 128]], None)
    with pytest.raises(ShortcutlabError, match="not a color like #ff8800"):
        read_palette("red,green")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([[300, 0, 0]]))
    with pytest.raises(ShortcutlabError, match="integers in 0-255"):
        read_palette(str(bad))
