"""Does LRP see every nonlinearity of a model? One probe pass tells, before any work.

LRP applies its rules at modules: relevance crosses every other operation by the plain
gradient. That is right for what is linear or piecewise linear with a gradient of 0 or 1
(ReLU, max-pooling, additions, reshapes, scaling by a constant) and wrong for anything
else. A sigmoid gate written in ``forward`` (``x * torch.sigmoid(x)``), a functional
``F.gelu`` or a product of two activations would be crossed silently, giving heatmaps
that look plausible and are not LRP. So before the first heatmap of a model, one forward
pass of a single input runs under a :class:`torch.overrides.TorchFunctionMode` that
records every torch call made outside the model's leaf modules, with the module whose
``forward`` made it; a call that is not on :data:`PASS_CALLS` is an error naming the call,
the module and what to change.

Why not torch.fx: symbolic tracing fails on data-dependent control flow, which users'
models have, and names no module on failure; a real pass sees what runs.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode, resolve_name

from shortcutlab.errors import ShortcutlabError

# Operations relevance may cross by the plain gradient, by the last part of their name.
PASS_CALLS = frozenset({
    "relu", "relu_", "max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices",
    "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices", "avg_pool2d",
    "adaptive_avg_pool2d", "flatten", "unflatten", "view", "view_as", "reshape",
    "reshape_as", "squeeze", "unsqueeze", "permute", "transpose", "t", "contiguous",
    "clone", "cat", "concat", "stack", "split", "chunk", "narrow", "select", "__getitem__",
    "add", "add_", "__add__", "__radd__", "__iadd__", "dropout", "dropout2d", "identity",
    "to", "float", "double", "type_as", "detach", "size", "dim", "numel", "__len__",
    "expand", "expand_as", "repeat", "pad",
})
# Arithmetic that is affine when one side is a constant (a buffer or a number) and a
# hidden product when both sides carry the input (a gate) or a learned parameter.
AFFINE_WITH_CONSTANT = frozenset({
    "sub", "sub_", "__sub__", "__rsub__", "__isub__", "mul", "mul_", "__mul__", "__rmul__",
    "__imul__", "div", "div_", "__truediv__", "__itruediv__", "neg", "__neg__",
})

_checked: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


class _Recorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, nn.Module]] = []
        self.leaf_depth = 0
        self.found: list[tuple[str, str]] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if self.leaf_depth == 0:
            self._judge(func, args, kwargs)
        return func(*args, **kwargs)

    def _judge(self, func: Any, args: tuple, kwargs: dict) -> None:
        try:
            name = resolve_name(func) or getattr(func, "__name__", repr(func))
        except Exception:
            name = getattr(func, "__name__", repr(func))
        short = name.rsplit(".", 1)[-1]
        if name.endswith("__get__") or short in PASS_CALLS:
            return  # attribute reads (x.shape) and operations relevance may cross
        if short in AFFINE_WITH_CONSTANT:
            carried = [a for a in (*args, *kwargs.values())
                       if isinstance(a, Tensor) and a.requires_grad]
            if len(carried) < 2:
                return
            name = f"{name} of two tensors that both carry the input or a parameter"
        where = self.stack[-1][0] if self.stack else ""
        self.found.append((name, where))


@contextmanager
def _module_stack(model: nn.Module, recorder: _Recorder) -> Iterator[None]:
    handles = []

    def enter(name: str, leaf: bool) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            recorder.stack.append((name, module))
            recorder.leaf_depth += leaf
        return hook

    def leave(leaf: bool) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            recorder.stack.pop()
            recorder.leaf_depth -= leaf
        return hook

    try:
        for name, module in model.named_modules():
            leaf = next(module.children(), None) is None
            handles.append(module.register_forward_pre_hook(enter(name, leaf)))
            handles.append(module.register_forward_hook(leave(leaf)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def hidden_operations(model: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """``(call, module)`` for every torch call of one forward pass that LRP would cross
    by the plain gradient although it is not piecewise linear; empty when there are none.
    ``example`` is one input batch (a single image is enough)."""
    recorder = _Recorder()
    modes = {module: module.training for module in model.modules()}
    model.eval()  # BatchNorm's statistics must not move for a probe
    probe = example.detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad(), _module_stack(model, recorder), recorder:
            model(probe)
    finally:
        for module, training in modes.items():
            module.training = training
    unique: dict[tuple[str, str], None] = {}
    for item in recorder.found:
        unique.setdefault(item, None)
    return list(unique)


def check_visible(model: nn.Module, example: Tensor) -> None:
    """Raise a ShortcutlabError naming each call LRP cannot see (once per model object)."""
    if _checked.get(model):
        return
    hidden = hidden_operations(model, example[:1])
    if hidden:
        lines = [f"{call} in {(where or type(model).__name__ + '.forward')!r}"
                 for call, where in hidden]
        raise ShortcutlabError(
            "lrp cannot see these operations of the model's forward, so relevance would "
            "cross them by the plain gradient: " + "; ".join(lines) + ". Make each "
            "nonlinearity a module of its own (nn.ReLU, nn.MaxPool2d, ...) or use a method "
            "that needs no rules (gradcam, ixg, ig, occlusion)")
    _checked[model] = True
