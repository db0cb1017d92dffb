"""The study's configuration: one TOML file of documented defaults, overlaid by the user's.

``study.toml`` beside this module holds every default with a comment; a user file may
override any subset of it. A key the defaults do not know is an error (a typo must not be
silently ignored). ``[quick.*]`` tables are applied on top when ``--quick`` is given.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from shortcutlab.errors import ShortcutlabError

DEFAULT_CONFIG_NAME = "study.toml"


def default_config_text() -> str:
    return resources.files("shortcutlab").joinpath(DEFAULT_CONFIG_NAME).read_text()


def _merge(base: dict[str, Any], override: Mapping[str, Any], where: str) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        path = f"{where}.{key}" if where else key
        if key not in merged:
            valid = ", ".join(sorted(merged)) or "(none)"
            raise ShortcutlabError(f"unknown config key {path!r}; valid keys here: {valid}")
        if isinstance(merged[key], dict) and isinstance(value, Mapping):
            merged[key] = _merge(merged[key], value, path)
        elif isinstance(merged[key], dict) or isinstance(value, Mapping):
            raise ShortcutlabError(f"config key {path!r} must be "
                                   f"{'a table' if isinstance(merged[key], dict) else 'a value'}")
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | None = None, quick: bool = False) -> dict[str, Any]:
    """Defaults, then the user's file, then (with ``quick``) the ``[quick]`` overlay."""
    config = tomllib.loads(default_config_text())
    quick_overlay = config.pop("quick", {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ShortcutlabError(f"config file {path} does not exist")
        try:
            user = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ShortcutlabError(f"{path} is not valid TOML: {exc}") from exc
        quick_overlay = _merge(quick_overlay, user.pop("quick", {}), "quick") if quick else {}
        config = _merge(config, user, "")
    if quick:
        config = _merge(config, quick_overlay, "")
    return config
