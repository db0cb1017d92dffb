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
from shortcutlab.allocator import tune_allocator
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
    "shortcutlab.study.explore",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shortcutlab",
        description="Make a network cheat on Colored MNIST, prove it, cure it and fool it.",
    )
    parser.add_argument("--version", action="version", version=f"shortcutlab {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an unexpected error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    tune_allocator()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    argv = [arg for arg in argv if arg != "--debug"]
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # a refused option: argparse has said why, on stderr
        if exit_.code in (0, None):
            raise  # --help and --version end the program as argparse means them to
        return int(exit_.code) if isinstance(exit_.code, int) else 2
    try:
        result = args.func(args)
    except ShortcutlabError as exc:
        print(f"shortcutlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"shortcutlab: interrupted; {resume_hint(args, argv)}", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"shortcutlab: error: {describe(exc)} (the full traceback is in "
              f"{save_traceback(argv)}; --debug shows it here)", file=sys.stderr)
        return 2
    return int(result or 0)


def resume_hint(args: argparse.Namespace, argv: list[str]) -> str:
    """What to run to go on: the same command, with ``--resume`` where the command has it
    and it was not given."""
    command = " ".join(["shortcutlab", *argv])
    if hasattr(args, "resume") and not args.resume:
        return f"continue with: {command} --resume"
    return f"continue with: {command}"


def describe(exc: BaseException) -> str:
    """One line for an error that escaped the library's own checks."""
    if isinstance(exc, NotADirectoryError | FileExistsError | IsADirectoryError):
        return (f"{exc.filename or exc} is in the way: a file where a directory is needed "
                "(or the reverse); choose another --out or remove it")
    if isinstance(exc, PermissionError):
        return f"no permission to write {exc.filename or exc}; choose another --out"
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename or exc} does not exist; check the path"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def save_traceback(argv: list[str]) -> str:
    """Write the current exception's traceback to a log file and return its path."""
    import os
    import tempfile
    import time
    import traceback
    from pathlib import Path

    folder = Path(os.environ.get("SHORTCUTLAB_LOG_DIR")
                  or Path(tempfile.gettempdir()) / "shortcutlab-logs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(f"shortcutlab {' '.join(argv)}\n\n{traceback.format_exc()}")
        return str(path)
    except OSError:
        return "(no log: the log directory is not writable)"


if __name__ == "__main__":
    raise SystemExit(main())
