"""Layer-wise relevance propagation (LRP) whose heatmaps are differentiable.

Why we write LRP ourselves: the TEA intervention trains a model on its own LRP heatmaps,
so it needs the gradient of a heatmap with respect to the model's parameters. zennit, the
reference LRP library, builds its rules from ``param.data`` and merges BatchNorm by
overwriting ``.data``, so those gradients are missing or wrong. zennit stays our test
oracle (``tests/test_explain_lrp.py`` checks that both give the same heatmaps).

How: the "gradient trick". Relevance at any tensor ``t`` is kept as ``R_t = t * g_t`` and
only ``g`` travels backward, through ordinary autograd. For a ReLU network this makes

* ReLU, max-pooling (winner takes all), flattening, dropout and residual additions
  (relevance split in proportion to the contributions) plain gradients: no rule (the fast
  path below hooks ReLUs and max-pools only to make them cheaper to differentiate);
* every affine layer ``z = W a + b`` (BatchNorm that follows it is merged in) a node whose
  backward scales ``g`` by ``z / stab(z_rule)`` before the layer's own backward, where
  ``z_rule`` is the rule's modified forward (``z`` itself for the epsilon rule).

That node is a small autograd Function. During the relevance backward it applies the
rule, with the ratio computed in the forward pass from tensors that keep their graph;
afterwards it is the identity it is in the forward pass. So with ``create_graph=True``
the heatmap is exactly differentiable with respect to the input and every parameter
(weights, biases, BatchNorm affine parameters): differentiating a loss on it reaches
the ratios' true forward graph, not a rule-modified one. One forward pass and one
input-gradient backward give the heatmap; there is no second forward pass.

For the epsilon rule the node sends ``J^T (g * ratio)`` to the layer's input itself
(:class:`_DirectRelevance`), and ReLUs get a gate that treats their output as a constant
(:class:`_ReLUGate`): a loss on the heatmap is then differentiated on the kernels of an
ordinary training step instead of PyTorch's generic double backward of a convolution and
of a ReLU. A max-pool of a ReLU's output pools first (:class:`_MaxPool`) and, where it is
the layer's only consumer, applies the layer's ratio to the pooled values
(:class:`_RatioSlot`), so the largest activations of a CNN see fewer passes. Same values
(tested against :func:`generic_backward`); a TEA step costs about 3.3 ERM steps instead of
4.5 (docs/benchmarks.md#intervene).

Rules are small frozen dataclasses, as in zennit, and a :class:`Composite` maps layer
types to rules. Hooks live only inside :func:`lrp`'s context manager.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain._common import (
    Target,
    check_input,
    forward_hooks,
    resolve_target,
    target_score,
)
from shortcutlab.explain.lrp_check import check_visible
from shortcutlab.registry import Registry

AFFINE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)
NORM_TYPES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)
SUM_POOL_TYPES: tuple[type[nn.Module], ...] = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
# Layers through which relevance flows by the plain gradient (see the module docstring).
PASS_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Unflatten, nn.Dropout,
    nn.Dropout2d, nn.Identity,
)
SUPPORTED_TYPES = AFFINE_TYPES + NORM_TYPES + SUM_POOL_TYPES + PASS_TYPES

Epsilon_ = float | Tensor
# 0.01 (the low end of the range TEA draws from) absorbs weak and contradictory
# contributions; near 0 the epsilon rule is gradient x input, noisy on a ReLU network.
DEFAULT_EPSILON = 0.01
DEFAULT_STABILIZER = 1e-6  # only keeps the other rules' divisions away from zero


# --------------------------------------------------------------------------- stabilizer

def stabilize(z: Tensor, epsilon: Epsilon_) -> Tensor:
    """``z + epsilon * sign(z)`` with sign(0) = +1, as zennit's ``Stabilizer``.

    ``epsilon`` is a float or a per-sample tensor of shape (N,).
    """
    epsilon = torch.as_tensor(epsilon, dtype=z.dtype, device=z.device)
    if epsilon.dim():
        epsilon = epsilon.reshape(-1, *([1] * (z.dim() - 1)))
    return z + torch.where(z >= 0, epsilon, -epsilon)


class _Phase:
    """Which backward the relevance nodes of one :func:`lrp` call perform.

    During the relevance pass they apply the rules; afterwards (when a loss on a
    ``create_graph=True`` heatmap is differentiated, which traverses the forward graph
    again to reach the parameters) they are the identity they are in the forward pass, so
    those derivatives are the true ones.
    """

    def __init__(self) -> None:
        self.relevance = True
        # The input layer's J^T (g * ratio), when it is delivered here instead of to a
        # leaf input (see _Tape.affine_pre_hook).
        self.input_gradient: Tensor | None = None


class _RelevanceRatio(torch.autograd.Function):
    """Forward: a copy of ``z``. Relevance backward: ``g * ratio`` sent to ``z_rule`` only
    (the rule's modified forward, ``z`` itself for the epsilon rule), with
    ``ratio = z / stab(z_rule)`` computed in the forward. Later backwards: the identity.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, z_rule: Tensor, ratio: Tensor, phase: _Phase) -> Tensor:
        ctx.save_for_backward(ratio)
        ctx.phase = phase
        # A copy, not a view: models may add to a layer's output in place (out += identity).
        return z.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        if ctx.phase.relevance:
            (ratio,) = ctx.saved_tensors
            return None, grad * ratio, None, None
        return grad, None, None, None


