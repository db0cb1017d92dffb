"""Occlusion (Zeiler and Fergus 2014): slide a gray patch over the image and record how
much the target's score drops. A perturbation baseline that needs no gradients, so it
cannot be fooled by a model whose gradients lie.

Each pixel's attribution is the mean drop over the windows that cover it, the convention
of Captum's ``Occlusion``. Why we write it instead of calling Captum: every window of a
batch of images goes through the model in a few large batches instead of one forward
pass per window position; Captum stays the oracle (``tests/test_explain_occlusion.py``:
equal maps) and the reference of ``benchmarks/bench_explain.py``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain._common import check_input

DEFAULT_WINDOW = 4
DEFAULT_STRIDE = 2


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window positions; the last one may hang over the edge (and is cut there) so that
    every pixel is covered, as in Captum."""
    return [index * stride for index in range(math.ceil((size - window) / stride) + 1)]


@torch.no_grad()
def occlusion(model: nn.Module, x: Tensor, target: Tensor, *, window: int = DEFAULT_WINDOW,
              stride: int = DEFAULT_STRIDE, baseline: float = 0.0,
              chunk: int = 2048) -> Tensor:
    """(N, H, W) occlusion maps: per pixel, the mean of ``score(x) - score(x occluded)``
    over the ``window`` x ``window`` patches (all channels set to ``baseline``, moved by
    ``stride``, the last ones cut at the edge) that cover it; the score is the target's
    logit. ``chunk`` bounds the occluded images per forward pass."""
    check_input(x)
    n, _, h, w = x.shape
    if not 1 <= window <= min(h, w):
        raise ShortcutlabError(f"the occlusion window must be in 1..{min(h, w)}, got {window}")
    if stride < 1:
        raise ShortcutlabError(f"the occlusion stride must be positive, got {stride}")
    target = torch.as_tensor(target, device=x.device, dtype=torch.long).expand(n)
    x = x.detach()
    clean = model(x).gather(1, target[:, None]).squeeze(1)
    positions = [(top, left) for top in _starts(h, window, stride)
                 for left in _starts(w, window, stride)]
    total = torch.zeros(n, h, w, dtype=x.dtype, device=x.device)
    count = torch.zeros(h, w, dtype=x.dtype, device=x.device)
    per_call = max(1, chunk // n)
    for first in range(0, len(positions), per_call):
        group = positions[first:first + per_call]
        occluded = x.unsqueeze(0).repeat(len(group), 1, 1, 1, 1)
        for index, (top, left) in enumerate(group):
            occluded[index, :, :, top:top + window, left:left + window] = baseline
        scores = model(occluded.reshape(-1, *x.shape[1:])).reshape(len(group), n, -1)
        drops = clean.unsqueeze(0) - scores.gather(
            2, target.view(1, n, 1).expand(len(group), n, 1)).squeeze(2)
        for index, (top, left) in enumerate(group):
            total[:, top:top + window, left:left + window] += drops[index].view(n, 1, 1)
            count[top:top + window, left:left + window] += 1
    return total / count

