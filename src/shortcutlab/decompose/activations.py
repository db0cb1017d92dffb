"""A layer's outputs as SAE inputs, and hooks that put SAE edits back into the model.

Modes: ``flat`` (an FC layer: one vector per image), ``pooled`` (a conv layer averaged
over positions: one vector per image) and ``position`` (a conv layer: one vector per
image and position). In ``pooled`` mode an edit of the pooled vector is added to every
position, since the map itself cannot be rebuilt from its average.

Edits keep the SAE's reconstruction error: the layer's output becomes
``output + decode(edited codes) - decode(codes)``, so scaling every feature by 1 gives back
the model's own output exactly, and an edit changes only what the edited features carry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from shortcutlab.data import images_to_tensor
from shortcutlab.decompose.sae import SparseAutoencoder
from shortcutlab.errors import ShortcutlabError
from shortcutlab.hooks import capture, edit_output

MODES = ("auto", "flat", "pooled", "position")


@torch.no_grad()
def resolve_mode(model: nn.Module, layer: str, mode: str = "auto") -> str:
    """``auto`` becomes ``position`` for conv layers and ``flat`` for FC layers."""
    if mode not in MODES:
        raise ShortcutlabError(f"unknown mode {mode!r}; choose {', '.join(MODES)}")
    probe = torch.zeros(1, 3, 28, 28, device=next(model.parameters()).device)
    with capture(model, [layer]) as acts:
        model(probe)
    dims = acts[layer].dim()
    if mode == "auto":
        return "position" if dims == 4 else "flat"
    if mode in ("pooled", "position") and dims != 4:
        raise ShortcutlabError(f"mode {mode!r} needs a conv layer; {layer!r} is fully "
                               "connected (use --mode flat)")
    if mode == "flat" and dims != 2:
        raise ShortcutlabError(f"{layer!r} is a conv layer; use --mode pooled or position")
    return mode


def to_vectors(output: Tensor, mode: str) -> Tensor:
    """Layer output -> SAE inputs (M, d)."""
    if mode == "flat":
        return output.flatten(1)
    if mode == "pooled":
        return output.mean(dim=(2, 3))
    return output.permute(0, 2, 3, 1).reshape(-1, output.shape[1])


def from_vectors(vectors: Tensor, like: Tensor, mode: str) -> Tensor:
    """SAE-space vectors -> an update shaped like the layer output (pooled: broadcast)."""
    if mode == "flat":
        return vectors.reshape(like.shape)
    if mode == "pooled":
        return vectors[:, :, None, None].expand_as(like)
    batch, channels, height, width = like.shape
    return vectors.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


def _batches(images: np.ndarray | Tensor, batch_size: int, device) -> Iterator[Tensor]:
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        if isinstance(batch, np.ndarray):
            batch = images_to_tensor(batch)
        yield batch.to(device)


@torch.no_grad()
def collect_activations(model: nn.Module, layer: str, images: np.ndarray | Tensor, mode: str,
                        batch_size: int = 500, device: torch.device | str = "cpu") -> Tensor:
    """SAE inputs (M, d) for ``images`` (uint8 NHWC or float NCHW)."""
    chunks = []
    with capture(model.eval(), [layer]) as acts:
        for batch in _batches(images, batch_size, device):
            model(batch)
            chunks.append(to_vectors(acts[layer], mode).cpu())
    return torch.cat(chunks)


@torch.no_grad()
def feature_activations(model: nn.Module, sae: SparseAutoencoder, layer: str,
                        images: np.ndarray | Tensor, mode: str, batch_size: int = 500,
                        device: torch.device | str = "cpu") -> np.ndarray:
    """Per-image feature activations (N, features); per-position codes averaged over positions."""
    chunks = []
    with capture(model.eval(), [layer]) as acts:
        for batch in _batches(images, batch_size, device):
            model(batch)
            codes = sae.encode(to_vectors(acts[layer], mode))
            chunks.append(codes.reshape(len(batch), -1, codes.shape[1]).mean(1).cpu())
    return torch.cat(chunks).numpy()


@contextlib.contextmanager
def reconstructed(model: nn.Module, sae: SparseAutoencoder, layer: str,
                  mode: str) -> Iterator[None]:
    """Run the model with ``layer``'s output replaced by its SAE reconstruction."""
    def edit(output: Tensor) -> Tensor:
        vectors = to_vectors(output, mode)
        if mode == "pooled":
            return output + from_vectors(sae(vectors)[0] - vectors, output, mode)
        return from_vectors(sae(vectors)[0], output, mode)

    with edit_output(model, layer, edit):
        yield


@dataclass(frozen=True)
class FeatureEdit:
    """Set feature ``f`` to ``scale * f + add``: scale 0 ablates, scale k or add > 0 boosts."""

    feature: int
    scale: float = 1.0
    add: float = 0.0


@contextlib.contextmanager
def edited(model: nn.Module, sae: SparseAutoencoder, layer: str, mode: str,
           edits: Sequence[FeatureEdit]) -> Iterator[None]:
    """Run the model with chosen SAE features of ``layer`` scaled or shifted."""
    if not edits:
        yield
        return
    for item in edits:
        if not 0 <= item.feature < sae.d_hidden:
            raise ShortcutlabError(f"the SAE has {sae.d_hidden} features; "
                                   f"feature {item.feature} does not exist")
    device = sae.W_dec.device
    index = torch.tensor([item.feature for item in edits], device=device)
    scale = torch.tensor([item.scale for item in edits], device=device)
    add = torch.tensor([item.add for item in edits], device=device)

    def edit(output: Tensor) -> Tensor:
        codes = sae.encode_some(to_vectors(output, mode), index)
        change = codes * (scale - 1.0) + add
        delta = (change @ sae.W_dec[index]) * sae.scale
        return output + from_vectors(delta, output, mode)

    with edit_output(model, layer, edit):
        yield
