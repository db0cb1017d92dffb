"""LRP: cross-checked against zennit, conservation, exact parameter gradients, clean hooks."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from explain_models import hooks_left, random_cnn, random_mlp, tiny_resnet
from shortcutlab import models
from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain import Composite, Epsilon, ZPlus, lrp

zennit = pytest.importorskip("zennit")
from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import SequentialMergeBatchNorm  # noqa: E402
from zennit.composites import (  # noqa: E402
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    LayerMapComposite,
)
from zennit.layer import Sum  # noqa: E402
from zennit.rules import Epsilon as ZennitEpsilon  # noqa: E402
from zennit.rules import Norm, Pass  # noqa: E402
from zennit.rules import ZPlus as ZennitZPlus  # noqa: E402
from zennit.types import Activation, AvgPool, Convolution, Linear  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: no OpenMP overhead


def zennit_lrp(model: nn.Module, x: torch.Tensor, target: torch.Tensor, composite) -> torch.Tensor:
    """zennit's relevance with the output relevance set to the target logit, as ours."""
    with Gradient(model=model, composite=composite) as attributor:
        _, relevance = attributor(
            x.clone(), lambda out: out * nn.functional.one_hot(target, out.shape[1]).to(out))
    return relevance


def zennit_epsilon(epsilon: float, canonize: bool = False, sum_stabilizer: float = 1e-6):
    """zennit's Epsilon rule on every layer: Pass on activations, plain gradient through
    max-pooling, Norm on sum pooling (as zennit's built-in composites)."""
    return LayerMapComposite(
        [(Activation, Pass()), (Sum, Norm(sum_stabilizer)), (AvgPool, Norm(1e-6)),
         (Convolution, ZennitEpsilon(epsilon)), (Linear, ZennitEpsilon(epsilon))],
        canonizers=[SequentialMergeBatchNorm()] if canonize else None,
    )


def batch(n: int = 5, seed: int = 0, size: int = 28) -> torch.Tensor:
    return torch.rand(n, 3, size, size, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(seed))


CNNS = [
    dict(seed=0),
    dict(seed=1, width=3, kernel=5),
    dict(seed=2, pool="avg", head="gap"),
    dict(seed=3, batch_norm=True),
    dict(seed=4, width=5, pool="avg", batch_norm=True, head="gap"),
]


@pytest.mark.parametrize("config", CNNS)
@pytest.mark.parametrize("epsilon", [1e-6, 0.25])
def test_epsilon_matches_zennit_on_cnns(config, epsilon):
    model = random_cnn(**config)
    x = batch()
    target = torch.tensor([0, 3, 9, 3, 5])
    ours = lrp(model, x, target, rule="epsilon", epsilon=epsilon)
    reference = zennit_lrp(model, x, target, zennit_epsilon(epsilon, config.get("batch_norm")))
    assert ours.shape == x.shape
    assert reference.abs().max() > 0
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6 * reference.abs().max())
    assert (ours - reference).abs().max() < 1e-6


@pytest.mark.parametrize("seed,depth", [(0, 1), (1, 2), (2, 3)])
def test_epsilon_matches_zennit_on_mlps(seed, depth):
    model = random_mlp(seed, depth=depth)
    x = batch(4, seed)
    target = torch.tensor([1, 2, 7, 0])
    for epsilon in (1e-6, 0.1):
        ours = lrp(model, x, target, epsilon=epsilon)
        reference = zennit_lrp(model, x, target, zennit_epsilon(epsilon))
        assert (ours - reference).abs().max() < 1e-6


