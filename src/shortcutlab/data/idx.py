"""The IDX file format of MNIST and Fashion-MNIST (``train-images-idx3-ubyte[.gz]`` etc.).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C order. Reading
checks every part of that: a wrong magic, an impossible dimension or a file whose length
does not match its header raises a :class:`ShortcutlabError` that names the file, so a
truncated download can never pass for data. Files ending in ``.gz`` (or starting with
the gzip magic) are decompressed first, and gzip's own CRC catches corruption inside.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from shortcutlab.artifacts import write_bytes
from shortcutlab.errors import ShortcutlabError

# IDX type codes -> numpy dtypes (values are big-endian on disk).
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder(">") if dtype.itemsize > 1 else dtype: code
          for code, dtype in IDX_TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
MAX_DIMENSIONS = 8


def idx_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    dtype = np.dtype(dtype)
    key = dtype.newbyteorder(">") if dtype.itemsize > 1 else dtype
    if key not in _CODES:
        raise ValueError(f"IDX cannot hold {dtype}; use one of {sorted(map(str, _CODES))}")
    return bytes([0, 0, _CODES[key], len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def idx_bytes(array: np.ndarray) -> bytes:
    """The uncompressed IDX encoding of ``array`` (what ``*-ubyte`` files hold)."""
    array = np.asarray(array)
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    return idx_header(array.shape, array.dtype) + np.ascontiguousarray(array, big).tobytes()


def idx_sha256(array: np.ndarray) -> str:
    """sha256 of the uncompressed IDX encoding, i.e. of the official ``*-ubyte`` file."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(idx_header(array.shape, array.dtype))
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    digest.update(memoryview(np.ascontiguousarray(array, big)).cast("B"))
    return digest.hexdigest()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as IDX (gzip-compressed when ``compress`` or the name ends in .gz)."""
    path = Path(path)
    data = idx_bytes(array)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    write_bytes(path, data)


def parse_idx(data: bytes | memoryview, name: str = "<bytes>") -> np.ndarray:
    """Decode uncompressed IDX bytes; ``name`` is used in error messages."""
    view = memoryview(data)
    if len(view) < 4:
        raise _bad(name, f"is {len(view)} bytes long, too short for an IDX header")
    zero1, zero2, code, ndim = view[:4].tolist()
    if zero1 or zero2:
        raise _bad(name, f"has magic {bytes(view[:4]).hex()}, not an IDX file "
                   "(the first two bytes must be zero)")
    if code not in IDX_TYPES:
        raise _bad(name, f"has unknown IDX type code 0x{code:02x}")
    if not 1 <= ndim <= MAX_DIMENSIONS:
        raise _bad(name, f"declares {ndim} dimensions")
    header = 4 + 4 * ndim
    if len(view) < header:
        raise _bad(name, f"is truncated inside its header ({len(view)} of {header} bytes)")
    shape = struct.unpack(f">{ndim}I", view[4:header])
    dtype = IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(view) - header
    if found < expected:
        raise _bad(name, f"is truncated: its header {shape} promises {expected} bytes of "
                   f"data but it holds {found}")
    if found > expected:
        raise _bad(name, f"has {found - expected} unexpected bytes after the {shape} data")
    array = np.frombuffer(view[header:], dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx_bytes(path: str | os.PathLike) -> bytes:
    """The uncompressed content of an IDX file, plain or gzip-compressed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ShortcutlabError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not raw.startswith(_GZIP_MAGIC):
        if path.suffix == ".gz":
            raise _bad(path, "ends in .gz but is not gzip data")
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise _bad(path, f"is a truncated or corrupt gzip file ({exc})") from exc


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read and validate one IDX file (``.gz`` or not)."""
    return parse_idx(read_idx_bytes(path), str(path))


def _bad(name: str | os.PathLike, problem: str) -> ShortcutlabError:
    return ShortcutlabError(f"{name} {problem}; delete it and fetch it again")


IDX_NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def read_idx_dir(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """The four arrays of a directory in MNIST's IDX layout (each file plain or ``.gz``)."""
    directory = Path(directory)
    arrays = {}
    for key, name in IDX_NAMES.items():
        found = [directory / candidate for candidate in (name, name + ".gz")
                 if (directory / candidate).is_file()]
        if not found:
            raise ShortcutlabError(f"{directory} has no {name} (or {name}.gz); an IDX source "
                                   f"holds {', '.join(IDX_NAMES.values())}")
        arrays[key] = read_idx(found[0])
    return arrays
