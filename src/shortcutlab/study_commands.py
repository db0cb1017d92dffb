"""CLI subcommands of this stage (registered by ``shortcutlab.cli``)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands; heavy imports happen inside the handlers."""