class _EpsilonRatio(torch.autograd.Function):
    """``z / (z + eps sign z) = |z| / (|z| + eps)`` with its derivative
    ``eps sign(z) / (|z| + eps)^2`` computed once in the forward pass.

    Autograd's generic path (abs, add, div and their backwards) costs about five more
    passes over every activation in a differentiable heatmap's backward, which is what
    TEA's training steps spend most of their time on. The derivative itself is not
    differentiated again (third derivatives of a heatmap are not supported).
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, epsilon: Epsilon_) -> Tensor:
        magnitude = z.abs()
        denominator = magnitude + epsilon
        slope = torch.sgn(z).mul_(epsilon).div_(denominator).div_(denominator)
        ctx.save_for_backward(slope)
        # The relevance pass sends no gradient to the ratio: without this, autograd would
        # hand backward zeros, and a zero gradient would flow on through the layer below.
        ctx.set_materialize_grads(False)
        return magnitude.div_(denominator)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor | None) -> tuple[Tensor | None, None]:
        if grad is None:
            return None, None
        (slope,) = ctx.saved_tensors
        return grad * slope, None


def _conv_arguments(module: nn.Conv2d) -> tuple[list[int], list[int], list[int], int]:
    return list(module.stride), list(module.padding), list(module.dilation), module.groups


class _FastBackward(threading.local):
    enabled = True


_FAST_BACKWARD = _FastBackward()


@contextlib.contextmanager
def generic_backward() -> Iterator[None]:
    """Inside the block, :func:`lrp` sends relevance through every layer's own autograd
    backward, without :class:`_DirectRelevance` and :class:`_ReLUGate`: the same values,
    slower to differentiate again. It is the reference the fast path is tested against."""
    previous = _FAST_BACKWARD.enabled
    _FAST_BACKWARD.enabled = False
    try:
        yield
    finally:
        _FAST_BACKWARD.enabled = previous


def _memory_format(tensor: Tensor) -> torch.memory_format:
    if tensor.dim() == 4 and not tensor.is_contiguous() and tensor.is_contiguous(
            memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class _ConvInputGradient(torch.autograd.Function):
    """``J^T g``: the gradient a Conv2d sends to its input, as a node with its own
    derivative.

    Why not autograd's: differentiating a convolution's input gradient again (what a loss
    on a ``create_graph=True`` heatmap does) goes through PyTorch's generic double
    backward, which builds the weight's derivative as a convolution of transposed
    operands (copies of (channels, batch, H, W) tensors and a slow kernel: about a fifth
    of a TEA step on CPU). The two derivatives of ``J^T g`` are plain ones: with respect
    to ``g`` the convolution itself, with respect to the weight the ordinary weight
    gradient with ``gg`` as the input, so each runs on the fast kernels a training step
    uses. Same values, fewer passes.
    """

    @staticmethod
    def forward(ctx: Any, grad_output: Tensor, weight: Tensor, a: Tensor,
                arguments: tuple[list[int], list[int], list[int], int]) -> Tensor:
        stride, padding, dilation, groups = arguments
        ctx.arguments = arguments
        ctx.save_for_backward(grad_output, weight)
        (grad_input, _, _) = torch.ops.aten.convolution_backward(
            grad_output, a, weight, None, stride, padding, dilation, False, [0, 0], groups,
            [True, False, False])
        return grad_input

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        grad_output, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.arguments
        # oneDNN's kernels are several times slower when the two operands' memory formats
        # differ (channels-last activations, a contiguous gradient from the loss).
        grad = grad.contiguous(memory_format=_memory_format(grad_output))
        d_grad_output = d_weight = None
        if ctx.needs_input_grad[0]:
            d_grad_output = F.conv2d(grad, weight, None, stride, padding, dilation, groups)
        if ctx.needs_input_grad[1]:
            (_, d_weight, _) = torch.ops.aten.convolution_backward(
                grad_output, grad, weight, None, stride, padding, dilation, False, [0, 0],
                groups, [False, True, False])
        return d_grad_output, d_weight, None, None


class _ReLUGate(torch.autograd.Function):
    """ReLU whose backward treats its output as a constant.

    Why not autograd's: the derivative of ReLU's backward (threshold_backward) with respect
    to the saved output is zero, and autograd materializes that zero as a full-size tensor
    and sends it on through the layer below, once per ReLU in every differentiated
    heatmap. Here the backward sees the output detached, so only the derivative with
    respect to the incoming gradient is kept (threshold_backward again: a boolean mask
    would be ten times slower on channels-last tensors). Same values.

    ``output`` is ``relu(z)`` already computed (the ReLU layer's own output, detached):
    the node returns a view of it instead of computing it again. A model cannot modify a
    ReLU's output in place anyway (autograd's own ReLU backward needs it).
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, output: Tensor) -> Tensor:
        ctx.save_for_backward(output)
        return output

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (output,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, output, 0), None


def _pair(value: int | tuple[int, ...]) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


class _MaxPool(torch.autograd.Function):
    """2-d max-pooling whose backward treats its input as a constant.

    Why not autograd's: the derivative of max-pooling's backward with respect to its
    saved input is zero, and autograd materializes it as a zero tensor of the input's
    size (the largest activation of a CNN), adds it to the input's gradient and so turns
    that gradient contiguous, which costs the convolution below copies into its
    memory format. Here only the derivative with respect to the incoming gradient (a
    gather of the pooled positions) is kept. Same values.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, settings: tuple) -> Tensor:
        kernel, stride, padding, dilation, ceil_mode = settings
        ctx.settings = (_pair(kernel), _pair(stride) if stride else _pair(kernel),
                        _pair(padding), _pair(dilation), ceil_mode)
        pooled, indices = torch.ops.aten.max_pool2d_with_indices(z, *ctx.settings)
        ctx.save_for_backward(z, indices)
        return pooled

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        z, indices = ctx.saved_tensors
        # In the input's memory format: the kernel otherwise converts the input-sized
        # result, four times larger than this gradient.
        grad = grad.contiguous(memory_format=_memory_format(z))
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad, z.detach(), *ctx.settings, indices), None


def _relu(z: Tensor, create_graph: bool) -> Tensor:
    """``relu(z)`` for the relevance pass: with the gate when the heatmap is differentiated."""
    if not create_graph:
        return torch.relu(z)
    return _ReLUGate.apply(z, z.detach().clamp(min=0))


def affine_input_gradient(layer: AffineLayer, a: Tensor, grad_output: Tensor) -> Tensor:
    """The vector-Jacobian product ``J^T g`` of the (merged) affine layer at input ``a``:
    differentiable with respect to ``g`` and to the layer's live parameters."""
    weight, _ = layer.params()
    if isinstance(layer.module, nn.Linear):
        return grad_output.matmul(weight)
    return _ConvInputGradient.apply(grad_output, weight, a.detach(),
                                    _conv_arguments(layer.module))


