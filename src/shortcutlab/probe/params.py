"""How the optimized images are parametrized: plain pixels, or a decorrelated Fourier basis.

Optimizing raw pixels lets high frequencies win (the gradient of a CNN is noisiest there)
and gives images of adversarial noise. The Fourier parametrization of Lucid (Olah et al.,
"Feature Visualization", Distill 2017) optimizes spectrum coefficients scaled by 1/f, so
each frequency moves at the pace natural images have, and mixes color channels through
the square root of the data's color covariance, so the optimizer moves along decorrelated
color directions. We write both here (a few lines each) instead of depending on
lucent, which pins torchvision.

A parametrization is an ``nn.Module`` whose ``forward()`` returns images (B, 3, H, W) in
[0, 1], with the optimized tensor as its only parameter.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from shortcutlab.errors import ShortcutlabError

# Lucid's ImageNet color correlation square root, used when no data is given.
IMAGENET_COLOR_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
PARAMETRIZATIONS = ("fourier", "pixel")


def color_correlation_sqrt(images: np.ndarray, max_pixels: int = 200_000,
                           seed: int = 0) -> np.ndarray:
    """The (3, 3) square root ``U sqrt(S)`` of the RGB covariance of uint8 images (N,H,W,3)."""
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    if len(pixels) > max_pixels:
        rng = np.random.default_rng(seed)
        pixels = pixels[rng.choice(len(pixels), max_pixels, replace=False)]
    covariance = np.cov(pixels, rowvar=False)
    u, s, _ = np.linalg.svd(covariance)
    return (u * np.sqrt(np.maximum(s, 0.0))).astype(np.float32)


class PixelImage(nn.Module):
    """Pixels through a sigmoid, so the optimizer works on an unbounded tensor."""

    def __init__(self, batch: int, size: int = 28, sd: float = 0.01,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.randn(batch, 3, size, size, generator=generator) * sd)

    def forward(self) -> Tensor:
        return torch.sigmoid(self.logits)


class FourierImage(nn.Module):
    """Spectrum coefficients scaled by ``1 / f**decay``, decorrelated color, then a sigmoid."""

    def __init__(self, batch: int, size: int = 28, sd: float = 0.01, decay: float = 1.0,
                 color_sqrt: np.ndarray | Tensor | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        freq_y = torch.fft.fftfreq(size)[:, None]
        freq_x = torch.fft.rfftfreq(size)[None, :]
        freqs = torch.sqrt(freq_y**2 + freq_x**2)
        scale = 1.0 / torch.clamp(freqs, min=1.0 / size) ** decay
        self.register_buffer("scale", scale)
        shape = (batch, 3, size, size // 2 + 1, 2)
        self.spectrum = nn.Parameter(torch.randn(shape, generator=generator) * sd)
        matrix = torch.as_tensor(IMAGENET_COLOR_SQRT if color_sqrt is None else color_sqrt,
                                 dtype=torch.float32)
        if matrix.shape != (3, 3):
            raise ShortcutlabError(f"color_sqrt must be 3x3, got {tuple(matrix.shape)}")
        # Lucid normalizes by the largest column norm so no direction is amplified.
        self.register_buffer("color", matrix / matrix.norm(dim=0).max())
        self.size = size

    def forward(self) -> Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0
        image = torch.einsum("bchw,dc->bdhw", image, self.color)
        return torch.sigmoid(image)


def create_image(name: str, batch: int, size: int = 28, generator: torch.Generator | None = None,
                 color_sqrt: np.ndarray | None = None, decay: float = 1.0) -> nn.Module:
    """A parametrization by name: ``fourier`` (default) or ``pixel``."""
    if name == "fourier":
        return FourierImage(batch, size, decay=decay, color_sqrt=color_sqrt, generator=generator)
    if name == "pixel":
        return PixelImage(batch, size, generator=generator)
    raise ShortcutlabError(
        f"unknown parametrization {name!r}; choose {', '.join(PARAMETRIZATIONS)}")
