"""The dataset's background styles, one module each.

To add a style, add one file to this folder with a pattern function decorated by
:func:`~shortcutlab.data.styles.register_style`; see docs/architecture.md. For example
``plaid.py``::

    import numpy as np

    from shortcutlab.data.styles import SIZE, StyleParams, register_style, tinted_background


    @register_style("plaid", tinted_background, "crossed bands of the class color")
    def plaid_pattern(n: int, rng: np.random.Generator, params: StyleParams) -> np.ndarray:
        ...  # uint8 (n, 28, 28) from ``rng`` alone

Nothing else needs an edit: :data:`shortcutlab.data.styles.STYLES` calls
:func:`load_backgrounds` before its first lookup, which imports every module here (the
names starting with ``_`` excepted, for private helpers), so ``--style plaid``,
``data styles`` and sweep specs know the new style. The built-in styles come first, in
:data:`BUILT_IN` order; any other module follows in name order. The framework (what a
style is, the shades, :func:`~shortcutlab.data.styles.random_levels` and the other
helpers for patterns) is :mod:`shortcutlab.data.styles`.

This package imports nothing of the library itself, so ``styles`` can name it at import
time; its modules import ``styles``.
"""

from __future__ import annotations

import importlib
import pkgutil

# The built-in styles, in the order --help, ``data styles`` and error messages list them.
BUILT_IN = ("noise", "smooth", "perlin", "stripes", "stroke", "solid", "lff", "rebias")


def module_names() -> list[str]:
    """The style modules of this package, in import order: the built-in ones in
    :data:`BUILT_IN` order, then the others by name."""
    found = {info.name for info in pkgutil.iter_modules(__path__)
             if not info.name.startswith("_")}
    return [name for name in BUILT_IN if name in found] + sorted(found.difference(BUILT_IN))


def load_backgrounds() -> None:
    """Import every style module of this package (each registers its style on import)."""
    for name in module_names():
        importlib.import_module(f"{__name__}.{name}")
