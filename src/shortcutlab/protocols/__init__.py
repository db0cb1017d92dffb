"""Published Colored-MNIST protocols as named benchmarks (``shortcutlab benchmark``).

``get_protocol(name)`` reads a protocol (its data file in ``protocols/data``);
``run_benchmark(protocol, out, ...)`` runs its grid of methods x conflicting ratios x
seeds through the sweep machinery and writes a table of ours beside the published numbers.
"""

from shortcutlab.protocols.protocol import Protocol, Published, get_protocol, list_protocols
from shortcutlab.protocols.run import run_benchmark, sweep_spec

__all__ = ["Protocol", "Published", "get_protocol", "list_protocols", "run_benchmark",
           "sweep_spec"]
