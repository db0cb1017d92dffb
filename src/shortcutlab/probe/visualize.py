"""Feature visualization: optimize images so that chosen units fire, many units at once.

Every unit gets ``facets`` images of its own; all images of a batch of units go through
the network together, and the loss is the sum of the units' objectives. Because Adam
scales each parameter's step by its own gradient history, a batch of units is optimized
exactly as if each unit had been optimized alone, only many times faster
(``benchmarks/bench_probe.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.hooks import capture, forward_until
from shortcutlab.probe.objectives import (
    Diversity,
    Neuron,
    Objective,
    Readout,
    layer_output,
    primary_layer,
    read_units,
)
from shortcutlab.probe.params import create_image
from shortcutlab.probe.transforms import (
    DEFAULT_TRANSFORMS,
    apply_transforms,
    l2_penalty,
    total_variation,
)
from shortcutlab.progress import progress


@dataclass(frozen=True)
class VisConfig:
    """How to optimize: parametrization, schedule, facets, transformations and regularizers."""

    param: str = "fourier"
    steps: int = 256
    lr: float = 0.05
    facets: int = 1
    diversity: float = 0.0  # weight of the diversity term (used when facets > 1)
    tv: float = 0.0
    l2: float = 0.0
    decay: float = 1.0  # the 1/f**decay scaling of the Fourier basis
    transforms: tuple = DEFAULT_TRANSFORMS
    batch_units: int = 64  # units optimized together
    seed: int = 0

    def validate(self) -> None:
        if self.steps < 1 or self.facets < 1 or self.batch_units < 1:
            raise ShortcutlabError("steps, facets and batch_units must be at least 1")
        if self.lr <= 0:
            raise ShortcutlabError(f"the learning rate must be positive, got {self.lr}")


@dataclass
class Visualization:
    """Images (U, F, 3, H, W) in [0, 1], final objective values (U, F), history (steps, U)."""

    names: list[str]
    images: Tensor
    values: Tensor
    history: Tensor
    config: VisConfig = field(default_factory=VisConfig)


def visualize(model: nn.Module, objectives: Sequence[Objective], config: VisConfig = VisConfig(),
              color_sqrt: np.ndarray | None = None, device: torch.device | str = "cpu",
              size: int = 28, show_progress: bool = True) -> Visualization:
    """Optimize ``config.facets`` images per objective, ``config.batch_units`` units at a time."""
    config.validate()
    if not objectives:
        raise ShortcutlabError("nothing to visualize: give at least one objective")
    model = _fast_copy(model.eval(), torch.device(device))
    # Units of the same layers share chunks, so a chunk of early-layer units stops its
    # forward pass early instead of paying for the deepest unit of a mixed chunk.
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, objective in enumerate(objectives):
        groups.setdefault(objective.layers, []).append(index)
    chunks = [members[start:start + config.batch_units] for members in groups.values()
              for start in range(0, len(members), config.batch_units)]
    order = [index for chunk in chunks for index in chunk]
    images, values, history = [], [], []
    quiet = {} if show_progress else {"disable": True}
    bar = progress(total=config.steps * len(chunks), desc="visualize", unit="step", **quiet)
    try:
        for number, chunk in enumerate(chunks):
            result = _optimize_chunk(model, [objectives[i] for i in chunk], config, color_sqrt,
                                     device, size, config.seed * 1_000_003 + number, bar)
            images.append(result[0])
            values.append(result[1])
            history.append(result[2])
    finally:
        bar.close()
    restore = torch.argsort(torch.tensor(order))
    return Visualization(
        names=[objective.name for objective in objectives],
        images=torch.cat(images)[restore],
        values=torch.cat(values)[restore],
        history=torch.cat(history, dim=1)[:, restore],
        config=config,
    )


def _fast_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """On CPU, a channels-last copy of a conv net: about 25% faster batched convolutions
    with oneDNN. A copy, so the caller's model is left as it was."""
    if device.type != "cpu" or not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return model
    clone = copy.deepcopy(model)
    for module in clone.modules():  # hooks registered on the original stay behind
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    return clone.to(memory_format=torch.channels_last)


def evaluate_objectives(objectives: Sequence[Objective], acts: dict[str, Tensor],
                        facets: int) -> Tensor:
    """Values (U, F): objective ``u`` read on images ``u*F .. u*F+F-1`` of the batch.

    Readouts of the same layer and kind are evaluated together (:func:`read_units`);
    other objectives see only their own rows.
    """
    values: list[Tensor | None] = [None] * len(objectives)
    groups: dict[tuple[str, bool], list[int]] = {}
    for unit, objective in enumerate(objectives):
        if isinstance(objective, Readout):
            point = isinstance(objective, Neuron)
            groups.setdefault((objective.source, point), []).append(unit)
            continue
        window = slice(unit * facets, (unit + 1) * facets)
        values[unit] = objective({name: output[window] for name, output in acts.items()})
    for (layer, _), units in groups.items():
        output = layer_output(acts, layer)
        rows = torch.cat([torch.arange(u * facets, (u + 1) * facets) for u in units])
        if len(units) != len(objectives):
            output = output[rows.to(output.device)]
        read = read_units([objectives[u] for u in units], output, facets)
        for position, unit in enumerate(units):
            values[unit] = read[position]
    return torch.stack(values)


def _optimize_chunk(model: nn.Module, objectives: list[Objective], config: VisConfig,
                    color_sqrt: np.ndarray | None, device: torch.device | str, size: int,
                    seed: int, bar) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    facets = config.facets
    image = create_image(config.param, len(objectives) * facets, size, generator=generator,
                         color_sqrt=color_sqrt, decay=config.decay).to(device)
    diversity = [Diversity(primary_layer(o)) for o in objectives]
    use_diversity = facets > 1 and config.diversity > 0
    layers = [layer for o in objectives for layer in o.layers]
    if use_diversity:
        layers += [d.layer for d in diversity]
    params = list(image.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr)
    history = torch.empty(config.steps, len(objectives))
    with capture(model, layers, stop_early=True) as acts:
        for step in range(config.steps):
            pixels = image()
            forward_until(model, apply_transforms(pixels, config.transforms, generator))
            values = evaluate_objectives(objectives, acts, facets)
            loss = -values.sum()
            if use_diversity:
                loss = loss - config.diversity * evaluate_objectives(diversity, acts, facets).sum()
            if config.tv:
                loss = loss + config.tv * total_variation(pixels).sum()
            if config.l2:
                loss = loss + config.l2 * l2_penalty(pixels).sum()
            optimizer.zero_grad(set_to_none=True)
            # Gradients for the image only: the model's own .grad stays untouched.
            grads = torch.autograd.grad(loss, params)
            for param, grad in zip(params, grads, strict=True):
                param.grad = grad
            optimizer.step()
            history[step] = values.detach().mean(1).cpu()
            bar.update(1)
        with torch.no_grad():
            final = image()
            forward_until(model, final)
            final_values = evaluate_objectives(objectives, acts, facets)
    shape = (len(objectives), facets, *final.shape[1:])
    return final.detach().cpu().reshape(shape), final_values.cpu(), history