class _DirectRelevance(torch.autograd.Function):
    """Forward: a copy of ``z = W a + b``. Relevance backward: ``J^T (g * ratio)`` sent
    straight to ``a``, built by :func:`affine_input_gradient`, so the relevance pass
    does not go through the layer's own autograd node (nor, later, through that node's
    generic double backward). Later backwards: the identity to ``z``.

    For the epsilon rule only, where ``z_rule`` is ``z`` itself: the result is the same
    as :class:`_RelevanceRatio` followed by the layer's backward (tests check both ways
    agree to 1e-12 in float64, heatmaps and their gradients).
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, a: Tensor, slot: _RatioSlot, layer: AffineLayer,
                phase: _Phase, sink: Tensor | None = None) -> Tensor:
        ctx.save_for_backward(a)
        ctx.slot, ctx.layer, ctx.phase, ctx.to_phase = slot, layer, phase, sink is not None
        return z.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        nothing = (None, None, None, None)
        if not ctx.phase.relevance:
            return grad, *nothing, None
        (a,) = ctx.saved_tensors
        ratio = ctx.slot.ratio
        # A ratio moved past the pooling layer (_RatioSlot) was applied there already.
        scaled = grad if ctx.slot.moved else grad * ratio
        if ctx.to_phase:
            gradient = affine_input_gradient(ctx.layer, a, scaled)
            if ctx.phase.input_gradient is not None:
                gradient = ctx.phase.input_gradient + gradient
            ctx.phase.input_gradient = gradient
            return None, *nothing, grad.new_zeros(())
        if not ctx.needs_input_grad[1]:
            return None, *nothing, None
        return None, affine_input_gradient(ctx.layer, a, scaled), None, None, None, None


@dataclass(eq=False)
class _RatioSlot:
    """The epsilon ratio of one affine layer, settled once the forward pass is complete.

    Where the layer's output goes only through a ReLU into a max-pool, the ratio is
    applied after the pool, to the pooled pre-activations (``pooled``): the pool's
    backward puts each gradient on its window's winner, whose ratio is the ratio of the
    pooled value, so ``pool_back(h) * ratio(z) = pool_back(h * ratio(pool(z)))`` exactly,
    and the ratio, its product with the gradient and their derivatives run on a quarter
    of the values (2x2 pooling). Anywhere else, ``ratio`` is computed at the layer.
    """

    rule: Rule
    z: Tensor | None
    ratio: Tensor | None = None
    pooled: Tensor | None = None
    moved: bool = False  # whether the pool took the ratio over


class _PooledRatio(torch.autograd.Function):
    """Forward: a copy of the pooled pre-activations ``p``. Relevance backward: the
    gradient times the ratio of ``p``, when its layer's slot moved the ratio here (see
    :class:`_RatioSlot`). Later backwards: the identity."""

    @staticmethod
    def forward(ctx: Any, p: Tensor, slot: _RatioSlot, phase: _Phase) -> Tensor:
        ctx.slot, ctx.phase = slot, phase
        return p.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        if ctx.phase.relevance and ctx.slot.moved:
            return grad * ctx.slot.pooled, None, None
        return grad, None, None


# --------------------------------------------------------------------------- layers

@dataclass(frozen=True)
class AffineLayer:
    """A Linear or Conv2d layer, with the BatchNorm that follows it merged in."""

    module: nn.Module
    norm: nn.Module | None = None

    def forward(self, a: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        module = self.module
        if isinstance(module, nn.Linear):
            return F.linear(a, weight, bias)
        return F.conv2d(a, weight, bias, module.stride, module.padding, module.dilation,
                         module.groups)

    def params(self) -> tuple[Tensor, Tensor | None]:
        """Weight and bias of the merged layer, built from the live (differentiable) parameters."""
        weight, bias = self.module.weight, self.module.bias
        norm = self.norm
        if norm is None:
            return weight, bias
        scale = torch.rsqrt(norm.running_var + norm.eps)
        shift = -norm.running_mean * scale
        if norm.affine:
            scale = scale * norm.weight
            shift = shift * norm.weight + norm.bias
        if bias is not None:
            shift = shift + bias * scale
        return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), shift


# --------------------------------------------------------------------------- rules

class Rule:
    """A rule for affine layers.

    ``modified_output`` is the rule's forward ``z_rule``: relevance flows back through its
    Jacobian, scaled by ``ratio(z, z_rule)`` (``z / stab(z_rule)``). Rules with
    ``input_only`` (e.g. :class:`Flat`) do not factor as ``activation * gradient``; they
    apply to the input layer only, through ``input_relevance``.
    """

    input_only = False
    differentiable = True  # heatmaps differentiable with respect to the parameters

    def ratio(self, z: Tensor, z_rule: Tensor) -> Tensor:
        raise NotImplementedError

    def modified_output(self, layer: AffineLayer | None, a: Tensor, z: Tensor) -> Tensor:
        raise NotImplementedError

    def input_relevance(self, layer: AffineLayer, a: Tensor, relevance: Tensor) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Epsilon(Rule):
    """LRP-epsilon: ``R_j = a_j w_jk R_k / (z_k + epsilon sign(z_k))`` with ``z = W a + b``.

    ``epsilon`` is a float or a per-sample tensor (N,). With no parameters it is the Norm
    rule used for sum (average) pooling.
    """

    epsilon: Epsilon_ = DEFAULT_EPSILON

    def ratio(self, z: Tensor, z_rule: Tensor) -> Tensor:
        epsilon = self.epsilon
        if isinstance(epsilon, Tensor):
            epsilon = epsilon.to(dtype=z.dtype, device=z.device).reshape(
                -1, *([1] * (z.dim() - 1)))
        if torch.is_grad_enabled() and z.requires_grad:
            return _EpsilonRatio.apply(z, epsilon)
        magnitude = z.abs()
        return magnitude.div_(magnitude + epsilon)

    def modified_output(self, layer: AffineLayer | None, a: Tensor, z: Tensor) -> Tensor:
        return z


@dataclass(frozen=True)
class ZPlus(Rule):
    """LRP-z+ (alpha=1, beta=0): only positive contributions ``a+ w+ (+ b+)`` and
    ``a- w-`` carry relevance, as zennit's ``ZPlus``."""

    stabilizer: float = 1e-6

    def ratio(self, z: Tensor, z_rule: Tensor) -> Tensor:
        return z / stabilize(z_rule, self.stabilizer)

    def modified_output(self, layer: AffineLayer | None, a: Tensor, z: Tensor) -> Tensor:
        weight, bias = layer.params()
        z_rule = layer.forward(a.clamp(min=0), weight.clamp(min=0),
                               None if bias is None else bias.clamp(min=0))
        if bool((a < 0).any()):
            z_rule = z_rule + layer.forward(a.clamp(max=0), weight.clamp(max=0), None)
        return z_rule


