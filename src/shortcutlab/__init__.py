"""shortcutlab: a reproducible laboratory for shortcut learning on Colored MNIST.

The pipeline is split into stages that talk through documented artifacts
(``docs/artifacts.md``): ``data`` builds the biased dataset, ``models`` and ``train``
make the cheater, ``probe`` and ``explain`` show what it reads, ``intervene`` cures it,
``attack`` fools it, ``decompose`` takes its activations apart, ``sweep`` scales the
experiments out and ``report`` writes the study up.
"""

from shortcutlab.errors import ShortcutlabError

__version__ = "0.1.0"
__all__ = ["ShortcutlabError", "__version__"]
