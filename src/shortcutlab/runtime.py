"""Device choice, seeding and thread control shared by every stage."""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

from shortcutlab.errors import ShortcutlabError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Map ``auto|cpu|cuda[:N]`` to a device, failing clearly when CUDA is asked for but absent."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ShortcutlabError(
            f"--device {name} was requested but this PyTorch build sees no CUDA GPU; "
            "use --device cpu or --device auto"
        )
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ShortcutlabError(f"unknown device {name!r}; use one of {DEVICE_CHOICES}") from exc


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads; None reads ``SHORTCUTLAB_THREADS``, else keeps torch's.

    A fixed thread count keeps CPU results bit-identical between runs.
    """
    if threads is None:
        env = os.environ.get("SHORTCUTLAB_THREADS")
        threads = int(env) if env else None
    if threads is not None:
        if threads < 1:
            raise ShortcutlabError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


def peak_memory_bytes() -> int | None:
    """This process's peak resident memory so far (bytes), None where it is not known.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: ``getrusage``'s ``ru_maxrss``
    carries the parent's peak over ``fork`` and ``exec``, so a worker spawned by a process
    holding a dataset would report the parent's memory as its own.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # Linux: KiB