@dataclass(frozen=True)
class Flat(Rule):
    """LRP-flat for the input layer: relevance spread evenly over each receptive field
    (weights and inputs set to one, no bias), as zennit's ``Flat``."""

    stabilizer: float = 1e-6
    input_only = True

    def input_relevance(self, layer: AffineLayer, a: Tensor, relevance: Tensor) -> Tensor:
        weight, _ = layer.params()
        ones = torch.ones_like(a).requires_grad_(True)
        with torch.enable_grad():
            z_flat = layer.forward(ones, torch.ones_like(weight), None)
        share = relevance / stabilize(z_flat, self.stabilizer)
        (spread,) = torch.autograd.grad(z_flat, ones, share, create_graph=relevance.requires_grad)
        return spread


@dataclass(frozen=True)
class Gamma(Rule):
    """LRP-gamma, generalized to inputs of both signs as zennit's ``Gamma``: positive
    contributions are boosted by ``gamma`` for outputs that are positive, negative ones
    for outputs that are negative, which favours the evidence that agrees with the
    output's sign (gamma = 0: the plain z rule; large gamma: z+)."""

    gamma: float = 0.25
    stabilizer: float = 1e-6

    def ratio(self, z: Tensor, z_rule: Tensor) -> Tensor:
        return z / stabilize(z_rule, self.stabilizer)

    def modified_output(self, layer: AffineLayer | None, a: Tensor, z: Tensor) -> Tensor:
        weight, bias = layer.params()
        boost_up = weight + self.gamma * weight.clamp(min=0)
        boost_down = weight + self.gamma * weight.clamp(max=0)
        positive, negative = a.clamp(min=0), a.clamp(max=0)
        up_bias = None if bias is None else bias + self.gamma * bias.clamp(min=0)
        down_bias = None if bias is None else bias + self.gamma * bias.clamp(max=0)
        # each output uses the modified forward of its own sign (its gate is constant)
        z_up = layer.forward(positive, boost_up, up_bias) + layer.forward(negative, boost_down,
                                                                          None)
        z_down = layer.forward(positive, boost_down, down_bias) + layer.forward(
            negative, boost_up, None)
        sign = z.detach()
        return torch.where(sign > 0, z_up, torch.where(sign < 0, z_down, torch.zeros_like(z)))


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """LRP-alpha-beta, as zennit's ``AlphaBeta``: relevance flows to the positive
    contributions (weight ``alpha``) and against the negative ones (weight ``beta``),
    each normalized by its own total; ``alpha - beta = 1`` conserves relevance.

    It is a difference of two redistributions, so its heatmaps are not differentiable
    with respect to the parameters (the normalizations are constants): ``lrp`` refuses
    it with ``create_graph=True``."""

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6
    differentiable = False

    def ratio(self, z: Tensor, z_rule: Tensor) -> Tensor:
        return torch.ones_like(z)  # the normalizations are inside modified_output

    def modified_output(self, layer: AffineLayer | None, a: Tensor, z: Tensor) -> Tensor:
        weight, bias = layer.params()
        positive, negative = a.clamp(min=0), a.clamp(max=0)
        z_plus = layer.forward(positive, weight.clamp(min=0),
                               None if bias is None else bias.clamp(min=0)) + layer.forward(
            negative, weight.clamp(max=0), None)
        z_minus = layer.forward(positive, weight.clamp(max=0),
                                None if bias is None else bias.clamp(max=0)) + layer.forward(
            negative, weight.clamp(min=0), None)
        share_plus = (z / stabilize(z_plus, self.stabilizer)).detach()
        share_minus = (z / stabilize(z_minus, self.stabilizer)).detach()
        return self.alpha * z_plus * share_plus - self.beta * z_minus * share_minus


