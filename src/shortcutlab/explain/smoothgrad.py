"""SmoothGrad (Smilkov et al. 2017): any attribution method averaged over noisy copies of
the input, which removes the high-frequency noise of raw gradients.

Why we write it instead of wrapping with Captum's ``NoiseTunnel``: it must work on our
own methods (LRP, Grad-CAM), which Captum does not know, and on the study's batches in
one pass; Captum stays the oracle (``tests/test_explain_smoothgrad.py``: the same maps
without noise, the same expectation with it) and the reference of
``benchmarks/bench_explain.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain._common import check_input

DEFAULT_SAMPLES = 16
DEFAULT_NOISE = 0.15  # standard deviation, as a share of the pixel range [0, 1]


def smooth_grad(model: nn.Module, x: Tensor, target: Tensor,
                attribution: Callable[[nn.Module, Tensor, Tensor], Tensor], *,
                samples: int = DEFAULT_SAMPLES, noise: float = DEFAULT_NOISE,
                seed: int = 0, chunk: int = 1024) -> Tensor:
    """The mean of ``attribution(model, x + n, target)`` over ``samples`` draws of
    Gaussian noise ``n`` with standard deviation ``noise`` (no clamping, as in the paper).

    All draws of a batch go through ``attribution`` together, up to ``chunk`` images at a
    time. ``seed`` fixes the noise (the same images and seed give the same maps)."""
    check_input(x)
    if samples < 1:
        raise ShortcutlabError(f"SmoothGrad needs at least one sample, got {samples}")
    if noise < 0:
        raise ShortcutlabError(f"the noise level must be >= 0, got {noise}")
    n = x.shape[0]
    target = torch.as_tensor(target, device=x.device, dtype=torch.long).expand(n)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    draws = torch.randn((samples, *x.shape), generator=generator, device=x.device,
                        dtype=x.dtype)
    noisy = (x.detach().unsqueeze(0) + noise * draws).reshape(samples * n, *x.shape[1:])
    targets = target.repeat(samples)
    step = max(1, chunk // n) * n  # whole copies of the batch per call
    total = None
    for start in range(0, noisy.shape[0], step):
        part = attribution(model, noisy[start:start + step], targets[start:start + step])
        part = part.detach().reshape(-1, n, *part.shape[1:]).sum(dim=0)
        total = part if total is None else total + part
    return total / samples
