"""The generator: exact bias counts, the hard-set rules, determinism, the directory rules,
the streaming writer, and the torch Dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shortcutlab import artifacts
from shortcutlab.data import (
    SPLITS,
    BuildConfig,
    ColoredMNIST,
    build_dataset,
    load_meta,
    load_source,
    load_split,
)
from shortcutlab.data.build import (
    MASK_THRESHOLD,
    biased_colors,
    build_arrays,
    hard_colors,
    pack_rgb,
    render,
)
from shortcutlab.data.styles import StyleParams
from shortcutlab.errors import ShortcutlabError

LIMIT = 300


@pytest.fixture(scope="module")
def source():
    return load_source("synthetic", limit=LIMIT)


def test_bias_counts_are_exact_per_class():
    labels = np.repeat(np.arange(10), [37, 50, 3, 1, 0, 99, 20, 41, 12, 8])
    rng = np.random.default_rng(0)
    for bias in (0.0, 0.3, 0.95, 0.99, 1.0):
        colors = biased_colors(labels, bias, rng)
        for c in range(10):
            members = labels == c
            assert (colors[members] == c).sum() == round(bias * members.sum())
        assert colors.min() >= 0 and colors.max() <= 9


def test_conflicting_colors_are_uniform_over_the_other_nine():
    labels = np.zeros(90000, dtype=np.int64) + 4
    colors = biased_colors(labels, 0.0, np.random.default_rng(1))
    counts = np.bincount(colors, minlength=10)
    assert counts[4] == 0
    others = np.delete(counts, 4)
    assert np.all(np.abs(others - 10000) < 5 * np.sqrt(10000))  # ~5 sigma


def test_built_splits_follow_the_bias_semantics(source):
    config = BuildConfig(source="synthetic", bias=0.9, limit=LIMIT, seed=3)
    splits = build_arrays(source, config)
    assert list(splits) == list(SPLITS)
    for name in ("train", "val", "test_easy"):
        labels, colors = splits[name]["labels"], splits[name]["colors"]
        for c in range(10):
            assert (colors[labels == c] == c).sum() == round(0.9 * (labels == c).sum())
    hard = splits["test_hard"]
    assert not np.any(hard["colors"] == hard["labels"])
    for c in range(10):  # each class sees many of the other colors, never its own
        assert len(np.unique(hard["colors"][hard["labels"] == c])) >= 6
    unbiased = splits["test_unbiased"]
    assert 0 < np.mean(unbiased["colors"] == unbiased["labels"]) < 0.25
    assert len(np.unique(unbiased["colors"])) == 10


def test_inverted_hard_set_gives_digit_d_the_color_of_d_plus_1(source):
    labels = np.arange(50) % 10
    assert np.array_equal(hard_colors(labels, "inverted", np.random.default_rng(0)),
                          (labels + 1) % 10)
    splits = build_arrays(source, BuildConfig(source="synthetic", hard="inverted", limit=LIMIT))
    hard = splits["test_hard"]
    assert np.array_equal(hard["colors"], (hard["labels"] + 1) % 10)


def test_split_contents_and_masks(source):
    splits = build_arrays(source, BuildConfig(source="synthetic", limit=LIMIT))
    for name, arrays in splits.items():
        assert arrays["images"].dtype == np.uint8 and arrays["images"].shape[1:] == (28, 28, 3)
        assert arrays["labels"].dtype == np.int64 and arrays["colors"].dtype == np.int64
        assert arrays["masks"].dtype == np.bool_, name
    np.testing.assert_array_equal(splits["train"]["masks"],
                                  source["train_images"][:LIMIT] >= MASK_THRESHOLD)
    # the three test splits color the same digits differently
    assert np.array_equal(splits["test_easy"]["labels"], splits["test_hard"]["labels"])
    assert not np.array_equal(splits["test_easy"]["images"], splits["test_hard"]["images"])


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, source):
    config = BuildConfig(source="synthetic", limit=LIMIT, seed=5, style="perlin")
    first = build_dataset(config, tmp_path / "a", source)
    second = build_dataset(config, tmp_path / "b", source)
    assert first["files"] == second["files"] and first["dataset_id"] == second["dataset_id"]
    for name in first["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = build_dataset(BuildConfig(source="synthetic", limit=LIMIT, seed=6, style="perlin"),
                          tmp_path / "c", source)
    assert other["dataset_id"] != first["dataset_id"]
    assert all(other["files"][n]["sha256"] != first["files"][n]["sha256"] for n in first["files"])


def test_meta_describes_the_files(tmp_path, source):
    config = BuildConfig(source="synthetic", limit=LIMIT)
    meta = build_dataset(config, tmp_path, source)
    assert load_meta(tmp_path) == meta
    assert meta["config"] == config.to_dict()
    assert meta["palette"][0] == [255, 0, 0] and len(meta["palette"]) == 10
    for split in SPLITS:
        data = load_split(tmp_path, split)  # verifies the recorded sha256
        assert meta["sizes"][split] == len(data)
        table = np.zeros((10, 10), dtype=np.int64)
        np.add.at(table, (data.labels, data.colors), 1)
        assert meta["counts"][split] == table.tolist()
        assert artifacts.sha256_file(tmp_path / f"{split}.npz") == \
            meta["files"][f"{split}.npz"]["sha256"]


def test_directory_rules(tmp_path, source):
    config = BuildConfig(source="synthetic", limit=LIMIT)
    build_dataset(config, tmp_path, source)
    mtime = (tmp_path / "train.npz").stat().st_mtime_ns
    build_dataset(config, tmp_path, source)  # same dataset, intact: nothing to do
    assert (tmp_path / "train.npz").stat().st_mtime_ns == mtime
    other = BuildConfig(source="synthetic", limit=LIMIT, bias=0.5)
    with pytest.raises(ShortcutlabError, match="different dataset"):
        build_dataset(other, tmp_path, source)
    assert build_dataset(other, tmp_path, source, force=True)["config"]["bias"] == 0.5
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(ShortcutlabError, match="not empty"):
        build_dataset(config, stranger, source)
    # a damaged file of the same dataset is rebuilt, not trusted, and needs no --force
    (tmp_path / "val.npz").write_bytes(b"garbage")
    meta = build_dataset(other, tmp_path, source)
    assert load_split(tmp_path, "val").images.shape[0] == meta["sizes"]["val"] > 0


@pytest.mark.parametrize("field, value", [("bias", 1.5), ("style", "plaid"), ("hard", "easy"),
                                          ("noise_mix", -0.1), ("alpha", 2.0), ("limit", 0)])
def test_bad_config_is_refused(field, value):
    with pytest.raises(ShortcutlabError, match=field.replace("_", "-") if field != "style"
                       else "style"):
        BuildConfig(**{field: value}).validate()


def test_render_rejects_bad_colors(source):
    gray = source["test_images"][:4]
    with pytest.raises(ValueError, match="palette indices"):
        render(gray, np.array([0, 1, 2, 10]), "noise", StyleParams(), np.random.default_rng(0))


def test_pack_rgb_matches_slicing():
    items = np.random.default_rng(2).integers(0, 256, (1024 * 784, 4), dtype=np.uint8)
    packed = pack_rgb(items.view("V4").reshape(-1))
    assert np.array_equal(packed.reshape(-1, 3), items[:, :3])


# -- the streaming .npz writer --------------------------------------------------------------

@pytest.mark.parametrize("background", [False, True])
def test_npz_writer_round_trip(tmp_path, background):
    images = np.random.default_rng(0).integers(0, 256, (10, 28, 28, 3), dtype=np.uint8)
    labels = np.arange(10, dtype=np.int64)
    path = tmp_path / "x.npz"
    with artifacts.NpzWriter(path, background=background) as npz:
        npz.add("labels", labels)
        with npz.stream("images", np.uint8, images.shape) as member:
            for start in range(0, 10, 3):
                member.write(images[start:start + 3])
        npz.add("masks", images[..., 0] > 128)
    assert npz.sha256 == artifacts.sha256_file(path)
    loaded = artifacts.load_npz(path, expected_sha256=npz.sha256)
    np.testing.assert_array_equal(loaded["images"], images)
    np.testing.assert_array_equal(loaded["labels"], labels)
    assert loaded["masks"].dtype == np.bool_
    with np.load(path) as archive:
        assert archive.files == ["labels", "images", "masks"]


def test_npz_writer_is_deterministic_and_atomic(tmp_path):
    arrays = {"a": np.arange(1000), "b": np.ones((3, 4), dtype=np.float32)}
    digests = []
    for name, background in (("1.npz", False), ("2.npz", True)):
        with artifacts.NpzWriter(tmp_path / name, background=background) as npz:
            for key, value in arrays.items():
                npz.add(key, value)
        digests.append(npz.sha256)
    assert digests[0] == digests[1]
    with pytest.raises(ValueError, match="short"), \
            artifacts.NpzWriter(tmp_path / "3.npz") as npz, \
            npz.stream("x", np.uint8, (10,)) as member:
        member.write(np.zeros(4, dtype=np.uint8))
    with pytest.raises(RuntimeError), artifacts.NpzWriter(tmp_path / "4.npz") as npz:
        npz.add("a", arrays["a"])
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.npz", "2.npz"]


# -- the Dataset ----------------------------------------------------------------------------

def test_dataset_with_a_dataloader(tiny_data):
    dataset = ColoredMNIST(tiny_data, "train", with_extras=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    seen = 0
    for batch in loader:
        assert batch["image"].shape[1:] == (3, 28, 28) and batch["image"].dtype == torch.float32
        assert batch["mask"].dtype == torch.bool and batch["mask"].shape[1:] == (28, 28)
        assert batch["color"].dtype == torch.int64
        split = load_split(tiny_data, "train")
        index = batch["index"].numpy()
        np.testing.assert_array_equal(batch["color"].numpy(), split.colors[index])
        np.testing.assert_array_equal(batch["label"].numpy(), split.labels[index])
        seen += len(index)
    assert seen == len(dataset)
    aligned = (dataset.colors == dataset.labels).float().mean().item()
    assert 0.93 <= aligned <= 0.97


# -- the options of published protocols (LfF's and ReBias' Colored MNIST) --------------------

def test_even_spread_splits_the_conflicting_images_equally():
    from shortcutlab.data.build import even_colors, even_shares

    assert even_shares(17, 9).tolist() == [2, 2, 2, 2, 1, 2, 2, 2, 2]
    assert even_shares(17, 9).sum() == 17
    labels = np.repeat(np.arange(10), [600, 587, 5923, 10, 0, 99, 200, 41, 1200, 80])
    colors = even_colors(labels, 0.98, np.random.default_rng(0))
    for c in range(10):
        members = colors[labels == c]
        counts = np.bincount(members, minlength=10)
        assert counts[c] == round(0.98 * members.size)
        others = np.delete(counts, c)
        assert others.max() - others.min() <= 1
    uniform = even_colors(labels, None, np.random.default_rng(0))
    for c in range(10):
        counts = np.bincount(uniform[labels == c], minlength=10)
        assert counts.max() - counts.min() <= 1
    # which image gets which color is the seed's choice
    again = even_colors(labels, 0.98, np.random.default_rng(1))
    assert not np.array_equal(colors, again)
    assert np.array_equal(np.sort(colors), np.sort(again))


def test_lff_protocol_colors_the_stroke_on_black_with_per_image_noise(source):
    from shortcutlab.data.palette import LFF_COLORS

    config = BuildConfig(source="synthetic", style="lff", palette="lff", bias=0.9,
                         color_noise=0.02, spread="even", validation=50, limit=LIMIT)
    arrays = build_arrays(source, config)
    train = arrays["train"]
    gray = source["train_images"][: len(train["labels"])]
    assert len(arrays["val"]["labels"]) == 50
    images = train["images"].astype(np.float64) / 255
    assert np.all(train["images"][gray == 0] == 0)  # a black background
    full = gray == 255
    palette = np.asarray(LFF_COLORS) / 255
    offsets = []
    for image, ink, color in zip(images, full, train["colors"], strict=True):
        if ink.any():
            offsets.append(image[ink].mean(0) - palette[color])
    offsets = np.asarray(offsets)
    # each image's stroke is its class's mean color moved by its own small offset
    assert 0.01 < offsets.std() < 0.03 and abs(offsets.mean()) < 0.005
    unbiased = arrays["test_unbiased"]
    for c in range(10):
        counts = np.bincount(unbiased["colors"][unbiased["labels"] == c], minlength=10)
        assert counts.max() - counts.min() <= 1  # every (digit, color) cell equally full


def test_rebias_protocol_paints_a_flat_background_and_a_binarized_white_digit(source):
    from shortcutlab.data.palette import PALETTE

    config = BuildConfig(source="synthetic", style="rebias", bias=0.99, limit=LIMIT)
    train = build_arrays(source, config)["train"]
    gray = source["train_images"][: len(train["labels"])]
    assert np.all(train["images"][gray > 0] == 255)  # any ink: pure white
    background = train["images"][gray == 0]
    expected = np.asarray(PALETTE)[np.broadcast_to(train["colors"][:, None, None],
                                                   gray.shape)[gray == 0]]
    np.testing.assert_array_equal(background, expected)


def test_protocol_options_at_their_defaults_keep_the_dataset_id(tmp_path, source):
    plain = BuildConfig(source="synthetic", limit=LIMIT)
    assert "palette" not in plain.to_dict() and "validation" not in plain.to_dict()
    spelled = BuildConfig(source="synthetic", limit=LIMIT, palette="rebias", color_noise=0.0,
                          spread="uniform", validation=10000)
    a = build_dataset(plain, tmp_path / "a", source)
    b = build_dataset(spelled, tmp_path / "b", source)
    assert a["dataset_id"] == b["dataset_id"]
    c = build_dataset(BuildConfig(source="synthetic", limit=LIMIT, spread="even"),
                      tmp_path / "c", source)
    assert c["dataset_id"] != a["dataset_id"] and c["config"]["spread"] == "even"


@pytest.mark.parametrize("field, value", [("palette", "sunset"), ("color_noise", -0.1),
                                          ("spread", "lumpy"), ("validation", 0)])
def test_bad_protocol_options_are_refused(field, value):
    with pytest.raises(ShortcutlabError, match=field):
        BuildConfig(**{field: value}).validate()


def test_synthetic_source_keeps_its_bytes():
    """The synthetic digits are every test's and the tutorial's source: a faster renderer
    must draw the same pixels (the digest is of the renderer as first written)."""
    import hashlib

    from shortcutlab.data.synthetic import synthetic_source

    source = synthetic_source(train_size=100, test_size=50)
    digest = hashlib.sha256(source["train_images"].tobytes()
                            + source["test_images"].tobytes()).hexdigest()
    assert digest == "dc930c5867240670291eab9182a05a34833881d3f61e36239cc9ba7493f4574f"