@dataclass(frozen=True)
class ZBox(Rule):
    """LRP-z^B for the input layer (Montavon et al. 2017), as zennit's ``ZBox``: pixels
    live in the box ``[low, high]`` (0 and 1 for our images), and the positive weights
    count from the lowest value, the negative ones from the highest."""

    low: float = 0.0
    high: float = 1.0
    stabilizer: float = 1e-6
    input_only = True

    def input_relevance(self, layer: AffineLayer, a: Tensor, relevance: Tensor) -> Tensor:
        weight, bias = layer.params()
        low = torch.full_like(a, self.low).requires_grad_(True)
        high = torch.full_like(a, self.high).requires_grad_(True)
        inputs = a.detach().requires_grad_(True) if not a.requires_grad else a
        with torch.enable_grad():
            z_plain = layer.forward(inputs, weight, bias)
            z_low = layer.forward(low, weight.clamp(min=0), None
                                  if bias is None else bias.clamp(min=0))
            z_high = layer.forward(high, weight.clamp(max=0), None
                                   if bias is None else bias.clamp(max=0))
            z_box = z_plain - z_low - z_high
        share = relevance / stabilize(z_box, self.stabilizer)
        grads = torch.autograd.grad((z_plain, z_low, z_high), (inputs, low, high),
                                    (share, share, share),
                                    create_graph=relevance.requires_grad)
        return inputs * grads[0] - low * grads[1] - high * grads[2]


@dataclass(frozen=True, eq=False)
class Composite:
    """Rules per layer type: ``layer_map`` is a tuple of ``(types, rule)`` tried in order;
    ``first`` (optional) overrides the rule of the input layer (the first affine layer
    the forward pass calls); sum-pooling layers use ``pool``."""

    layer_map: tuple[tuple[tuple[type[nn.Module], ...], Rule], ...]
    first: Rule | None = None
    pool: Rule = field(default_factory=lambda: Epsilon(DEFAULT_STABILIZER))

    def rules(self) -> list[Rule]:
        return [rule for _, rule in self.layer_map] + [self.pool] + (
            [self.first] if self.first is not None else [])

    def rule_for(self, module: nn.Module, is_first: bool) -> Rule:
        if is_first and self.first is not None:
            return self.first
        for types, rule in self.layer_map:
            if isinstance(module, types):
                return rule
        raise ShortcutlabError(f"the LRP composite has no rule for {type(module).__name__}")


CompositeFactory = Callable[[Epsilon_, float], Composite]
COMPOSITES: Registry[CompositeFactory] = Registry("LRP rule")


def register_composite(name: str) -> Callable[[CompositeFactory], CompositeFactory]:
    """Decorator: make a composite factory selectable as ``rule=name``."""
    return COMPOSITES.register_as(name)


@register_composite("epsilon")
def _epsilon(epsilon: Epsilon_, stabilizer: float) -> Composite:
    return Composite(((AFFINE_TYPES, Epsilon(epsilon)),), pool=Epsilon(stabilizer))


@register_composite("zplus")
def _zplus(epsilon: Epsilon_, stabilizer: float) -> Composite:
    return Composite(((AFFINE_TYPES, ZPlus(stabilizer)),), pool=Epsilon(stabilizer))


@register_composite("epsilon-plus")
def _epsilon_plus(epsilon: Epsilon_, stabilizer: float) -> Composite:
    """z+ for convolutions, epsilon for fully connected layers (zennit's EpsilonPlus)."""
    return Composite(((nn.Conv2d, ZPlus(stabilizer)), (nn.Linear, Epsilon(epsilon))),
                     pool=Epsilon(stabilizer))


@register_composite("epsilon-plus-flat")
def _epsilon_plus_flat(epsilon: Epsilon_, stabilizer: float) -> Composite:
    """Flat for the input layer, z+ for other convolutions, epsilon for fully connected
    layers (zennit's EpsilonPlusFlat)."""
    return Composite(((nn.Conv2d, ZPlus(stabilizer)), (nn.Linear, Epsilon(epsilon))),
                     first=Flat(stabilizer), pool=Epsilon(stabilizer))


@register_composite("epsilon-gamma-box")
def _epsilon_gamma_box(epsilon: Epsilon_, stabilizer: float) -> Composite:
    """z-box for the input layer, gamma (0.25) for other convolutions, epsilon for fully
    connected layers (zennit's EpsilonGammaBox with low=0, high=1)."""
    return Composite(((nn.Conv2d, Gamma(0.25, stabilizer)), (nn.Linear, Epsilon(epsilon))),
                     first=ZBox(0.0, 1.0, stabilizer), pool=Epsilon(stabilizer))


@register_composite("epsilon-alpha2-beta1")
def _epsilon_alpha2_beta1(epsilon: Epsilon_, stabilizer: float) -> Composite:
    """alpha=2, beta=1 for convolutions, epsilon for fully connected layers (zennit's
    EpsilonAlpha2Beta1)."""
    return Composite(((nn.Conv2d, AlphaBeta(2.0, 1.0, stabilizer)),
                      (nn.Linear, Epsilon(epsilon))), pool=Epsilon(stabilizer))


@register_composite("epsilon-alpha2-beta1-flat")
def _epsilon_alpha2_beta1_flat(epsilon: Epsilon_, stabilizer: float) -> Composite:
    """Flat for the input layer, then as epsilon-alpha2-beta1 (zennit's
    EpsilonAlpha2Beta1Flat)."""
    return Composite(((nn.Conv2d, AlphaBeta(2.0, 1.0, stabilizer)),
                      (nn.Linear, Epsilon(epsilon))), first=Flat(stabilizer),
                     pool=Epsilon(stabilizer))


def list_rules() -> list[str]:
    return COMPOSITES.names()


def make_composite(rule: str | Rule | Composite, epsilon: Epsilon_ = DEFAULT_EPSILON,
                   stabilizer: float = DEFAULT_STABILIZER) -> Composite:
    """A composite from a registered name, a single rule for every affine layer, or itself."""
    if isinstance(rule, Composite):
        return rule
    if isinstance(rule, Rule):
        if rule.input_only:
            return Composite(((AFFINE_TYPES, Epsilon(epsilon)),), first=rule,
                             pool=Epsilon(stabilizer))
        return Composite(((AFFINE_TYPES, rule),), pool=Epsilon(stabilizer))
    return COMPOSITES.get(rule)(epsilon, stabilizer)