@pytest.mark.parametrize("config", [CNNS[0], CNNS[3], CNNS[4]])
def test_composites_match_zennit(config):
    model = random_cnn(**config)
    x = batch()
    target = torch.tensor([2, 2, 4, 8, 1])
    canonizers = [SequentialMergeBatchNorm()] if config.get("batch_norm") else None
    pairs = [
        ("epsilon-plus-flat", EpsilonPlusFlat(epsilon=0.05, canonizers=canonizers)),
        ("epsilon-plus", EpsilonPlus(epsilon=0.05, canonizers=canonizers)),
        ("zplus", LayerMapComposite([(Activation, Pass()), (AvgPool, Norm(1e-6)),
                                     (Convolution, ZennitZPlus()), (Linear, ZennitZPlus())],
                                    canonizers=canonizers)),
        ("epsilon-gamma-box", EpsilonGammaBox(low=0.0, high=1.0, epsilon=0.05, gamma=0.25,
                                              canonizers=canonizers)),
        ("epsilon-alpha2-beta1", EpsilonAlpha2Beta1(epsilon=0.05, canonizers=canonizers)),
        ("epsilon-alpha2-beta1-flat", EpsilonAlpha2Beta1Flat(epsilon=0.05,
                                                             canonizers=canonizers)),
    ]
    for name, composite in pairs:
        ours = lrp(model, x, target, rule=name, epsilon=0.05)
        reference = zennit_lrp(model, x, target, composite)
        scale = reference.abs().max()
        assert scale > 0
        assert (ours - reference).abs().max() < 1e-9 * max(1.0, float(scale)), name


def test_residual_network_matches_zennit_and_conserves():
    ours_model = tiny_resnet(0)
    reference_model = tiny_resnet(0, sum_module=True)
    reference_model.load_state_dict(ours_model.state_dict())
    reference_model.relu.inplace = False
    x = batch(3)
    target = torch.tensor([4, 0, 6])
    ours = lrp(ours_model, x, target, epsilon=0.01)
    # relevance is split over a sum in proportion to the summands; zennit's Norm rule with a
    # negligible stabilizer is the same rule
    composite = zennit_epsilon(0.01, canonize=True, sum_stabilizer=1e-14)
    reference = zennit_lrp(reference_model, x, target, composite)
    assert (ours - reference).abs().max() < 1e-9 * float(reference.abs().max())

    with torch.no_grad():  # zero every bias (BatchNorm shifts included): relevance is conserved
        for module in ours_model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.bias.zero_()
                module.running_mean.zero_()
            if isinstance(module, nn.Linear):
                module.bias.zero_()
    relevance = lrp(ours_model, x, target, epsilon=1e-12, stabilizer=1e-12)
    logits = ours_model(x).gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), logits, rtol=1e-8, atol=1e-10)
    assert ours_model.relu.inplace is True  # restored after the call


@pytest.mark.parametrize("make", [lambda: random_cnn(5, width=6),
                                  lambda: random_cnn(6, pool="avg", head="gap"),
                                  lambda: random_mlp(7, depth=3)])
def test_relevance_is_conserved_without_biases(make):
    model = make()
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
    x = batch(4)
    target = torch.tensor([0, 5, 5, 9])
    relevance = lrp(model, x, target, epsilon=1e-12, stabilizer=1e-12)
    logits = model(x).gather(1, target[:, None])[:, 0]
    assert logits.abs().min() > 1e-6
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), logits, rtol=1e-8, atol=1e-12)


def test_targets_per_sample_epsilon_and_predicted_class():
    model = random_cnn(8)
    x = batch(4)
    epsilon = torch.tensor([0.01, 0.03, 0.05, 0.1], dtype=torch.float64)
    target = torch.tensor([3, 1, 4, 1])
    together = lrp(model, x, target, epsilon=epsilon)
    for i in range(4):
        alone = lrp(model, x[i:i + 1], int(target[i]), epsilon=float(epsilon[i]))
        torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-10, atol=1e-14)
    predicted = model(x).argmax(1)
    torch.testing.assert_close(lrp(model, x, None), lrp(model, x, predicted))
    relevance, logits = lrp(model, x, 2, return_output=True)
    torch.testing.assert_close(logits, model(x))
    torch.testing.assert_close(relevance, lrp(model, x, torch.full((4,), 2)))


def _finite_difference_check(model: nn.Module, loss_fn, samples: int = 2) -> None:
    """Autograd through ``loss_fn(create_graph=True)`` against central differences of
    ``loss_fn(create_graph=False)`` on the largest and a few random entries of every
    parameter."""
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(loss_fn(True), list(params.values()))
    generator = torch.Generator().manual_seed(0)
    step = 1e-6
    for (name, param), grad in zip(params.items(), grads, strict=True):
        scale = float(grad.abs().max())
        assert scale > 0, f"no gradient reaches {name}"
        flat = param.data.view(-1)
        picks = [int(grad.abs().reshape(-1).argmax())]
        picks += torch.randint(0, flat.numel(), (samples,), generator=generator).tolist()
        for index in picks:
            original = float(flat[index])
            flat[index] = original + step
            plus = float(loss_fn(False))
            flat[index] = original - step
            minus = float(loss_fn(False))
            flat[index] = original
            numeric = (plus - minus) / (2 * step)
            analytic = float(grad.reshape(-1)[index])
            assert abs(numeric - analytic) <= 1e-5 * scale + 1e-6 * abs(numeric), (
                f"{name}[{index}]: finite differences {numeric}, autograd {analytic}")


