"""The interventions, one family per file; importing this package registers them all.

Every module of this package is imported (in name order), so adding a method is one new
file here (its class with ``@register_method``, its ``hparam_space``) and its test.
``shortcutlab.intervene.registry.ORDER`` sets the order of ``--list`` and of the table.
"""

import importlib
import pkgutil

for _module in sorted(info.name for info in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")  # registration
del _module