# --------------------------------------------------------------------------- the pass

def check_epsilon(epsilon: Epsilon_, batch: int) -> Epsilon_:
    if isinstance(epsilon, Tensor):
        if epsilon.dim() == 0:
            epsilon = epsilon.reshape(1).expand(batch)
        if epsilon.shape != (batch,):
            raise ShortcutlabError(
                f"a per-sample epsilon must have shape ({batch},), got {tuple(epsilon.shape)}"
            )
        if bool((epsilon < 0).any()) or not bool(torch.isfinite(epsilon).all()):
            raise ShortcutlabError("epsilon must be finite and non-negative")
        return epsilon.detach()
    if not isinstance(epsilon, int | float) or epsilon < 0 or not math.isfinite(epsilon):
        raise ShortcutlabError(f"epsilon must be a non-negative float or a tensor, got {epsilon!r}")
    return float(epsilon)


def _plan(model: nn.Module) -> dict[nn.Module, nn.Module]:
    """Check every layer is supported; pair each BatchNorm with the affine layer before it.

    Pairs follow module registration order, as zennit's SequentialMergeBatchNorm; the
    forward pass then checks that the BatchNorm really consumes that layer's output.
    """
    norm_after: dict[nn.Module, nn.Module] = {}
    previous: tuple[str, nn.Module] | None = None
    for name, module in model.named_modules():
        children = next(module.children(), None) is not None
        if children or isinstance(module, nn.Sequential | nn.ModuleList | nn.ModuleDict):
            own = [p for p, _ in module.named_parameters(recurse=False)]
            if own:
                raise ShortcutlabError(
                    f"lrp cannot propagate relevance through {name or 'the model'} "
                    f"({type(module).__name__}): it uses its own parameters {own} in code "
                    "that LRP cannot see; build it from supported layers"
                )
            continue
        if not isinstance(module, SUPPORTED_TYPES):
            own = [p for p, _ in module.named_parameters(recurse=False)]
            uses = f", whose forward uses its own parameters {own}" if own else ""
            raise ShortcutlabError(
                f"lrp cannot propagate relevance through {repr(name) if name else 'the model'}"
                f" ({type(module).__name__}{uses}); build it from supported layers: "
                + ", ".join(t.__name__ for t in SUPPORTED_TYPES)
            )
        if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
            raise ShortcutlabError(f"lrp supports zero padding only; {name!r} pads with "
                                   f"{module.padding_mode!r}")
        if isinstance(module, NORM_TYPES):
            if not module.track_running_stats or module.running_mean is None:
                raise ShortcutlabError(
                    f"BatchNorm {name!r} keeps no running statistics, so it cannot be merged "
                    "into the layer before it for LRP"
                )
            if previous is None or not isinstance(previous[1], AFFINE_TYPES):
                raise ShortcutlabError(
                    f"BatchNorm {name!r} does not directly follow a Linear or Conv2d layer, so "
                    "lrp cannot merge it into one"
                )
            norm_after[previous[1]] = module
        previous = (name, module)
    return norm_after


def check_model(model: nn.Module, example: Tensor) -> None:
    """Raise a ShortcutlabError, before any heatmap, when ``model`` has a layer or a call
    in its forward that LRP cannot handle; ``example`` is one input (N >= 1)."""
    _plan(model)
    check_visible(model, example)


@contextlib.contextmanager
def _lrp_mode(model: nn.Module) -> Iterator[None]:
    """BatchNorm and dropout in eval mode (BatchNorm is merged with its running statistics)
    and no in-place activations, restored on exit."""
    saved_training = []
    saved_inplace = []
    try:
        for module in model.modules():
            if isinstance(module, (*NORM_TYPES, nn.Dropout, nn.Dropout2d)) and module.training:
                saved_training.append(module)
                module.training = False
            if getattr(module, "inplace", False) is True:
                saved_inplace.append(module)
                module.inplace = False
        yield
    finally:
        for module in saved_training:
            module.training = True
        for module in saved_inplace:
            module.inplace = True


