"""A model cut in two at a layer: the part up to that layer's output, and the rest.

Experiments that change one layer's output many times over (SAE reconstructions, feature
ablations and boosts) rerun the whole network each time, although everything before the
layer computes the same activations again. Cutting the model once lets them compute those
activations once per image and run only the rest for each change.

The cut is made on the model's traced graph (:mod:`torch.fx`), so it needs no cooperation
from the model's class. It is refused (:func:`split_at_layer` returns None, and callers
run the whole model with a hook instead) when the model cannot be traced, when the layer
is not called exactly once, or when a value computed before the layer is used after it
(a skip connection across the cut): then the rest could not run from the layer's output
alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn


@dataclass(frozen=True)
class LayerSplit:
    """``after(before(x))`` is ``model(x)``: the same operations in the same order."""

    before: nn.Module  # x -> the layer's output
    after: nn.Module   # the layer's output -> the model's output

    def __call__(self, x: Tensor) -> Tensor:
        return self.after(self.before(x))


def split_at_layer(model: nn.Module, layer: str) -> LayerSplit | None:
    """Cut ``model`` after the module named ``layer`` (a dotted name, as
    ``named_modules`` gives it); None when it cannot be cut there (see the module
    docstring)."""
    try:
        traced = fx.symbolic_trace(model)
    except Exception:  # any model fx cannot trace runs whole instead
        return None
    nodes = list(traced.graph.nodes)
    cuts = [node for node in nodes if node.op == "call_module" and node.target == layer]
    if len(cuts) != 1:
        return None
    cut = cuts[0]
    position = nodes.index(cut)
    upstream = set(nodes[:position + 1])
    downstream = nodes[position + 1:]
    for node in downstream:
        if any(used in upstream and used is not cut for used in node.all_input_nodes):
            return None
        if node.op == "placeholder":
            return None

    before_graph = fx.Graph()
    before_values: dict[fx.Node, fx.Node] = {}
    for node in nodes[:position + 1]:
        before_values[node] = before_graph.node_copy(node, lambda used: before_values[used])
    before_graph.output(before_values[cut])

    after_graph = fx.Graph()
    after_values: dict[fx.Node, fx.Node] = {cut: after_graph.placeholder("activation")}
    for node in downstream:
        after_values[node] = after_graph.node_copy(node, lambda used: after_values[used])
    return LayerSplit(fx.GraphModule(traced, before_graph), fx.GraphModule(traced, after_graph))


def check_split(model: nn.Module, split: LayerSplit, example: Tensor) -> bool:
    """Whether the two parts give the model's own output on ``example`` (a guard for
    models whose forward depends on more than fx records, such as Python control flow
    on tensor values)."""
    with torch.no_grad():
        return bool(torch.equal(model(example), split(example)))
