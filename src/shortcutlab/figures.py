"""The one way the project writes a figure to disk.

Every stage used to carry its own copy of "render to PNG, write, close", each with its own
dpi and its own idea of atomicity. They are one helper now, so that

* every figure has the same house resolution (:data:`DPI`), unless its pixel geometry is
  deliberate (a canvas drawn so that one canvas pixel is one figure pixel), in which case
  the caller passes its dpi explicitly and says why;
* a PNG is rendered fully into memory and then written atomically
  (:func:`shortcutlab.artifacts.write_bytes`), so a crash never leaves half a picture under
  the final name;
* the bytes are deterministic: the same figure gives the same PNG run after run (the PNG
  writer records no timestamp), and :data:`STABLE_METADATA` also drops the matplotlib
  version string where a figure's hash is recorded;
* pyplot figures are released once written, so long runs do not accumulate open figures.

Figures made without pyplot (``matplotlib.figure.Figure`` with an Agg canvas) work too;
closing them is a no-op.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping
from typing import Any

from shortcutlab.artifacts import write_bytes


def headless() -> None:
    """Render figures without a display (Agg), unless a backend is chosen already.

    A notebook's inline backend, ``MPLBACKEND`` or a script that imported pyplot first
    keep theirs: switching the process to Agg would stop a notebook from showing its
    figures after the first stage that writes one.
    """
    if "matplotlib.pyplot" in sys.modules or os.environ.get("MPLBACKEND"):
        return
    import matplotlib

    matplotlib.use("Agg")


DPI = 110
"""The house resolution of every figure whose pixel size is not deliberate."""

STABLE_METADATA: Mapping[str, str | None] = {"Software": None}
"""PNG metadata without the "Software: Matplotlib version ..." entry, for figures whose
bytes are hashed or compared, so that they do not change with the matplotlib version."""


def figure_bytes(fig: Any, dpi: float = DPI, tight: bool = True,
                 metadata: Mapping[str, str | None] | None = None) -> bytes:
    """Render ``fig`` as PNG bytes and release it if pyplot manages it.

    ``tight`` crops to the drawn content (``bbox_inches="tight"``); ``metadata`` is passed
    to matplotlib's PNG writer (``None``: matplotlib's default, a "Software" entry).
    """
    buffer = io.BytesIO()
    options: dict[str, Any] = {"format": "png", "dpi": dpi}
    if tight:
        options["bbox_inches"] = "tight"
    if metadata is not None:
        options["metadata"] = dict(metadata)
    try:
        fig.savefig(buffer, **options)
    finally:
        close(fig)
    return buffer.getvalue()


def save_figure(fig: Any, path: str | os.PathLike, dpi: float = DPI, tight: bool = True,
                metadata: Mapping[str, str | None] | None = None) -> None:
    """Write ``fig`` to ``path`` as a PNG, atomically, and release it (see :func:`figure_bytes`)."""
    write_bytes(path, figure_bytes(fig, dpi=dpi, tight=tight, metadata=metadata))


def close(fig: Any) -> None:
    """Release a pyplot figure; a figure pyplot does not manage is left alone.

    pyplot is not imported for this: if it was never imported, it manages no figure.
    """
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)