@pytest.mark.parametrize("rule,make", [
    ("epsilon", lambda: random_cnn(9, width=3, batch_norm=True, size=12)),
    ("zplus", lambda: random_cnn(9, width=3, batch_norm=True, size=12)),
    ("epsilon-plus-flat", lambda: random_cnn(9, width=3, batch_norm=True, size=12)),
    ("epsilon-gamma-box", lambda: random_cnn(9, width=3, batch_norm=True, size=12)),
    ("epsilon", lambda: random_cnn(10, width=3, pool="avg", head="gap", size=12)),
])
def test_heatmap_gradients_match_finite_differences(rule, make):
    model = make()
    x = batch(3, seed=4, size=12)
    target = torch.tensor([1, 6, 8])
    epsilon = torch.tensor([0.01, 0.04, 0.1], dtype=torch.float64)
    weights = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))

    def loss(create_graph: bool) -> torch.Tensor:
        heatmap = lrp(model, x, target, rule=rule, epsilon=epsilon, create_graph=create_graph)
        return (heatmap * weights).sum() + heatmap.abs().sum()

    _finite_difference_check(model, loss)


def _graph_nodes(tensor: torch.Tensor) -> set[str]:
    names, seen, stack = set(), set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(node.name())
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


def _strided_cnn() -> nn.Module:
    torch.manual_seed(13)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 6, 3, padding=2, dilation=2), nn.ReLU(),
                         nn.Conv2d(6, 6, 3, padding=1, groups=2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 14 * 14, 10)).double()


class _BranchingCNN(nn.Module):
    """Activations that a max-pool shares with another consumer: conv1's output goes
    through ReLU into a max-pool and, beside it, into an average pool; conv2's ReLU output
    feeds an overlapping, padded max-pool and an average pool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1, self.pool1, self.side1 = nn.ReLU(), nn.MaxPool2d(2), nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.side2 = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(5 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv1(x)
        h = self.pool1(self.relu1(z)) + self.side1(z)
        r = self.relu2(self.conv2(h))
        return self.fc(self.flatten(self.pool2(r) + self.side2(r)))


def _branching_cnn() -> nn.Module:
    torch.manual_seed(18)
    return _BranchingCNN().double().eval()


def _overlapping_pool_cnn() -> nn.Module:
    torch.manual_seed(19)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                         nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, dilation=2),
                         nn.Flatten(), nn.Linear(6 * 7 * 7, 10)).double().eval()


@pytest.mark.parametrize("make", [
    lambda: random_cnn(14, width=3),
    lambda: random_cnn(15, width=3, batch_norm=True, pool="avg", head="gap"),
    _strided_cnn,
    lambda: tiny_resnet(16),
    lambda: random_mlp(17, depth=3),
    _branching_cnn,
    _overlapping_pool_cnn,
])
@pytest.mark.parametrize("rule", ["epsilon", "epsilon-plus"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_backward_gives_the_generic_heatmaps_and_gradients(make, rule, channels_last):
    """The direct vector-Jacobian products and the ReLU gate change how a differentiable
    heatmap is differentiated, not what it is: heatmaps, parameter gradients and input
    gradients of a loss on them agree with the layers' own autograd backward."""
    from shortcutlab.explain.relevance import generic_backward

    model = make()
    x = batch(3, seed=6)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    target = torch.tensor([1, 4, 9])
    epsilon = torch.tensor([0.01, 0.04, 0.1], dtype=torch.float64)
    weights = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(3))
    params = [p for p in model.parameters() if p.requires_grad]
    results = []
    for generic in (False, True):
        inputs = x.clone().requires_grad_(True)
        with generic_backward() if generic else contextlib.nullcontext():
            heatmap = lrp(model, inputs, target, rule=rule, epsilon=epsilon,
                          create_graph=True)
            loss = (heatmap * weights).sum() + (heatmap ** 2).sum()
            grads = torch.autograd.grad(loss, [*params, inputs])
        results.append((heatmap.detach(), grads, _graph_nodes(heatmap)))
    (fast_map, fast_grads, fast_nodes), (generic_map, generic_grads, _) = results
    torch.testing.assert_close(fast_map, generic_map, rtol=0, atol=1e-12)
    with generic_backward():
        plain_generic = lrp(model, x, target, rule=rule, epsilon=epsilon)
    torch.testing.assert_close(lrp(model, x, target, rule=rule, epsilon=epsilon),
                               plain_generic, rtol=0, atol=1e-12)
    for fast, generic in zip(fast_grads, generic_grads, strict=True):
        torch.testing.assert_close(fast, generic, rtol=1e-10, atol=1e-12)
    # Nothing of the heatmap's graph goes through torch's generic double backward of a
    # convolution (the slow path the direct products replace), where the epsilon rule
    # applies to every convolution.
    if rule == "epsilon":
        assert "ConvolutionBackwardBackward0" not in fast_nodes


