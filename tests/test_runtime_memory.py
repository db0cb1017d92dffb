"""A process's peak memory is its own, not the peak of the process that started it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shortcutlab.runtime import peak_memory_bytes

SRC = str(Path(__file__).resolve().parents[1] / "src")
PROBE = "from shortcutlab.runtime import peak_memory_bytes as p; print(p())"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the quirk is Linux's")
def test_a_child_does_not_inherit_its_parents_peak():
    held = np.ones(2**28)  # 2 GiB touched by this process before it starts the child
    parent = peak_memory_bytes()
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            check=True, env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"})
    child = int(result.stdout.strip())
    assert held.nbytes <= parent
    # The child imports torch (a few hundred MiB); ru_maxrss would report >= 2 GiB here.
    assert 10 * 2**20 < child < 1.5 * 2**30