class _Tape:
    """Per-call state the hooks share: the input layer, layers awaiting their BatchNorm,
    and the phase of the relevance nodes."""

    def __init__(self, composite: Composite, norm_after: dict[nn.Module, nn.Module],
                 create_graph: bool) -> None:
        self.composite = composite
        self.norm_after = norm_after
        self.norm_before = {norm: affine for affine, norm in norm_after.items()}
        self.create_graph = create_graph
        self.phase = _Phase()
        self.first: nn.Module | None = None
        self.first_input: Tensor | None = None
        self.pending: dict[nn.Module, tuple[Tensor, Tensor]] = {}
        self.input_site: tuple[Rule, AffineLayer, Tensor, Tensor] | None = None
        self.sink: Tensor | None = None
        self.seen: set[nn.Module] = set()
        self.relu_inputs: dict[int, tuple[Tensor, Tensor]] = {}
        # Epsilon layers' outputs and their ratio slots, by id (kept with the tensor).
        self.slots: dict[int, tuple[Tensor, _RatioSlot]] = {}
        self.pool_claims: list[tuple[_RatioSlot, Tensor, Tensor]] = []

    def affine_pre_hook(self, module: nn.Module, args: tuple[Tensor, ...]) -> Any:
        if module in self.seen:
            raise ShortcutlabError(
                f"a {type(module).__name__} layer is called twice in one forward pass; lrp needs "
                "each layer used once (build separate layers instead of reusing one)"
            )
        self.seen.add(module)
        if self.first is not None:
            return None
        self.first = module
        a = args[0]
        if a.requires_grad:
            self.first_input = a
            return None
        if _direct(self.composite.rule_for(module, True), AffineLayer(module)):
            # The input layer's relevance node hands J^T (g * ratio) to the phase, and a
            # scalar sink stands in for the input: the input itself needs no gradient, so a
            # loss on the heatmap does not compute the first layer's input gradient.
            self.first_input = a
            self.sink = torch.zeros((), dtype=a.dtype, device=a.device, requires_grad=True)
            return None
        a = a.detach().requires_grad_(True)
        self.first_input = a
        return (a, *args[1:])

    def affine_hook(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Any:
        if module in self.norm_after:
            self.pending[module] = (args[0], output)
            return None
        return self._apply(module, AffineLayer(module), args[0], output)

    def norm_hook(self, norm: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Any:
        affine = self.norm_before[norm]
        a, z = self.pending.pop(affine, (None, None))
        if z is None or args[0] is not z:
            raise ShortcutlabError(
                f"BatchNorm layer does not consume the output of the {type(affine).__name__} "
                "registered just before it, so lrp cannot merge them"
            )
        return self._apply(affine, AffineLayer(affine, norm), a, output)

    def pool_hook(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Any:
        return self._attach(module, self.composite.pool, None, args[0], output)

    def relu_hook(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Any:
        z = args[0]
        if not z.requires_grad:
            return None
        gated = _ReLUGate.apply(z, output.detach()) if self.create_graph else None
        result = output if gated is None else gated
        # Kept with the tensor itself, so the id cannot be reused while the entry lives.
        self.relu_inputs[id(result)] = (result, z)
        return gated

    def max_pool_hook(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Any:
        """A max-pool of a ReLU's output becomes the ReLU of a max-pool of its input.

        ``max(relu(z)) = relu(max(z))`` exactly (ReLU is monotone), and so is the
        gradient: the window's winner is the same element, and where the window's maximum
        is not positive both send nothing. But the ReLU's backward (and, for a
        differentiable heatmap, its derivative) then runs on the pooled tensor, a quarter
        of the size for 2x2 pooling: the ReLU before the first pooling layer is the
        largest activation of a typical CNN. Where ``z`` is an epsilon layer's output, the
        pool also offers to take over its ratio (:class:`_RatioSlot`). The layer's own
        result (on the ReLU's output) is left unused.
        """
        entry = self.relu_inputs.get(id(args[0]))
        if entry is None or entry[0] is not args[0] or module.return_indices:
            return None
        z = entry[1]
        pooled = _MaxPool.apply(z, (module.kernel_size, module.stride, module.padding,
                                    module.dilation, module.ceil_mode))
        slot_entry = self.slots.get(id(z))
        if slot_entry is not None and slot_entry[0] is z:
            slot = slot_entry[1]
            pooled = _PooledRatio.apply(pooled, slot, self.phase)
            self.pool_claims.append((slot, z, pooled))
        return _relu(pooled, self.create_graph)

    def release_ratios(self) -> None:
        """Drop the slots' tensors once the relevance pass is over (the nodes are the
        identity from then on). A pooled ratio's graph leads back to the node that holds
        its slot, a cycle the garbage collector cannot see through autograd's nodes, so
        each step's graph would otherwise stay alive."""
        for _, slot in self.slots.values():
            slot.z = slot.ratio = slot.pooled = None
        self.slots.clear()
        self.pool_claims.clear()
        self.relu_inputs.clear()

    def settle_ratios(self, logits: Tensor) -> None:
        """Decide each slot of :class:`_RatioSlot` now that the graph is complete: a pool
        takes over the ratio when it is the only consumer of the layer's output."""
        claimed: set[int] = set()
        if self.pool_claims:
            consumers: dict[Any, list[Any]] = {}
            seen, stack = set(), [logits.grad_fn]
            while stack:
                node = stack.pop()
                if node is None or node in seen:
                    continue
                seen.add(node)
                for next_node, _ in node.next_functions:
                    if next_node is not None:
                        consumers.setdefault(next_node, []).append(node)
                        stack.append(next_node)
            for slot, z, pooled in self.pool_claims:
                users = consumers.get(z.grad_fn, [])
                pooled_node = pooled.grad_fn.next_functions[0][0]  # the pool's own node
                if len(users) == 1 and users[0] is pooled_node:
                    with torch.set_grad_enabled(self.create_graph):
                        slot.pooled = slot.rule.ratio(pooled, pooled)
                    slot.moved = True
                    claimed.add(id(slot))
        for _, slot in self.slots.values():
            if id(slot) not in claimed:
                with torch.set_grad_enabled(self.create_graph):
                    slot.ratio = slot.rule.ratio(slot.z, slot.z)

    def _apply(self, key: nn.Module, layer: AffineLayer, a: Tensor, z: Tensor) -> Tensor | None:
        is_first = layer.module is self.first
        rule = self.composite.rule_for(layer.module, is_first)
        if rule.input_only:
            if not is_first:
                raise ShortcutlabError(f"{type(rule).__name__} applies to the input layer only")
            self.input_site = (rule, layer, a, z)
            return None
        return self._attach(key, rule, layer, a, z)

    def _attach(self, key: nn.Module, rule: Rule, layer: AffineLayer | None, a: Tensor,
                z: Tensor) -> Tensor | None:
        z_rule = rule.modified_output(layer, a, z)
        if _direct(rule, layer):
            sink = self.sink if key is self.first else None
            slot = _RatioSlot(rule, z)
            output = _DirectRelevance.apply(z, a, slot, layer, self.phase, sink)
            self.slots[id(output)] = (output, slot)
            return output
        with torch.set_grad_enabled(self.create_graph):
            ratio = rule.ratio(z, z_rule)
        return _RelevanceRatio.apply(z, z_rule, ratio, self.phase)

    def hooks(self, model: nn.Module) -> tuple[list, list]:
        pre_hooks, hooks = [], []
        for module in model.modules():
            if isinstance(module, AFFINE_TYPES):
                pre_hooks.append((module, self.affine_pre_hook))
                hooks.append((module, self.affine_hook))
            elif isinstance(module, NORM_TYPES):
                hooks.append((module, self.norm_hook))
            elif isinstance(module, SUM_POOL_TYPES):
                hooks.append((module, self.pool_hook))
            elif isinstance(module, nn.ReLU) and _FAST_BACKWARD.enabled:
                hooks.append((module, self.relu_hook))
            elif isinstance(module, nn.MaxPool2d) and _FAST_BACKWARD.enabled:
                hooks.append((module, self.max_pool_hook))
        return pre_hooks, hooks

    def check_complete(self) -> None:
        if self.first_input is None:
            raise ShortcutlabError("lrp found no Linear or Conv2d layer in the forward pass")
        if self.pending:
            raise ShortcutlabError(
                "a BatchNorm registered after a Linear/Conv2d layer never received its output, "
                "so lrp cannot merge them; register each BatchNorm right after the layer it "
                "normalizes"
            )


def _direct(rule: Rule, layer: AffineLayer | None) -> bool:
    """Whether relevance can skip the layer's autograd node (see _DirectRelevance)."""
    if not isinstance(rule, Epsilon) or layer is None or not _FAST_BACKWARD.enabled:
        return False
    module = layer.module
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, nn.Conv2d) and not isinstance(module.padding, str)
            and module.padding_mode == "zeros")


def _run(model: nn.Module, x: Tensor, tape: _Tape) -> Tensor:
    pre_hooks, hooks = tape.hooks(model)
    with forward_hooks(hooks, pre_hooks), torch.enable_grad():
        logits = model(x)
    tape.check_complete()
    tape.settle_ratios(logits)
    return logits


def lrp(
    model: nn.Module,
    x: Tensor,
    target: Target = None,
    rule: str | Rule | Composite = "epsilon",
    epsilon: float | Tensor = DEFAULT_EPSILON,
    create_graph: bool = False,
    stabilizer: float = DEFAULT_STABILIZER,
    return_output: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """LRP relevance (N, C, H, W) of each input for its target class.

    The output relevance is the target logit (``R = z_c``, other classes 0), so with zero
    biases and a tiny epsilon the input relevance sums to the logit.

    Args:
        model: built from Conv2d, Linear, ReLU, MaxPool2d, AvgPool2d and adaptive pools,
            Flatten, Dropout, and BatchNorm right after a Conv2d/Linear (merged into it,
            with its running statistics); residual additions written as ``a + b`` split
            relevance in proportion to the summands. Anything else raises an error naming
            the layer; so does a nonlinearity written as a call inside ``forward``
            (``torch.sigmoid``, ``F.gelu``, a product of two activations), checked by one
            probe pass the first time a model is seen (:mod:`.lrp_check`). Each layer
            must be called once per forward pass.
        x: a batch of inputs.
        target: an int, a tensor of class indices (N,), or None for the predicted class.
        rule: a registered composite (``epsilon``, ``zplus``, ``epsilon-plus``,
            ``epsilon-plus-flat``), a :class:`Rule` for every affine layer, or a
            :class:`Composite`.
        epsilon: the epsilon rule's epsilon, a float or a per-sample tensor (N,); the
            default 0.01 absorbs weak and contradictory contributions (zennit's 1e-6 makes
            the rule gradient x input).
        create_graph: keep the graph, so that the heatmap is differentiable with respect
            to ``x`` (when ``x`` requires grad) and to every parameter.
        stabilizer: the small constant of the other rules (z+, flat, sum pooling).
        return_output: also return the logits of the forward pass (detached: they were
            computed with LRP's modified backward and must not be trained on).
    """
    check_input(x)
    epsilon = check_epsilon(epsilon, x.shape[0])
    composite = make_composite(rule, epsilon, stabilizer)
    if create_graph:
        fixed = [type(r).__name__ for r in composite.rules() if not r.differentiable]
        if fixed:
            raise ShortcutlabError(
                f"the {', '.join(fixed)} rule gives heatmaps that are not differentiable "
                "with respect to the parameters; use epsilon, zplus or gamma composites "
                "with create_graph=True")
    norm_after = _plan(model)
    check_visible(model, x)
    tape = _Tape(composite, norm_after, create_graph)
    with _lrp_mode(model):
        logits = _run(model, x, tape)
    if logits.dim() != 2:
        raise ShortcutlabError(f"lrp explains classifiers with (N, classes) outputs, got "
                               f"{tuple(logits.shape)}")
    classes = resolve_target(target, logits)
    with torch.enable_grad():
        score = target_score(logits, classes)
        try:
            if tape.input_site is not None:
                input_rule, layer, a, z = tape.input_site
                (grad,) = torch.autograd.grad(score, z, create_graph=create_graph)
                relevance = input_rule.input_relevance(layer, a, z * grad)
            elif tape.sink is not None:
                a = tape.first_input
                torch.autograd.grad(score, tape.sink, create_graph=create_graph)
                grad = tape.phase.input_gradient
                relevance = a * (grad if grad is not None else torch.zeros_like(a))
            else:
                a = tape.first_input
                (grad,) = torch.autograd.grad(score, a, create_graph=create_graph)
                relevance = a * grad
        finally:
            tape.phase.relevance = False
            # Every relevance node holds the phase, and the input gradient's graph leads
            # back to those nodes: a cycle through autograd's nodes that the garbage
            # collector cannot see, which kept each call's whole graph alive.
            tape.phase.input_gradient = None
            tape.release_ratios()
    if relevance.numel() != x.numel():
        raise ShortcutlabError(
            f"the model's first affine layer sees {tuple(relevance.shape)} values per batch, "
            f"not the input's {tuple(x.shape)}; lrp maps relevance back only through "
            "flattening and elementwise preprocessing"
        )
    relevance = relevance.reshape(x.shape)
    if not create_graph:
        relevance = relevance.detach()
    return (relevance, logits.detach()) if return_output else relevance