@pytest.mark.parametrize("create_graph", [False, True])
def test_epsilon_ratio_moves_past_a_max_pool_only_when_the_pool_is_its_only_consumer(
        create_graph, monkeypatch):
    """Where a layer's output reaches nothing but ReLU and max-pool, its ratio is applied
    to the pooled values (a quarter of them); where anything else reads the output, the
    ratio stays at the layer."""
    from shortcutlab.explain import relevance

    slots, make_slot = [], relevance._RatioSlot

    def recorded_slot(*args):
        slots.append(make_slot(*args))
        return slots[-1]

    monkeypatch.setattr(relevance, "_RatioSlot", recorded_slot)
    x = batch(2, seed=7)
    lrp(random_cnn(20, width=3), x, 1, create_graph=create_graph)
    # conv1 and conv3 feed ReLU and max-pool; conv2 (ReLU, conv3) and the two Linear
    # layers do not.
    assert [slot.moved for slot in slots] == [True, False, True, False, False]
    slots.clear()
    lrp(_branching_cnn(), x, 1, create_graph=create_graph)
    assert [slot.moved for slot in slots] == [False, False, False]


@pytest.mark.parametrize("differentiate", [False, True])
@pytest.mark.parametrize("make", [lambda: random_cnn(21, width=3), lambda: tiny_resnet(22)])
def test_a_differentiable_heatmap_frees_its_graph(make, differentiate):
    """Nothing of an lrp call outlives its heatmap: the images it saved are freed once
    the heatmap (and any loss on it) is dropped, whether or not the loss was
    differentiated. A reference cycle through the relevance nodes would keep each call's
    whole graph alive, a training step's worth of memory per TEA step."""
    import gc
    import weakref

    model = make()
    x = batch(2, seed=8)
    images = weakref.ref(x)
    heatmap = lrp(model, x, 1, create_graph=True)
    if differentiate:
        heatmap.abs().sum().backward()
    del x, heatmap
    gc.collect()
    assert images() is None


def test_alpha_beta_refuses_a_differentiable_heatmap():
    model = random_cnn(0, size=12)
    with pytest.raises(ShortcutlabError, match="AlphaBeta rule gives heatmaps that are not"):
        lrp(model, batch(2, size=12), torch.tensor([1, 2]), rule="epsilon-alpha2-beta1",
            create_graph=True)


def test_heatmap_gradient_with_respect_to_the_input():
    model = random_cnn(11, width=3)
    x = batch(2, seed=5).requires_grad_(True)
    target = torch.tensor([2, 7])
    heatmap = lrp(model, x, target, epsilon=0.05, create_graph=True)
    (grad,) = torch.autograd.grad((heatmap ** 2).sum(), x)
    direction = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(2))
    step = 1e-6
    with torch.no_grad():
        plus = (lrp(model, x + step * direction, target, epsilon=0.05) ** 2).sum()
        minus = (lrp(model, x - step * direction, target, epsilon=0.05) ** 2).sum()
    numeric = (plus - minus) / (2 * step)
    torch.testing.assert_close((grad * direction).sum(), numeric, rtol=1e-5, atol=1e-10)


