"""One batched forward pass: run a model over many images in chunks and join the outputs.

Every stage needs the outputs of a model on more images than fit one forward; the loops
that did this by hand differed only in what they did with each chunk's output. This is
that loop once: chunks of ``batch_size`` in order, each moved to the model's device,
without gradients unless asked, outputs concatenated in order. A forward's float outputs
depend on the chunking only up to floating point, so a caller that must reproduce earlier
numbers keeps its chunk size.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from shortcutlab.progress import progress

Output = Tensor | tuple[Tensor, ...]


def batched_forward(model: Callable[..., Any], images: Tensor | np.ndarray,
                    batch_size: int = 1000, *, device: torch.device | str | None = None,
                    fn: Callable[[Any, Tensor], Output] | None = None,
                    desc: str | None = None, to_cpu: bool = False,
                    grad: bool = False) -> Output:
    """``fn(model, chunk)`` (default ``model(chunk)``) over ``images`` in chunks, concatenated.

    ``images`` is a float tensor (N, ...) or uint8 NHWC numpy images, which each chunk turns
    into float NCHW in [0, 1] with :func:`shortcutlab.data.images_to_tensor`. Each chunk is
    moved to ``device``; ``None`` means the device of the model's parameters, or leaving the
    chunk where it is when ``model`` is a plain callable without any. ``fn`` computes what
    to keep of a chunk (logits, ``argmax``, softmax, ...), so that a reduction happens on the
    device before the chunks are kept; it may return a tuple of tensors, which are then
    concatenated field by field. ``to_cpu`` moves each chunk's result to the CPU as soon as
    it is computed (bounding device memory); otherwise results stay where ``fn`` left them.
    ``desc`` shows a progress bar over the chunks. Everything runs under
    :func:`torch.no_grad` unless ``grad``; the model's train/eval mode is left as it is.

    With no images nothing is run (an empty batch would still update batch-norm statistics
    of a model in training mode) and the result is ``torch.empty(0, 0)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if device is None:
        device = _device_of(model)
    total = len(images)
    out_device = torch.device("cpu") if to_cpu or device is None else device
    if total == 0:
        return torch.empty(0, 0, device=out_device)
    starts = range(0, total, batch_size)
    if desc is not None:
        starts = progress(starts, desc=desc, unit="batch")
    parts: list[Output] = []
    with contextlib.nullcontext() if grad else torch.no_grad():
        for start in starts:
            chunk = _to_tensor(images[start:start + batch_size], device)
            result = model(chunk) if fn is None else fn(model, chunk)
            if to_cpu:
                result = _apply(result, lambda t: t.cpu())
            parts.append(result)
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(column) for column in zip(*parts, strict=True))
    return torch.cat(parts)


def _device_of(model: Any) -> torch.device | None:
    if isinstance(model, nn.Module):
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            return tensor.device
    return None


def _to_tensor(chunk: Tensor | np.ndarray, device: torch.device | str | None) -> Tensor:
    if isinstance(chunk, np.ndarray):
        from shortcutlab.data import images_to_tensor

        return images_to_tensor(chunk, "cpu" if device is None else device)
    return chunk if device is None else chunk.to(device)


def _apply(result: Output, move: Callable[[Tensor], Tensor]) -> Output:
    if isinstance(result, tuple):
        return tuple(move(t) for t in result)
    return move(result)
