"""The study's TOML checked by the commands' own flags, every section before the first stage.

A study section mirrors a command (``[probe]`` runs what ``shortcutlab probe`` runs), and a
key that has a flag of that command (``steps`` and ``--steps``) is checked by that flag's
own argparse type and choices: the command line and the TOML are one declaration, so they
cannot disagree. Keys a command has no flag for are checked for their type only (by
:func:`shortcutlab.study.config.load_config`); a key's "use the default" value (``0`` for
``[lazy] steps``, ``-1`` for a seed) is exempt, as its comment in ``study.toml`` says.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shortcutlab.errors import ShortcutlabError

COMMAND_MODULES = {
    "data": "shortcutlab.data.commands", "train": "shortcutlab.train.commands",
    "probe": "shortcutlab.probe.commands", "explain": "shortcutlab.explain.commands",
    "attack": "shortcutlab.attack.commands", "sae": "shortcutlab.decompose.commands",
    "intervene": "shortcutlab.intervene.commands",
}


def command_parser(command: tuple[str, ...]) -> argparse.ArgumentParser:
    """The parser of ``shortcutlab COMMAND [SUBCOMMAND]``, built from its own module."""
    root = argparse.ArgumentParser()
    subparsers = root.add_subparsers()
    importlib.import_module(COMMAND_MODULES[command[0]]).register(subparsers)
    parser: argparse.ArgumentParser = subparsers.choices[command[0]]
    for name in command[1:]:
        nested = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = nested.choices[name]
    return parser


@dataclass(frozen=True)
class LikeCommand:
    """A study section checked like ``shortcutlab COMMAND``: each of its keys that names a
    flag (``key`` -> ``--key``, or as ``renamed``) goes through that flag's type and choices;
    a key whose value is its ``unset`` one means "the default" and is not checked."""

    command: tuple[str, ...]
    renamed: Mapping[str, str] = field(default_factory=dict)
    unset: Mapping[str, Any] = field(default_factory=dict)

    def check(self, section: str, options: Mapping[str, Any]) -> None:
        parser = command_parser(self.command)
        flags = {flag: action for action in parser._actions for flag in action.option_strings}
        shown = "shortcutlab " + " ".join(self.command)
        for key, value in options.items():
            flag = self.renamed.get(key, "--" + key.replace("_", "-"))
            action = flags.get(flag)
            if action is None or isinstance(value, bool) or (
                    key in self.unset and value == self.unset[key]):
                continue
            for item in value if isinstance(value, list) else [value]:
                try:
                    parsed = action.type(str(item)) if callable(action.type) else item
                except argparse.ArgumentTypeError as exc:
                    raise ShortcutlabError(
                        f"[{section}] {key} = {item!r} is refused: {exc} (the check of "
                        f"`{shown} {flag}`)") from None
                if action.choices is not None and parsed not in action.choices:
                    raise ShortcutlabError(
                        f"[{section}] {key} = {item!r} is refused: choose one of "
                        f"{', '.join(map(str, action.choices))} (as `{shown} {flag}`)")


def check_study_options(config: Mapping[str, Any],
                        checks: Mapping[str, LikeCommand]) -> None:
    """Check every section that has a :class:`LikeCommand`, before any stage runs."""
    for section, like in checks.items():
        if isinstance(config.get(section), Mapping):
            like.check(section, config[section])