def test_heatmap_without_create_graph_is_detached_and_model_untouched():
    model = random_cnn(12, batch_norm=True)
    model.train()
    x = batch(2)
    relevance = lrp(model, x, 1)
    assert not relevance.requires_grad
    assert model.training and model.bn1.training and model.drop.training
    model.eval()
    torch.testing.assert_close(relevance, lrp(model, x, 1))  # BatchNorm merged as in eval
    assert hooks_left(model) == []
    assert all(p.grad is None for p in model.parameters())


def test_frozen_model_under_no_grad_as_a_teacher():
    model = random_cnn(14)
    x = batch(3)
    expected = lrp(model, x, 2, epsilon=0.05)
    for param in model.parameters():
        param.requires_grad_(False)
    with torch.no_grad():
        relevance = lrp(model, x, 2, epsilon=0.05)
        assert not torch.is_grad_enabled()
    torch.testing.assert_close(relevance, expected)


def test_no_hooks_left_after_errors():
    model = models.create("cnn3", width=4, hidden=8)
    model.train()
    with pytest.raises(RuntimeError):  # wrong image size: fails inside the forward pass
        lrp(model, torch.rand(2, 3, 20, 20), 0)
    assert hooks_left(model) == []
    assert model.training and torch.is_grad_enabled()

    class Reuses(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.fc(x)))

    reuser = Reuses()
    with pytest.raises(ShortcutlabError, match="called twice"):
        lrp(reuser, torch.rand(3, 4), 0)
    assert hooks_left(reuser) == []
    with pytest.raises(ShortcutlabError, match=r"target classes must lie in \[0, 9\]"):
        lrp(model, torch.rand(2, 3, 28, 28), 10)
    assert hooks_left(model) == []


def test_unsupported_layers_are_named():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.GELU(), nn.Linear(8, 3))
    with pytest.raises(ShortcutlabError, match=r"'2' \(GELU\)"):
        lrp(model, torch.rand(2, 3, 2, 2), 0)
    lonely_norm = nn.Sequential(nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 3)).eval()
    with pytest.raises(ShortcutlabError, match="does not directly follow"):
        lrp(lonely_norm, torch.rand(2, 3, 2, 2), 0)
    with pytest.raises(ShortcutlabError, match="unknown LRP rule"):
        lrp(random_mlp(0), batch(1), 0, rule="alpha-beta")
    with pytest.raises(ShortcutlabError, match="per-sample epsilon"):
        lrp(random_mlp(0), batch(2), 0, epsilon=torch.ones(3))


def test_rules_are_data_and_composites_compose():
    model = random_cnn(13)
    x = batch(2)
    composite = Composite(((nn.Conv2d, ZPlus()), (nn.Linear, Epsilon(0.05))))
    torch.testing.assert_close(lrp(model, x, 3, rule=composite),
                               lrp(model, x, 3, rule="epsilon-plus", epsilon=0.05))
    torch.testing.assert_close(lrp(model, x, 3, rule=Epsilon(0.2)),
                               lrp(model, x, 3, epsilon=0.2))


def test_registry_resnet18_conserves_relevance():
    if "resnet18" not in models.list_models():
        pytest.skip("resnet18 is not in the model registry yet")
    torch.manual_seed(0)
    model = models.create("resnet18", width=4).double().eval()
    with torch.no_grad():  # no biases anywhere (BatchNorm shifts included)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.zero_()
                module.running_mean.zero_()
            elif isinstance(module, nn.Linear):
                module.bias.zero_()
    x = batch(2)
    target = torch.tensor([3, 8])
    relevance = lrp(model, x, target, epsilon=1e-12, stabilizer=1e-12)
    logits = model(x).gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), logits, rtol=1e-7, atol=1e-10)
    heatmap = lrp(model, x, target, epsilon=0.05, create_graph=True)
    heatmap.abs().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert hooks_left(model) == []


def test_float32_cnn3_runs_on_a_batch():
    model = models.create("cnn3", width=4, hidden=16).eval()
    x = torch.rand(8, 3, 28, 28)
    relevance = lrp(model, x, torch.arange(8) % 10, epsilon=torch.full((8,), 0.05))
    assert relevance.shape == x.shape and relevance.dtype == torch.float32
    assert torch.isfinite(relevance).all()
