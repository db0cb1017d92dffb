"""ReBias: its HSIC is Song et al.'s U-statistic, the min-max terms reach only their own
network, it trains both networks and resumes exactly."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from shortcutlab import models
from shortcutlab.errors import ShortcutlabError
from shortcutlab.intervene.hparams import resolve_hparams
from shortcutlab.intervene.methods.rebias import (
    ReBias,
    last_linear_input,
    rbf_kernel,
    unbiased_hsic,
)
from shortcutlab.train.algorithm import TrainContext, make_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")


def build(tensors, **overrides) -> ReBias:
    torch.manual_seed(0)
    algorithm = ReBias(models.create("cnn3", width=4, hidden=16),
                       resolve_hparams("rebias", overrides))
    algorithm.setup(TrainContext(num_train=len(tensors["labels"]), total_steps=10,
                                 device=torch.device("cpu"), train=tensors,
                                 generator=torch.Generator().manual_seed(0)))
    return algorithm


def u_statistic(k: torch.Tensor, l_: torch.Tensor) -> float:
    """HSIC_1 as the mean over ordered 4-tuples of distinct indices of
    k_st l_st + k_st l_uv - 2 k_st l_su (Song et al. 2012, Theorem 2)."""
    n = len(k)
    terms = [k[s, t] * l_[s, t] + k[s, t] * l_[u, v] - 2 * k[s, t] * l_[s, u]
             for s, t, u, v in itertools.permutations(range(n), 4)]
    return float(torch.stack(terms).mean())


def test_unbiased_hsic_is_the_u_statistic():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    y = x[:, :2] ** 2 + 0.1 * torch.randn(7, 2, generator=generator, dtype=torch.float64)
    for radius in (1.0, 2.5, 0.0):
        k, l_ = rbf_kernel(x, radius), rbf_kernel(y, radius)
        assert float(unbiased_hsic(k, l_)) == pytest.approx(u_statistic(k, l_), abs=1e-12)


def test_hsic_tells_dependence_from_independence():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(256, 4, generator=generator)
    independent = torch.randn(256, 4, generator=generator)
    dependent = x + 0.1 * torch.randn(256, 4, generator=generator)
    kx = rbf_kernel(x, 0.0)
    unrelated = abs(float(unbiased_hsic(kx, rbf_kernel(independent, 0.0))))
    assert float(unbiased_hsic(kx, rbf_kernel(dependent, 0.0))) > 20 * unrelated
    with pytest.raises(ShortcutlabError, match="at least 4 images"):
        unbiased_hsic(kx[:3, :3], kx[:3, :3])


def test_the_feature_hook_is_removed_even_after_an_error():
    model = models.create("cnn3", width=4, hidden=16)
    with pytest.raises(RuntimeError), last_linear_input(model) as store:
        model(torch.rand(2, 3, 28, 28))
        assert store["features"].shape == (2, 16)
        raise RuntimeError("inside the block")
    assert all(not m._forward_pre_hooks for m in model.modules())
    no_linear = nn.Sequential(nn.Conv2d(3, 2, 1))
    with pytest.raises(ShortcutlabError, match="ending in a Linear"), last_linear_input(no_linear):
        pass


def test_without_the_independence_term_the_model_steps_as_erm(train_tensors, batch_of):
    # The color-only network's -HSIC must not reach the model: with lambda_f = 0 the
    # model takes exactly the step plain cross-entropy gives it.
    algorithm = build(train_tensors, independence_weight=1e-12, dependence_weight=5.0)
    algorithm.hparams["independence_weight"] = 0.0
    reference = copy.deepcopy(algorithm.model)
    optimizer = make_optimizer(list(reference.parameters()), algorithm.hparams)
    batch = batch_of(train_tensors, 32)
    algorithm.update(batch, 0)
    optimizer.zero_grad()
    F.cross_entropy(reference(batch.images), batch.labels).backward()
    optimizer.step()
    for (name, ours), theirs in zip(algorithm.model.state_dict().items(),
                                    reference.state_dict().values(), strict=True):
        assert torch.allclose(ours, theirs, atol=1e-7), name


def test_the_independence_term_lowers_the_dependence(train_tensors, batch_of):
    batch = batch_of(train_tensors, 64)

    def hsic_after(weight: float) -> float:
        algorithm = build(train_tensors, independence_weight=weight, dependence_weight=1.0,
                          kernel_radius=0.0, lr=3e-3)
        stats = [algorithm.update(batch, step) for step in range(30)]
        assert all(torch.isfinite(torch.tensor(s["loss"])) for s in stats)
        return stats[-1]["hsic"]

    assert hsic_after(10.0) < 0.5 * hsic_after(1e-6)


def test_one_step_trains_both_networks_and_resumes_exactly(train_tensors, batch_of,
                                                           assert_resumes_exactly):
    first = build(train_tensors)
    batch = batch_of(train_tensors, 32)
    model = copy.deepcopy(first.model.state_dict())
    branch = copy.deepcopy(first.bias_branch.state_dict())
    stats = first.update(batch, 0)
    assert {"loss", "ce", "bias_ce", "hsic"} <= set(stats)
    assert any(not torch.equal(v, model[k]) for k, v in first.model.state_dict().items())
    assert any(not torch.equal(v, branch[k]) for k, v in first.bias_branch.state_dict().items())
    assert_resumes_exactly(lambda: build(train_tensors), batch, ("model", "bias_branch"))
