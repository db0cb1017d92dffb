"""Safe, atomic, reproducible reading and writing of the artifacts stages exchange.

Every write goes to a temporary file in the target directory and is renamed into place,
so a crash never leaves a half-written artifact under the final name. ``.npz`` files are
written with fixed zip timestamps so that the same arrays give the same bytes, and
``torch`` files are only ever loaded with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shortcutlab.errors import ChecksumError, ShortcutlabError

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only, got mode {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; final files get the usual mode
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as pretty, key-sorted JSON (stable bytes for stable content)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"
    write_bytes(path, text.encode())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ShortcutlabError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ShortcutlabError(f"{path} is not valid JSON ({exc}); delete it and re-run") from exc


def append_jsonl(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append one JSON line; a log, so durability per line matters more than atomicity."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(record, sort_keys=True, default=_json_default) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines log, ignoring a truncated last line left by a crash."""
    records = []
    lines = Path(path).read_text().splitlines()
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                break
            raise ShortcutlabError(f"{path}: line {number + 1} is not valid JSON") from None
    return records


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`ChecksumError` unless ``path`` hashes to ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(
            f"{path} is corrupt or was modified: sha256 {actual[:12]}... "
            f"but {expected[:12]}... was recorded. Delete it and rebuild it."
        )


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialize arrays as an uncompressed ``.npz`` whose bytes depend only on the arrays."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.ascontiguousarray(arrays[name]),
                                      allow_pickle=False)
            archive.writestr(info, payload.getvalue())
    return buffer.getvalue()


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> str:
    """Atomically write a deterministic ``.npz``; return its sha256."""
    data = npz_bytes(arrays)
    write_bytes(path, data)
    return sha256_bytes(data)


def load_npz(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` (never pickles), after an optional checksum check."""
    path = Path(path)
    if not path.is_file():
        raise ShortcutlabError(f"{path} does not exist")
    if expected_sha256 is not None:
        verify_sha256(path, expected_sha256)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise _corrupt(path, exc) from exc


def _corrupt(path: Path, exc: BaseException) -> ChecksumError:
    return ChecksumError(f"{path} is truncated or corrupt ({exc}); delete it and rebuild it")


def save_torch(path: str | os.PathLike, obj: Any) -> str:
    """Atomically ``torch.save`` tensors/state dicts; return the file's sha256."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    write_bytes(path, data)
    return sha256_bytes(data)


def load_torch(path: str | os.PathLike, expected_sha256: str | None = None,
               map_location: Any = "cpu") -> Any:
    """Load a torch file with ``weights_only=True`` (no arbitrary code), checksum optional."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ShortcutlabError(f"{path} does not exist")
    if expected_sha256 is not None:
        verify_sha256(path, expected_sha256)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise _corrupt(path, exc) from exc


def config_hash(obj: Any, length: int = 16) -> str:
    """A short stable hash of a JSON-able config (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, default=_json_default, separators=(",", ":"))
    return sha256_bytes(text.encode())[:length]
