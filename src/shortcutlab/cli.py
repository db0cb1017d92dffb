"""The ``shortcutlab`` command: one parser, with each stage registering its own subcommands.

Stage command modules import only ``argparse`` at module level and defer heavy imports to
their handlers, so ``shortcutlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from shortcutlab import __version__
from shortcutlab.errors import ShortcutlabError

# Order is the order of the pipeline, and the order of ``shortcutlab --help``.
COMMAND_MODULES = (
    "shortcutlab.data.commands",
    "shortcutlab.train.commands",
    "shortcutlab.probe.commands",
    "shortcutlab.explain.commands",
    "shortcutlab.intervene.commands",
    "shortcutlab.attack.commands",
    "shortcutlab.decompose.commands",
    "shortcutlab.sweep.commands",
    "shortcutlab.protocols.commands",
    "shortcutlab.study.report.commands",
    "shortcutlab.study.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shortcutlab",
        description="Make a network cheat on Colored MNIST, prove it, cure it and fool it.",
    )
    parser.add_argument("--version", action="version", version=f"shortcutlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except ShortcutlabError as exc:
        print(f"shortcutlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("shortcutlab: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
