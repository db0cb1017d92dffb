"""What feature visualization maximizes: objectives as small composable data objects.

An objective reads the activations recorded by :func:`shortcutlab.hooks.capture` for a
group of images and returns one value per image (higher is better). Objectives add,
subtract and scale (``channel("conv3", 4) - 0.5 * channel("conv3", 7)``), and
:class:`Diversity` scores how different the images of one group are, so that optimizing
several images of the same unit together shows its different facets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from shortcutlab.errors import ShortcutlabError
from shortcutlab.hooks import OUTPUT


class Objective:
    """Base class: ``layers`` to record, ``__call__(acts) -> (B,)``, and arithmetic."""

    @property
    def layers(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def name(self) -> str:
        raise NotImplementedError

    def __call__(self, acts: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def __add__(self, other: Objective) -> Objective:
        return Sum(_terms(self) + _terms(other))

    def __sub__(self, other: Objective) -> Objective:
        return self + other * -1.0

    def __mul__(self, weight: float) -> Objective:
        return Sum(tuple((float(weight) * w, term) for w, term in _terms(self)))

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return self * -1.0


def _terms(objective: Objective) -> tuple[tuple[float, Objective], ...]:
    """Sums flatten, so ``a - b + c`` is one sum of three weighted terms."""
    return objective.terms if isinstance(objective, Sum) else ((1.0, objective),)


def layer_output(acts: dict[str, Tensor], layer: str) -> Tensor:
    if layer not in acts:
        raise ShortcutlabError(f"layer {layer!r} produced no activation; is it used in forward?")
    return acts[layer]


def _check_channel(output: Tensor, layer: str, channel: int) -> None:
    if not 0 <= channel < output.shape[1]:
        raise ShortcutlabError(
            f"layer {layer!r} has {output.shape[1]} channels; channel {channel} does not exist")


class Readout(Objective):
    """An objective that reads one unit of one layer: a channel's mean, or one coordinate.

    Readouts are what most visualizations optimize, so :func:`read_units` evaluates a
    whole batch of them with one indexing operation per layer instead of one slice per
    unit (whose backward pass would allocate a full-size gradient for every unit).
    """

    @property
    def source(self) -> str:
        """The layer read (:data:`OUTPUT` for the model's output)."""
        raise NotImplementedError

    @property
    def layers(self) -> tuple[str, ...]:
        return (self.source,)

    def locate(self, output: Tensor) -> tuple[int, int | None, int | None]:
        """(channel, y, x) read in ``output``; y and x are None for a channel mean."""
        raise NotImplementedError

    def __call__(self, acts: dict[str, Tensor]) -> Tensor:
        output = layer_output(acts, self.source)
        return read_units([self], output, output.shape[0])[0]


def read_units(readouts: Sequence[Readout], output: Tensor, facets: int) -> Tensor:
    """Values (U, F): readout ``u`` on rows ``u*F .. u*F+F-1`` of one layer's ``output``.

    All readouts must read the same layer and be of one kind (channel means, or points).
    """
    spots = [readout.locate(output) for readout in readouts]
    rows = torch.arange(len(readouts) * facets, device=output.device)
    channels = torch.tensor([c for c, _, _ in spots], device=output.device)
    channels = channels.repeat_interleave(facets)
    if spots[0][1] is None:
        picked = output[rows, channels]
        if picked.dim() > 1:
            picked = picked.flatten(1).mean(1)
    else:
        ys = torch.tensor([y for _, y, _ in spots], device=output.device).repeat_interleave(facets)
        xs = torch.tensor([x for _, _, x in spots], device=output.device).repeat_interleave(facets)
        picked = output[rows, channels, ys, xs]
    return picked.reshape(len(readouts), facets)


@dataclass(frozen=True)
class Channel(Readout):
    """The mean of one channel over all positions (a conv layer) or one unit (an FC layer)."""

    layer: str
    channel: int

    @property
    def source(self) -> str:
        return self.layer

    @property
    def name(self) -> str:
        return f"{self.layer}:{self.channel}"

    def locate(self, output: Tensor) -> tuple[int, int | None, int | None]:
        _check_channel(output, self.layer, self.channel)
        return self.channel, None, None


@dataclass(frozen=True)
class Neuron(Readout):
    """One channel at one spatial position; the centre when ``y``/``x`` are None."""

    layer: str
    channel: int
    y: int | None = None
    x: int | None = None

    @property
    def source(self) -> str:
        return self.layer

    @property
    def name(self) -> str:
        where = "centre" if self.y is None and self.x is None else f"{self.y},{self.x}"
        return f"{self.layer}:{self.channel}@{where}"

    def locate(self, output: Tensor) -> tuple[int, int | None, int | None]:
        _check_channel(output, self.layer, self.channel)
        if output.dim() != 4:
            raise ShortcutlabError(f"a neuron objective needs a conv layer; {self.layer!r} "
                                   "is fully connected (use a channel objective)")
        height, width = output.shape[2:]
        y = height // 2 if self.y is None else self.y
        x = width // 2 if self.x is None else self.x
        if not (0 <= y < height and 0 <= x < width):
            raise ShortcutlabError(f"position ({y}, {x}) is outside {self.layer!r}'s "
                                   f"{height}x{width} map")
        return self.channel, y, x


@dataclass(frozen=True)
class ClassLogit(Readout):
    """The model's logit for one class."""

    cls: int

    @property
    def source(self) -> str:
        return OUTPUT

    @property
    def name(self) -> str:
        return f"logit:{self.cls}"

    def locate(self, output: Tensor) -> tuple[int, int | None, int | None]:
        _check_channel(output, "logits", self.cls)
        return self.cls, None, None


@dataclass(frozen=True)
class Diversity(Objective):
    """Minus the mean similarity of each image to the others of its group (Lucid's term).

    Images are compared by the Gram matrix of ``layer`` (channel co-activations, which
    ignore where things are) for conv layers and by the activation vector for FC layers.
    A group of one image scores zero.
    """

    layer: str

    @property
    def layers(self) -> tuple[str, ...]:
        return (self.layer,)

    @property
    def name(self) -> str:
        return f"diversity({self.layer})"

    def __call__(self, acts: dict[str, Tensor]) -> Tensor:
        output = layer_output(acts, self.layer)
        count = output.shape[0]
        if count < 2:
            return output.new_zeros(count)
        if output.dim() == 4:
            flat = output.flatten(2)
            features = torch.bmm(flat, flat.transpose(1, 2)).flatten(1) / flat.shape[2]
        else:
            features = output.flatten(1)
        unit = torch.nn.functional.normalize(features, dim=1)
        similarity = unit @ unit.T
        off_diagonal = similarity.sum(1) - similarity.diagonal()
        return -off_diagonal / (count - 1)


@dataclass(frozen=True, eq=False)
class Direction(Objective):
    """The projection of a layer's activation on a direction of its activation space (an
    SAE decoder row, a difference of class or color means): per position for a conv
    layer, averaged over positions; the activation vector for an FC layer."""

    layer: str
    vector: Tensor
    label: str = "direction"

    def __post_init__(self) -> None:
        if self.vector.dim() != 1 or not bool(torch.isfinite(self.vector).all()):
            raise ShortcutlabError("a direction is one finite vector (d,)")

    @property
    def layers(self) -> tuple[str, ...]:
        return (self.layer,)

    @property
    def name(self) -> str:
        return f"{self.layer}:{self.label}"

    def __call__(self, acts: dict[str, Tensor]) -> Tensor:
        output = layer_output(acts, self.layer)
        vector = self.vector.to(output)
        width = output.shape[1]
        if width != vector.numel():
            raise ShortcutlabError(f"the direction has {vector.numel()} coordinates but "
                                   f"{self.layer!r} has {width} channels")
        if output.dim() == 4:
            return torch.einsum("nchw,c->n", output, vector) / (output.shape[2]
                                                                 * output.shape[3])
        return output.flatten(1) @ vector


@dataclass(frozen=True)
class Sum(Objective):
    """A weighted sum of objectives."""

    terms: tuple[tuple[float, Objective], ...]

    @property
    def layers(self) -> tuple[str, ...]:
        names: dict[str, None] = {}
        for _, term in self.terms:
            names.update(dict.fromkeys(term.layers))
        return tuple(names)

    @property
    def name(self) -> str:
        parts = []
        for weight, term in self.terms:
            sign = "-" if weight < 0 else "+"
            size = abs(weight)
            scaled = term.name if size == 1.0 else f"{size:g}*{term.name}"
            parts.append(f"{sign} {scaled}")
        text = " ".join(parts)
        return text[2:] if text.startswith("+ ") else text

    def __call__(self, acts: dict[str, Tensor]) -> Tensor:
        return sum(weight * term(acts) for weight, term in self.terms)


def primary_layer(objective: Objective) -> str:
    """The first layer an objective reads (where its diversity term is measured)."""
    return objective.layers[0]


def parse_objective(text: str) -> Objective:
    """``logit:3``, ``LAYER:CH``, ``LAYER:CH@Y,X``, joined by `` + `` / `` - ``.

    Used by the CLI's ``--objective``; e.g. ``features.conv3:5 - features.conv3:9``.
    """
    tokens = text.replace("+", " + ").replace(" - ", " -- ").split()
    total: Objective | None = None
    sign = 1.0
    for token in tokens:
        if token in ("+", "--"):
            sign = 1.0 if token == "+" else -1.0
            continue
        term = _parse_term(token)
        total = term * sign if total is None else total + term * sign
        sign = 1.0
    if total is None:
        raise ShortcutlabError(f"empty objective {text!r}")
    return total


def _parse_term(token: str) -> Objective:
    try:
        if token.startswith("logit:"):
            return ClassLogit(int(token.split(":", 1)[1]))
        layer, unit = token.rsplit(":", 1)
        if "@" in unit:
            channel, where = unit.split("@", 1)
            y, x = (int(v) for v in where.split(","))
            return Neuron(layer, int(channel), y, x)
        return Channel(layer, int(unit))
    except ValueError:
        raise ShortcutlabError(
            f"cannot read objective term {token!r}; write logit:C, LAYER:CH or LAYER:CH@Y,X"
        ) from None
