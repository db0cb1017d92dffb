"""The study's configuration: one TOML file of documented defaults, overlaid by the user's.

``study.toml`` beside this module holds every default with a comment; a user file may
override any subset of it. A key the defaults do not know is an error (a typo must not be
silently ignored). ``[quick.*]`` tables are applied on top when ``--quick`` is given.

One study seed: ``[study] seed`` (``shortcutlab study --seed N``) is what every stage's
``seed = -1`` becomes, so a study is replicated on another seed with one flag; a stage
table that sets its own seed keeps it.
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
STUDY_SEED = -1
"""A stage's ``seed`` value meaning: the ``[study] seed``."""


def default_config_text() -> str:
    return resources.files("shortcutlab.study").joinpath(DEFAULT_CONFIG_NAME).read_text()


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
            _check_type(path, merged[key], value)
            merged[key] = value
    return merged


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _check_type(path: str, default: Any, value: Any) -> None:
    """A value must have its default's kind (a number where the default is a number, ...),
    so that ``limit = "200"`` is refused before the first stage runs."""
    if _kind(default) != _kind(value):
        raise ShortcutlabError(f"config key {path!r} must be {_kind(default)} like its default "
                               f"({default!r}), got {value!r}")

def load_config(path: str | Path | None = None, quick: bool = False,
                seed: int | None = None,
                runtime: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then (with ``quick``) the ``[quick]`` overlay, then the user's file, then
    (with ``quick``) the user's own ``[quick]`` tables: what the user writes wins. Then
    ``seed`` (``--seed``), when given, replaces ``[study] seed``, and every stage seed
    left at -1 becomes the study seed; ``runtime`` values that are not None
    (``--device``, ``--threads``) replace ``[study]``'s."""
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
    if seed is not None:
        config["study"]["seed"] = seed
    config["study"].update({key: value for key, value in (runtime or {}).items()
                            if value is not None})
    return resolve_seeds(config)


def resolve_seeds(config: dict[str, Any]) -> dict[str, Any]:
    """Every stage table's ``seed = -1`` replaced by the ``[study] seed`` (checked)."""
    study_seed = config["study"].get("seed")
    if not isinstance(study_seed, int) or isinstance(study_seed, bool) or study_seed < 0:
        raise ShortcutlabError(f"[study] seed must be a non-negative integer, got {study_seed!r}")
    for name, table in config.items():
        if name == "study" or not isinstance(table, dict) or "seed" not in table:
            continue
        value = table["seed"]
        if not isinstance(value, int) or isinstance(value, bool) or value < STUDY_SEED:
            raise ShortcutlabError(f"[{name}] seed must be a non-negative integer, or -1 for "
                                   f"the [study] seed; got {value!r}")
        if value == STUDY_SEED:
            table["seed"] = study_seed
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
