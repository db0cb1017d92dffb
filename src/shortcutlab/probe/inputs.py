"""Finding what an analysis needs from a run directory: the model and its dataset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import read_json
from shortcutlab.errors import ShortcutlabError


def _recorded_data_dir(config: dict[str, Any]) -> str | None:
    for key in ("data_dir", "data"):
        value = config.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            for inner in ("dir", "path", "data_dir"):
                if isinstance(value.get(inner), str):
                    return value[inner]
    return None


def resolve_data_dir(run_dir: str | os.PathLike, data_dir: str | os.PathLike | None,
                     remedy: str = "pass --data with the dataset the model was trained on"
                     ) -> Path:
    """``data_dir`` when given, else the dataset recorded in the run's ``config.json``;
    ``remedy`` is what the error tells a command's user to do when it is not a dataset."""
    if data_dir is not None:
        path = Path(data_dir)
    else:
        config_path = Path(run_dir) / "config.json"
        recorded = _recorded_data_dir(read_json(config_path)) if config_path.is_file() else None
        if recorded is None:
            raise ShortcutlabError(
                f"{run_dir} does not record which dataset it was trained on; pass --data DIR")
        path = Path(recorded)
        if not path.is_absolute() and not path.exists():
            path = Path(run_dir) / recorded
    if not (path / "meta.json").is_file():
        raise ShortcutlabError(f"{path} is not a shortcutlab dataset (no meta.json); {remedy}")
    return path
