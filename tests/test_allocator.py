"""The allocator settings apply once per process, on glibc, unless the user chose otherwise."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
PROBE = "from shortcutlab.allocator import tune_allocator as t; print(t(), t())"


def _tuned(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k not in ("LD_PRELOAD", "SHORTCUTLAB_MALLOC")}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            check=True, env={**clean, "PYTHONPATH": SRC, **env})
    return result.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_applied_once_on_glibc():
    assert _tuned() == "True True"


def test_the_user_can_say_no_or_choose_their_own():
    assert _tuned(SHORTCUTLAB_MALLOC="0") == "False False"
    assert _tuned(MALLOC_ARENA_MAX="2") == "False False"
