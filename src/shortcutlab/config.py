"""The study's configuration: one TOML file of documented defaults, overlaid by the user's.

``study.toml`` beside this module holds every default with a comment; a user file may
override any subset of it. A key the defaults do not know is an error (a typo must not be
silently ignored). ``[quick.*]`` tables are applied on top when ``--quick`` is given.
"""

from __future__ import annotations

import copy
import json
import re
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
    """Defaults, then (with ``quick``) the ``[quick]`` overlay, then the user's file, then
    (with ``quick``) the user's own ``[quick]`` tables: what the user writes wins."""
    config = tomllib.loads(default_config_text())
    quick_overlay = config.pop("quick", {})
    if quick:
        config = _merge(config, quick_overlay, "")
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ShortcutlabError(f"config file {path} does not exist")
        try:
            user = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ShortcutlabError(f"{path} is not valid TOML: {exc}") from exc
        user_quick = user.pop("quick", {})
        config = _merge(config, user, "")
        checked = _merge(config, user_quick, "quick")  # a typo errs even without --quick
        if quick:
            config = checked
    return config


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)


def _split_comment(text: str) -> tuple[str, str]:
    """``'value  # comment'`` -> (``'value'``, ``'  # comment'``), quotes respected."""
    quote = None
    for position, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#":
            stripped = text[:position].rstrip()
            return stripped, text[len(stripped):]
    return text.rstrip(), ""


def render_config(config: Mapping[str, Any], quick: bool = False) -> str:
    """The documented default file with every value replaced by ``config``'s (the
    effective configuration). With ``quick`` the overlay is already applied, so the
    ``[quick.*]`` tables are left out."""
    lines, section = [], None
    for line in default_config_text().splitlines():
        header = re.match(r"\[([A-Za-z0-9_.-]+)\]", line)
        if header:
            section = header.group(1)
        elif section and not section.startswith("quick."):
            assignment = re.match(r"([A-Za-z0-9_-]+)(\s*=\s*)(.*)$", line)
            if assignment and assignment.group(1) in config.get(section, {}):
                key, equals, rest = assignment.groups()
                _, comment = _split_comment(rest)
                column = len(line) - len(comment.lstrip())  # keep comments aligned
                line = f"{key}{equals}{_toml_value(config[section][key])}"
                if comment:
                    line += " " * max(1, column - len(line)) + comment.lstrip()
        if quick and section and section.startswith("quick."):
            continue
        lines.append(line)
    text = "\n".join(lines).rstrip() + "\n"
    if quick:
        text = text.replace("`[quick.*]` tables override these for --quick.",
                            "The --quick overlay is applied.")
    return text
