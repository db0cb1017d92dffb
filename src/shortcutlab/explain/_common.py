"""What every attribution method shares: targets, layers, inputs and hooks that clean up.

Hooks exist only inside the context managers below; they are removed in ``finally``, so
no hook is left on a model after any call, including one that raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.models import get_layer, last_conv

Target = int | Tensor | Callable[[Tensor], Tensor] | None
Layer = nn.Module | str | None


def check_input(x: Tensor) -> None:
    """Attribution methods are batch-native: they take (N, C, H, W) or (N, D) tensors."""
    if not isinstance(x, Tensor):
        raise ShortcutlabError(f"expected a tensor of images, got {type(x).__name__}")
    if x.dim() < 2:
        raise ShortcutlabError(
            f"expected a batch (N, ...) of inputs, got shape {tuple(x.shape)}; "
            "add a batch dimension with x.unsqueeze(0)"
        )
    if not x.is_floating_point():
        raise ShortcutlabError(
            f"expected float inputs, got {x.dtype}; convert uint8 images with "
            "shortcutlab.data.images_to_tensor"
        )


def resolve_target(target: Target, logits: Tensor) -> Tensor:
    """Class indices (N,) from an int, a tensor of indices, None (the predicted class), or
    a function of the (detached) logits, so that a caller choosing the class from the
    prediction needs no forward pass of its own."""
    batch, classes = logits.shape[0], logits.shape[-1]
    if target is None:
        return logits.detach().argmax(dim=-1)
    if callable(target) and not isinstance(target, Tensor):
        target = target(logits.detach())
    if isinstance(target, bool) or not isinstance(target, int | Tensor):
        raise ShortcutlabError(
            f"target must be an int, a tensor of class indices or None, got {type(target).__name__}"
        )
    if isinstance(target, int):
        indices = torch.full((batch,), target, dtype=torch.long, device=logits.device)
    else:
        if target.is_floating_point() or target.is_complex():
            raise ShortcutlabError(f"target must hold integer class indices, got {target.dtype}")
        indices = target.to(device=logits.device, dtype=torch.long).reshape(-1)
        if indices.numel() == 1:
            indices = indices.expand(batch)
        elif indices.numel() != batch:
            raise ShortcutlabError(
                f"target has {indices.numel()} entries but the batch has {batch} inputs"
            )
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= classes):
        raise ShortcutlabError(
            f"target classes must lie in [0, {classes - 1}], got {indices.min()}..{indices.max()}"
        )
    return indices


def target_score(logits: Tensor, target: Tensor) -> Tensor:
    """The sum over the batch of each input's target logit (samples are independent)."""
    return logits.gather(1, target[:, None]).sum()


def resolve_layer(model: nn.Module, layer: Layer) -> tuple[str, nn.Module]:
    """A layer given as a module or a dotted name; None means the model's last Conv2d."""
    if layer is None:
        return last_conv(model)
    if isinstance(layer, str):
        return layer, get_layer(model, layer)
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise ShortcutlabError(f"{type(layer).__name__} module passed as layer is not in the model")
    raise ShortcutlabError(f"layer must be a module, a layer name or None, got {type(layer)!r}")


@contextlib.contextmanager
def forward_hooks(
    hooks: list[tuple[nn.Module, Callable[..., Any]]],
    pre_hooks: list[tuple[nn.Module, Callable[..., Any]]] = (),
) -> Iterator[None]:
    """Register forward (pre-)hooks for the duration of the block, and always remove them."""
    handles = []
    try:
        for module, hook in pre_hooks:
            handles.append(module.register_forward_pre_hook(hook))
        for module, hook in hooks:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def grad_enabled_restored() -> Iterator[None]:
    """Restore the caller's grad mode on exit, whatever hooks set it to in between."""
    previous = torch.is_grad_enabled()
    try:
        yield
    finally:
        torch.set_grad_enabled(previous)


def as_grad_input(x: Tensor) -> Tensor:
    """``x`` itself when it already carries a graph (so results stay differentiable in it),
    else a leaf that requires grad."""
    return x if x.requires_grad else x.detach().requires_grad_(True)


def to_map(attribution: Tensor) -> Tensor:
    """(N, C, H, W) attributions summed over channels to (N, H, W); (N, H, W) kept as is."""
    if attribution.dim() == 4:
        return attribution.sum(dim=1)
    if attribution.dim() == 3:
        return attribution
    raise ShortcutlabError(
        f"expected heatmaps (N, H, W) or attributions (N, C, H, W), got {tuple(attribution.shape)}"
    )
