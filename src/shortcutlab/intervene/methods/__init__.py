"""The interventions, one family per file; importing this package registers them all.

Registration order is the order of ``--list`` and of the results table.
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
