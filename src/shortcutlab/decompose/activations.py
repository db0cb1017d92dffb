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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from shortcutlab.data import images_to_tensor
from shortcutlab.decompose.sae import SparseAutoencoder
from shortcutlab.errors import ShortcutlabError
from shortcutlab.hooks import capture, edit_output
from shortcutlab.models import batched_forward

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


LayerEdit = Callable[[Tensor], Tensor]


def reconstruction_edit(sae: SparseAutoencoder, mode: str) -> LayerEdit:
    """The layer's output -> its SAE reconstruction."""
    def edit(output: Tensor) -> Tensor:
        vectors = to_vectors(output, mode)
        if mode == "pooled":
            return output + from_vectors(sae(vectors)[0] - vectors, output, mode)
        return from_vectors(sae(vectors)[0], output, mode)

    return edit


@contextlib.contextmanager
def reconstructed(model: nn.Module, sae: SparseAutoencoder, layer: str,
                  mode: str) -> Iterator[None]:
    """Run the model with ``layer``'s output replaced by its SAE reconstruction."""
    with edit_output(model, layer, reconstruction_edit(sae, mode)):
        yield


@dataclass(frozen=True)
class FeatureEdit:
    """Set feature ``f`` to ``scale * f + add``: scale 0 ablates, scale k or add > 0 boosts."""

    feature: int
    scale: float = 1.0
    add: float = 0.0


def feature_edit(sae: SparseAutoencoder, mode: str,
                 edits: Sequence[FeatureEdit]) -> LayerEdit | None:
    """The layer's output -> the same with chosen SAE features scaled or shifted (None
    when there is nothing to edit)."""
    if not edits:
        return None
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

    return edit


@contextlib.contextmanager
def edited(model: nn.Module, sae: SparseAutoencoder, layer: str, mode: str,
           edits: Sequence[FeatureEdit]) -> Iterator[None]:
    """Run the model with chosen SAE features of ``layer`` scaled or shifted."""
    edit = feature_edit(sae, mode, edits)
    if edit is None:
        yield
        return
    with edit_output(model, layer, edit):
        yield


def _argmax(model: Callable[[Tensor], Tensor], batch: Tensor) -> Tensor:
    return model(batch).argmax(1)


class _SplitRefused(Exception):
    """The cut model does not reproduce the model on real images: run it whole."""


class EditedPredictions:
    """Predictions of a model whose ``layer`` output goes through an edit, for many edits
    of the same images.

    The layers before ``layer`` compute the same activations for every edit, so where the
    model can be cut at the layer (:func:`shortcutlab.models.split.split_at_layer`) they
    run once per image set (``key``) and are kept on the CPU; each edit then runs only the
    rest. Otherwise the whole model runs with the edit as a hook. Both give the same
    predictions (tested).
    """

    def __init__(self, model: nn.Module, layer: str, device: torch.device | str = "cpu",
                 batch_size: int = 1000) -> None:
        from shortcutlab.models.split import split_at_layer

        self.model, self.layer = model.eval(), layer
        self.device, self.batch_size = device, batch_size
        self.split = split_at_layer(model, layer)
        self._checked = False
        self._activations: dict[str, Tensor] = {}

    @torch.no_grad()
    def _layer_output(self, key: str, images: np.ndarray) -> Tensor:
        if key not in self._activations:
            if not self._checked:
                from shortcutlab.models.split import check_split

                self._checked = True
                if not check_split(self.model, self.split,
                                   next(_batches(images[:4], 4, self.device))):
                    self.split = None
                    raise _SplitRefused
            self._activations[key] = batched_forward(
                self.split.before, images, self.batch_size, device=self.device, to_cpu=True)
        return self._activations[key]

    def forget(self, key: str) -> None:
        """Drop the layer outputs kept for image set ``key`` (a whole split's can be a
        quarter of a gigabyte): call it once no more edits of that set will run."""
        self._activations.pop(key, None)

    @torch.no_grad()
    def predict(self, images: np.ndarray, edit: LayerEdit | None = None,
                key: str | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """Predicted classes of ``images[rows]`` (all when ``rows`` is None) under ``edit``;
        ``key`` names the image set, so that its activations are computed once."""
        if self.split is not None and key is not None:
            try:
                return self._predict_split(images, edit, key, rows)
            except _SplitRefused:
                pass
        chosen = images if rows is None else images[rows]
        context = (contextlib.nullcontext() if edit is None
                   else edit_output(self.model, self.layer, edit))
        with context:
            return batched_forward(self.model, chosen, self.batch_size, device=self.device,
                                   fn=_argmax, to_cpu=True).numpy()

    def _predict_split(self, images: np.ndarray, edit: LayerEdit | None, key: str,
                       rows: np.ndarray | None) -> np.ndarray:
        outputs = self._layer_output(key, images)
        if rows is not None:
            outputs = outputs[torch.as_tensor(rows)]
        def rest(activations: Tensor) -> Tensor:
            return self.split.after(edit(activations) if edit else activations)

        return batched_forward(rest, outputs, self.batch_size, device=self.device,
                               fn=_argmax, to_cpu=True).numpy()


@torch.no_grad()
def fidelity(model: nn.Module, sae: SparseAutoencoder, layer: str, mode: str,
             images: np.ndarray | Tensor, labels: np.ndarray | Tensor, batch_size: int = 500,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """How much of the model's cross-entropy the SAE keeps when spliced in, normalized as
    SAELens' "CE loss score": ``(CE_zero - CE_spliced) / (CE_zero - CE_clean)`` with
    ``CE_zero`` the loss with ``layer``'s output set to zero (1: the SAE loses nothing;
    0: as bad as deleting the layer)."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    totals = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    edits = {"spliced": reconstruction_edit(sae, mode), "zero": torch.zeros_like}
    model = model.eval()
    start = 0
    for batch in _batches(images, batch_size, device):
        target = labels[start:start + len(batch)].to(batch.device)
        start += len(batch)
        totals["clean"] += float(nn.functional.cross_entropy(model(batch), target,
                                                             reduction="sum"))
        for name, edit in edits.items():
            with edit_output(model, layer, edit):
                totals[name] += float(nn.functional.cross_entropy(model(batch), target,
                                                                  reduction="sum"))
    losses = {f"ce_{name}": value / max(start, 1) for name, value in totals.items()}
    gap = losses["ce_zero"] - losses["ce_clean"]
    score = (losses["ce_zero"] - losses["ce_spliced"]) / gap if abs(gap) > 1e-12 else None
    return {**losses, "score": score}
