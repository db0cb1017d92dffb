"""A dataset cache shared by every trial and worker of a sweep.

Datasets are keyed by ``config_hash`` of their :class:`BuildConfig` (which names the
source), so the 40 trials that share ``bias=0.95`` build that dataset once. Two workers
that want the same missing dataset at the same moment must neither build it twice nor
see half of it: the builder holds a lock file while it builds (the other waits, then
finds it done) and builds into a temporary directory that is renamed into place in one
step, so a dataset directory under its final name is always complete, even when the lock
does not reach across machines (a cache on a network file system).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import config_hash
from shortcutlab.errors import ShortcutlabError
from shortcutlab.sweep.storage import file_lock

# ``data: {dir: PATH}``: a dataset built beforehand, used as it is instead of the cache.
PREBUILT = "dir"


def dataset_key(config: Any) -> str:
    """The cache key of a BuildConfig: the hash of all its fields, the source included."""
    return config_hash(config.to_dict())


def is_prebuilt(data: Mapping[str, Any]) -> bool:
    return PREBUILT in data


def prebuilt_dataset(data: Mapping[str, Any]) -> tuple[Path, str]:
    """The directory and the dataset id of ``data = {dir: PATH}``."""
    from shortcutlab.artifacts import read_json

    if set(data) != {PREBUILT}:
        raise ShortcutlabError(f"data: {{{PREBUILT}: PATH}} names a dataset built beforehand "
                               f"and takes no other parameter, got {sorted(data)}")
    path = Path(data[PREBUILT])
    if not _complete(path):
        raise ShortcutlabError(f"{path} is not a dataset directory (no meta.json); build one "
                               "with `shortcutlab data build`")
    return path, str(read_json(path / "meta.json").get("dataset_id", path.name))


def dataset_identity(data: Mapping[str, Any]) -> str:
    """What names a trial's dataset: its cache key, or a prebuilt dataset's own id."""
    if is_prebuilt(data):
        return prebuilt_dataset(data)[1]
    from shortcutlab.data import BuildConfig

    return dataset_key(BuildConfig(**data))


def _complete(path: Path) -> bool:
    return (path / "meta.json").is_file()


def ensure_dataset(data: Mapping[str, Any], cache_dir: str | os.PathLike) -> tuple[Path, bool]:
    """The directory of the dataset ``data`` describes, building it if needed.

    Returns ``(path, built)``; ``built`` is True only for the call that built it. A
    prebuilt dataset (``{dir: PATH}``) is returned as it is.
    """
    from shortcutlab.data import BuildConfig, build_dataset, load_source

    if is_prebuilt(data):
        return prebuilt_dataset(data)[0], False

    try:
        config = BuildConfig(**data)
    except TypeError as exc:
        raise ShortcutlabError(f"bad dataset parameters {dict(data)}: {exc}") from exc
    config.validate()
    cache_dir = Path(cache_dir)
    key = dataset_key(config)
    final = cache_dir / key
    if _complete(final):
        return final, False
    cache_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(cache_dir / f".{key}.lock"):
        if _complete(final):
            return final, False
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".building", dir=cache_dir))
        try:
            build_dataset(config, staging, load_source(config.source, limit=config.limit))
            try:
                os.rename(staging, final)
            except OSError:
                if not _complete(final):
                    # a broken leftover under the final name (a crash before renames were
                    # atomic, or a hand edit): replace it
                    shutil.rmtree(final, ignore_errors=True)
                    os.rename(staging, final)
                else:  # another machine won the race; its copy is identical
                    return final, False
        finally:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(staging)
    return final, True
