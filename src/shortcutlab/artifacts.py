"""Safe, atomic, reproducible reading and writing of the artifacts stages exchange.

Every write goes to a temporary file in the target directory and is renamed into place,
so a crash never leaves a half-written artifact under the final name. ``.npz`` files are
written with fixed zip timestamps so that the same arrays give the same bytes, and
``torch`` files are only ever loaded with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import sys
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


_HELD_LOCKS: set[Path] = set()
# What atomic_open leaves behind when a writer is killed: mkstemp's ".NAME.XXXXXXXX.tmp".
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def remove_temporaries(directory: Path) -> None:
    """Remove the temporary files of killed writes in ``directory`` and its immediate
    subdirectories (a run's ``checkpoints/``); only names atomic_open makes."""
    for pattern in (".*.tmp", "*/.*.tmp"):
        for leftover in directory.glob(pattern):
            if _TEMPORARY.match(leftover.name) and leftover.is_file():
                with contextlib.suppress(OSError):
                    leftover.unlink()


@contextlib.contextmanager
def writer_lock(directory: str | os.PathLike) -> Iterator[None]:
    """One writer per run or dataset directory, across processes.

    An exclusive ``flock`` on ``.NAME.lock`` beside the directory (beside, so that a
    ``--force`` that removes the directory cannot remove the lock with it). A second
    writer gets a :class:`ShortcutlabError` naming the process that holds it. The kernel
    drops the lock of a process that dies, so a lock left by a killed writer is no
    obstacle; the temporary files that writer left in the directory are removed once
    the lock is held. Re-entrant within a process (a run that trains, then measures).
    """
    directory = Path(directory).resolve()
    if directory in _HELD_LOCKS:
        yield
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    lock_path = directory.parent / f".{directory.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise ShortcutlabError(
                f"{directory} is being written by process {holder or '(unknown)'}; wait for "
                "it to finish (or stop it), then run the command again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        if directory.is_dir():
            remove_temporaries(directory)
        _HELD_LOCKS.add(directory)
        try:
            yield
        finally:
            _HELD_LOCKS.discard(directory)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


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
    import pickle

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # PyTorch's own message suggests turning weights_only off: never do that here.
        raise ChecksumError(
            f"{path} holds objects other than tensors and plain containers, which "
            "shortcutlab never loads (they could run code); use a file shortcutlab wrote, "
            "or re-save the weights as a plain state_dict") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise _corrupt(path, exc) from exc


def config_hash(obj: Any, length: int = 16) -> str:
    """A short stable hash of a JSON-able config (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, default=_json_default, separators=(",", ":"))
    return sha256_bytes(text.encode())[:length]


class _HashingWriter:
    """A forward-only file wrapper that hashes what passes through it.

    It has ``tell`` but no ``seek``, so :mod:`zipfile` writes sizes and CRCs after each
    member (data descriptors) instead of seeking back, and the sha256 of the finished
    file is known without reading it again.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._position = 0
        self.digest = hashlib.sha256()
        self.aborted = False  # after a failure, writes go nowhere (the file is discarded)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.aborted:
            return view.nbytes
        self.digest.update(view)
        self._handle.write(view)
        self._position += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        self._handle.flush()


class NpzWriter:
    """Stream arrays into an ``.npz`` atomically, hashing as it writes.

    For arrays too big to serialize in memory first (a dataset split): each member can be
    written in chunks as it is produced, and with ``background=True`` the CRC, hashing
    and disk writes run in a worker thread while the caller produces the next chunk
    (they release the GIL). Members are written in the order they are added; the same
    arrays in the same order give the same bytes. ``sha256`` is set on close::

        with NpzWriter(path) as npz:
            npz.add("labels", labels)
            with npz.stream("images", np.uint8, (n, 28, 28, 3)) as images:
                for chunk in chunks:
                    images.write(chunk)
        npz.sha256
    """

    def __init__(self, path: str | os.PathLike, background: bool = False,
                 max_pending: int = 4) -> None:
        self.path = Path(path)
        self.sha256: str | None = None
        self._background = background
        self._max_pending = max_pending
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> NpzWriter:
        handle = self._stack.enter_context(atomic_open(self.path, "wb"))
        self._writer = _HashingWriter(handle)
        self._zip = zipfile.ZipFile(self._writer, "w", compression=zipfile.ZIP_STORED)
        self._executor = None
        if self._background:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = self._stack.enter_context(ThreadPoolExecutor(max_workers=1))
        self._pending: list[Any] = []
        self._handles: list[Any] = []
        return self

    def add(self, name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        with self.stream(name, array.dtype, array.shape) as member:
            member.write(array)

    def stream(self, name: str, dtype: Any, shape: tuple[int, ...]) -> _NpzMember:
        return _NpzMember(self, name, np.dtype(dtype), tuple(int(s) for s in shape))

    def _submit(self, fn: Any, *args: Any) -> None:
        if self._executor is None:
            fn(*args)
            return
        self._pending.append(self._executor.submit(fn, *args))
        while len(self._pending) > self._max_pending:
            self._pending.pop(0).result()

    def _drain(self) -> None:
        while self._pending:
            self._pending.pop(0).result()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._drain()
            if exc_type is None:
                self._zip.close()
        except BaseException:
            self._abort()
            self._stack.__exit__(*sys.exc_info())
            raise
        if exc_type is not None:
            self._abort()
            self._stack.__exit__(exc_type, exc, tb)
            return
        self.sha256 = self._writer.digest.hexdigest()
        self._stack.close()

    def _abort(self) -> None:
        """Close zipfile's handles into the void so nothing writes to the discarded file."""
        self._writer.aborted = True
        for pending in self._pending:
            pending.cancel()
        self._pending.clear()
        for handle in self._handles:
            with contextlib.suppress(Exception):
                handle.close()
        with contextlib.suppress(Exception):
            self._zip.close()


class _NpzMember:
    """One ``.npy`` member of an :class:`NpzWriter`, written chunk by chunk in C order."""

    def __init__(self, npz: NpzWriter, name: str, dtype: np.dtype,
                 shape: tuple[int, ...]) -> None:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                     "shape": shape})
        self._npz, self._dtype = npz, dtype
        self._remaining = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
        info.external_attr = 0o644 << 16
        info.file_size = len(header.getvalue()) + self._remaining
        npz._drain()  # zipfile allows one open member at a time
        self._handle = npz._zip.open(info, "w")
        npz._handles.append(self._handle)
        self._handle.write(header.getvalue())

    def __enter__(self) -> _NpzMember:
        return self

    def write(self, chunk: np.ndarray) -> None:
        if chunk.dtype != self._dtype:
            raise ValueError(f"chunk dtype {chunk.dtype} != member dtype {self._dtype}")
        chunk = np.ascontiguousarray(chunk)
        self._remaining -= chunk.nbytes
        if self._remaining < 0:
            raise ValueError("more data than the member's shape holds")
        self._npz._submit(self._handle.write, memoryview(chunk).cast("B"))

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            return
        if self._remaining:
            raise ValueError(f"member is {self._remaining} bytes short of its shape")
        self._npz._submit(self._handle.close)
