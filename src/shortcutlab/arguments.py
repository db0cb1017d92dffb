"""Command-line options every command that runs a model shares: ``--device``, ``--threads``
and the ``KEY=VALUE`` parser of ``--model-arg`` and ``--set``.

One definition, so that every command accepts the same devices, checks them the same way
before any work starts, and documents them in the same words. Only :mod:`argparse` is
imported here (``shortcutlab --help`` must not import torch).
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_name(text: str) -> str:
    """argparse type of ``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a device; use auto, cpu, cuda or cuda:N")
    return text


def _integer_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def positive_int(text: str) -> int:
    """argparse type of a count or size: an integer of at least 1."""
    return _integer_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type of an integer that may be 0 (0 usually means "off")."""
    return _integer_at_least(text, 0, "a non-negative integer")


def _float_in(text: str, low: float, high: float, low_open: bool, high_open: bool,
              what: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not math.isfinite(value) or too_low or too_high:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def positive_float(text: str) -> float:
    """argparse type of a rate, size or budget: a finite number above 0."""
    return _float_in(text, 0.0, float("inf"), True, True, "a positive number")


def non_negative_float(text: str) -> float:
    """argparse type of a weight or penalty that may be 0."""
    return _float_in(text, 0.0, float("inf"), False, True, "a number >= 0")


def unit_float(text: str) -> float:
    """argparse type of a share or probability: a number in [0, 1]."""
    return _float_in(text, 0.0, 1.0, False, False, "a number in [0, 1]")


def momentum_value(text: str) -> float:
    """argparse type of SGD momentum: a number in [0, 1)."""
    return _float_in(text, 0.0, 1.0, False, True, "a momentum in [0, 1)")


def thread_count(text: str) -> int:
    """argparse type of ``--threads``: a positive integer."""
    return _integer_at_least(text, 1, "a positive number of threads")


def seed_value(text: str) -> int:
    """argparse type of a seed: a non-negative integer."""
    return _integer_at_least(text, 0, "a non-negative integer seed")


def _writable_place(path: str, what: str) -> None:
    """Refuse ``path`` unless it, or the nearest folder above it that exists, is a folder
    this process may write into: checked when the option is read, before any work."""
    import os
    from pathlib import Path

    place = Path(path).absolute()
    while not place.exists():
        place = place.parent
    if not place.is_dir():
        raise argparse.ArgumentTypeError(
            f"{path!r} cannot be created: {str(place)!r} is a file, not a folder; "
            f"choose another {what}")
    if not os.access(place, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"no permission to write into {str(place)!r}; choose another {what}")


def output_dir(text: str) -> str:
    """argparse type of an output folder (``--out DIR``): not an existing file, and
    creatable where it does not exist yet."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path is not an output folder")
    from pathlib import Path

    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(
            f"{text!r} is a file; --out needs a folder: choose another path or remove it")
    _writable_place(text, "--out")
    return text


def output_file(text: str) -> str:
    """argparse type of an output file (``--out FILE``): not an existing folder, and
    creatable where it does not exist yet."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path is not an output file")
    from pathlib import Path

    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(
            f"{text!r} is a folder; --out needs a file name: choose another path")
    _writable_place(str(Path(text).parent), "--out")
    return text


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with the value read as JSON when it parses (``width=16`` is an int,
    ``name=wide`` a string); dashes in the key become underscores."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().replace("-", "_"), value


def add_runtime_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                          device_default: str | None = "auto",
                          default_help: str = "auto: a CUDA GPU when there is one, else "
                                              "the CPU") -> None:
    """Add ``--device`` and ``--threads`` to ``parser`` (a parser or an argument group).

    ``device_default=None`` leaves the choice to something else (a preset, a config file,
    a run being resumed); ``default_help`` then says what decides.
    """
    parser.add_argument("--device", type=device_name, default=device_default,
                        metavar="DEVICE",
                        help=f"auto | cpu | cuda | cuda:N (default: {default_help})")
    parser.add_argument("--threads", type=thread_count, default=None, metavar="N",
                        help="CPU threads for torch (default: $SHORTCUTLAB_THREADS, else "
                             "torch's own choice)")


def apply_runtime(args: argparse.Namespace) -> Any:
    """Set the thread count and resolve the device of parsed ``args``: a ``torch.device``
    (a clear error when CUDA is asked for and absent)."""
    from shortcutlab.runtime import resolve_device, set_threads

    set_threads(args.threads)
    return resolve_device(args.device or "auto")
