"""The interventions, one family per file; importing this package registers them all.

``shortcutlab.intervene.registry.ORDER`` sets the order of ``--list`` and of the table.
"""

from shortcutlab.intervene.methods import (  # noqa: F401  (registration)
    consistency,
    erm,
    groups,
    jtt,
    lff,
    rrr,
    saliency,
    tea,
    teacher,
)
