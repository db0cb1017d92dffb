"""Forward hooks that live only inside context managers.

Analyses read or rewrite a layer's output while the model runs. Each helper here registers
its hooks on entry and removes them on exit, also when the body raises, so no hook is ever
left behind on a model (the discipline of zennit's composites).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

from torch import Tensor, nn

from shortcutlab.models import get_layer

OUTPUT = "output"  # the key under which :func:`capture` stores the model's own output


class StopForward(Exception):
    """Raised by :func:`capture` with ``stop_early`` once every asked-for layer has run."""


@contextlib.contextmanager
def capture(model: nn.Module, layers: Sequence[str],
            stop_early: bool = False) -> Iterator[dict[str, Tensor]]:
    """Record the outputs of ``layers`` on every forward pass into the yielded dict.

    The model's final output is stored under :data:`OUTPUT` when that name is asked for.
    Tensors keep their autograd graph, so objectives built on them can be optimized.
    With ``stop_early`` the forward pass is cut short (by :class:`StopForward`, which
    :func:`forward_until` catches) as soon as all ``layers`` are recorded, so that
    analyses of early layers do not pay for the rest of the network.
    """
    names = list(dict.fromkeys(layers))
    store: dict[str, Tensor] = {}
    seen: set[str] = set()
    stop = stop_early and OUTPUT not in names
    handles = []
    try:
        if stop:
            handles.append(model.register_forward_pre_hook(lambda *_: seen.clear()))
        for name in names:
            module = model if name == OUTPUT else get_layer(model, name)
            handles.append(module.register_forward_hook(
                _recorder(store, seen, name, len(names) if stop else 0)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def _recorder(store: dict[str, Tensor], seen: set[str], name: str, stop_after: int) -> Callable:
    def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        store[name] = output
        seen.add(name)
        if stop_after and len(seen) == stop_after:
            raise StopForward
    return hook


def forward_until(model: nn.Module, x: Tensor) -> Tensor | None:
    """Run ``model(x)``; return its output, or None when a :func:`capture` cut it short."""
    try:
        return model(x)
    except StopForward:
        return None


@contextlib.contextmanager
def edit_output(model: nn.Module, layer: str,
                edit: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Replace ``layer``'s output by ``edit(output)`` while the context is open."""
    module = get_layer(model, layer)

    def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        return edit(output)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def hook_count(model: nn.Module) -> int:
    """How many forward hooks are registered anywhere in ``model`` (tests check for zero)."""
    return sum(len(module._forward_hooks) + len(module._forward_pre_hooks)
               for module in model.modules())
