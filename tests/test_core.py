"""Artifacts, the model registry and the dataset reader: the contracts every stage uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shortcutlab import artifacts, models
from shortcutlab.data import SPLITS, ColoredMNIST, load_meta, load_split
from shortcutlab.errors import ChecksumError, ShortcutlabError


def test_npz_bytes_are_deterministic(tmp_path):
    arrays = {"a": np.arange(10, dtype=np.int64), "b": np.ones((2, 3), dtype=np.uint8)}
    first = artifacts.save_npz(tmp_path / "x.npz", **arrays)
    second = artifacts.save_npz(tmp_path / "y.npz", **arrays)
    assert first == second == artifacts.sha256_file(tmp_path / "x.npz")
    loaded = artifacts.load_npz(tmp_path / "x.npz", expected_sha256=first)
    np.testing.assert_array_equal(loaded["a"], arrays["a"])


def test_truncated_npz_is_detected(tmp_path):
    digest = artifacts.save_npz(tmp_path / "x.npz", a=np.arange(1000))
    data = (tmp_path / "x.npz").read_bytes()
    (tmp_path / "x.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ChecksumError):
        artifacts.load_npz(tmp_path / "x.npz", expected_sha256=digest)
    with pytest.raises(ChecksumError):
        artifacts.load_npz(tmp_path / "x.npz")


def test_atomic_open_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), artifacts.atomic_open(target) as handle:
        handle.write(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_model_round_trip(tmp_path, small_cnn):
    models.save(small_cnn, tmp_path)
    loaded = models.load(tmp_path)
    x = torch.rand(5, 3, 28, 28)
    torch.testing.assert_close(loaded(x), small_cnn(x))
    assert not loaded.training


def test_model_load_rejects_modified_weights(tmp_path, small_cnn):
    models.save(small_cnn, tmp_path)
    with open(tmp_path / "model.pt", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ChecksumError):
        models.load(tmp_path)


def test_unknown_model_lists_choices():
    with pytest.raises(ShortcutlabError, match="cnn3"):
        models.create("nope")


def test_tiny_dataset_contract(tiny_data):
    meta = load_meta(tiny_data)
    for split in SPLITS:
        data = load_split(tiny_data, split)
        assert data.images.dtype == np.uint8 and data.images.shape[1:] == (28, 28, 3)
        assert data.labels.dtype == np.int64 and data.colors.dtype == np.int64
        assert data.masks.dtype == np.bool_ and data.masks.shape[1:] == (28, 28)
        assert meta["sizes"][split] == len(data)
    hard = load_split(tiny_data, "test_hard")
    assert not np.any(hard.colors == hard.labels)
    loader = torch.utils.data.DataLoader(ColoredMNIST(tiny_data, "val"), batch_size=32)
    images, _labels = next(iter(loader))
    assert images.shape == (32, 3, 28, 28) and images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
