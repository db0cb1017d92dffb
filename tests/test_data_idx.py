"""The IDX reader: round trips, every kind of damage, and the real Fashion-MNIST files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from shortcutlab.data.catalog import FASHION_MNIST
from shortcutlab.data.idx import idx_bytes, idx_sha256, parse_idx, read_idx, write_idx
from shortcutlab.errors import ShortcutlabError

FASHION_DIR = Path(FASHION_MNIST.system_idx_dirs[0])


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_round_trip_uint8(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / name, images)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.uint8 and back.shape == (7, 28, 28)
    np.testing.assert_array_equal(back, images)
    assert (tmp_path / name).read_bytes().startswith(b"\x1f\x8b") == name.endswith(".gz")


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip_other_types_big_endian(dtype):
    values = (np.arange(24) - 12).astype(dtype).reshape(2, 3, 4)
    data = idx_bytes(values)
    assert data[2] in (0x09, 0x0B, 0x0C, 0x0D, 0x0E)
    if np.dtype(dtype).itemsize > 1:  # the header is followed by big-endian values
        assert data[16:16 + values.itemsize] == values.astype(
            np.dtype(dtype).newbyteorder(">")).tobytes()[:values.itemsize]
    np.testing.assert_array_equal(parse_idx(data), values)


def test_labels_header_matches_the_official_layout():
    data = idx_bytes(np.array([5, 0, 4], dtype=np.uint8))
    assert data[:8] == bytes([0, 0, 8, 1, 0, 0, 0, 3])  # magic 2049, then the count
    assert idx_sha256(np.array([5, 0, 4], dtype=np.uint8)) == __import__("hashlib").sha256(
        data).hexdigest()


def _damaged(tmp_path: Path, data: bytes, name: str = "train-images-idx3-ubyte") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("damage, message", [
    (lambda d: b"\x01" + d[1:], "not an IDX file"),
    (lambda d: d[:2] + b"\x42" + d[3:], "unknown IDX type"),
    (lambda d: d[:3] + b"\x00" + d[4:], "declares 0 dimensions"),
    (lambda d: d[:10], "truncated inside its header"),
    (lambda d: d[:-100], "is truncated"),
    (lambda d: d + b"\x00" * 5, "5 unexpected bytes"),
    (lambda d: b"", "too short"),
])
def test_damaged_files_are_refused_by_name(tmp_path, damage, message):
    good = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))
    path = _damaged(tmp_path, damage(good))
    with pytest.raises(ShortcutlabError, match=message) as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


def test_truncated_and_corrupt_gzip_are_refused_by_name(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    packed = gzip.compress(idx_bytes(images))
    truncated = _damaged(tmp_path, packed[: len(packed) // 2], "a-idx3-ubyte.gz")
    with pytest.raises(ShortcutlabError, match="truncated or corrupt gzip") as caught:
        read_idx(truncated)
    assert "a-idx3-ubyte.gz" in str(caught.value)
    flipped = bytearray(packed)
    flipped[len(flipped) // 2] ^= 0xFF
    corrupt = _damaged(tmp_path, bytes(flipped), "b-idx3-ubyte.gz")
    with pytest.raises(ShortcutlabError, match=r"b-idx3-ubyte\.gz"):
        read_idx(corrupt)
    not_gzip = _damaged(tmp_path, idx_bytes(images)[:100], "c-idx3-ubyte.gz")
    with pytest.raises(ShortcutlabError, match="not gzip data"):
        read_idx(not_gzip)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ShortcutlabError, match="cannot read"):
        read_idx(tmp_path / "nope-idx1-ubyte")


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_test_files_match_the_published_checksums():
    images = read_idx(FASHION_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_DIR / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert np.bincount(labels).tolist() == [1000] * 10
    assert idx_sha256(images) == FASHION_MNIST.file("test_images").sha256
    assert idx_sha256(labels) == FASHION_MNIST.file("test_labels").sha256
