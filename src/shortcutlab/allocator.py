"""The C allocator's settings for PyTorch on CPU (no torch import: the CLI calls it first)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_ALLOCATOR_SETTINGS = {
    # a batch's activations and gradients (up to 32 MiB each, glibc's largest) come from
    # the heap instead of a fresh mmap that the kernel zero-fills page by page
    _M_MMAP_THRESHOLD: 32 * 2**20,
    # freed memory stays with the process for the next batch instead of going back
    _M_TRIM_THRESHOLD: 2**31 - 1,
    # the heap grows in steps of 256 MiB (untouched address space, not resident memory)
    _M_TOP_PAD: 256 * 2**20,
}
_USER_ALLOCATOR_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                       "MALLOC_ARENA_MAX", "LD_PRELOAD")
_allocator_tuned: bool | None = None


def tune_allocator() -> bool:
    """Keep freed tensor memory in the process for reuse (glibc only); True when applied.

    PyTorch on CPU frees a batch's large buffers and allocates them again for the next
    batch; glibc hands such buffers back to the kernel and gets them anew, zero-filled
    page by page, so a third of a training step's time went to page faults (system time).
    With these settings the study's training steps take about two thirds of the time, for
    the same bytes (benchmarks/bench_allocator.py, docs/benchmarks.md#allocator), at a
    slightly higher resident peak. Done once per process; left alone when the user chose an
    allocator (``MALLOC_*`` variables, ``LD_PRELOAD``) or set ``SHORTCUTLAB_MALLOC=0``.
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if os.environ.get("SHORTCUTLAB_MALLOC", "1") == "0" or any(
            name in os.environ for name in _USER_ALLOCATOR_ENV):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _allocator_tuned = all(mallopt(parameter, value) == 1
                           for parameter, value in _ALLOCATOR_SETTINGS.items())
    return _allocator_tuned
