"""Attacks: constraints, honest success claims, torchattacks as the reference, side effects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from shortcutlab.attack import (
    PGD,
    create_attack,
    eval_mode,
    minimal_epsilon,
    region_mask,
)
from shortcutlab.attack.noise import uniform_noise
from shortcutlab.data import load_split
from shortcutlab.errors import ShortcutlabError

TARGET = 3
CONFIDENCE = 0.9


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: immune to oversubscription


@pytest.fixture(scope="module")
def victims(tiny_data):
    """Validation images that are not already of the target class, and their digit masks."""
    split = load_split(tiny_data, "val")
    keep = np.flatnonzero(split.labels != TARGET)
    chosen = split.subset(keep)
    return chosen.image_tensor(), torch.from_numpy(chosen.masks)


def targets(n: int) -> torch.Tensor:
    return torch.full((n,), TARGET, dtype=torch.long)


def fooled(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """A fresh forward pass, image by image, so that no batch effect can help a claim."""
    with torch.no_grad():
        probs = torch.cat([model(image[None]).softmax(dim=1) for image in images])
    return (probs.argmax(dim=1) == TARGET) & (probs[:, TARGET] >= CONFIDENCE)


# -- constraints -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fgsm", "pgd"])
@pytest.mark.parametrize("targeted", [True, False])
def test_linf_attacks_stay_within_eps_and_pixel_range(trained, victims, name, targeted):
    x = victims[0][:24]
    eps = torch.linspace(0.0, 0.3, len(x))  # one epsilon per image, 0 included
    labels = targets(len(x)) if targeted else torch.from_numpy(np.zeros(len(x), np.int64))
    attack = create_attack(name, trained, steps=5, targeted=targeted, seed=1, stop_early=False)
    adversarial = attack(x, labels, eps=eps).adversarial
    assert adversarial.shape == x.shape
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
    excess = (adversarial - x).abs().flatten(1).max(dim=1).values - eps
    assert float(excess.max()) <= 1e-6
    assert torch.equal(adversarial[0], x[0])  # eps = 0 changes nothing
    assert float((adversarial - x).abs().max()) > 0.1  # and it does move where allowed


def test_l2_attack_stays_within_its_radius(trained, victims):
    x = victims[0][:16]
    radius = torch.linspace(0.5, 3.0, len(x))
    result = create_attack("pgd-l2", trained, steps=5)(x, targets(len(x)), eps=radius)
    norms = (result.adversarial - x).flatten(1).norm(dim=1)
    assert float((norms - radius).max()) <= 1e-4
    assert float(norms.max()) > 0.5
    assert float(result.adversarial.min()) >= 0.0 and float(result.adversarial.max()) <= 1.0


@pytest.mark.parametrize("name", ["pgd", "pgd-l2"])
@pytest.mark.parametrize("region", ["background", "digit"])
def test_masked_attacks_change_only_their_region(trained, victims, name, region):
    x, masks = victims[0][:16], victims[1][:16]
    mask = region_mask(masks, region)
    eps = 0.3 if name == "pgd" else 3.0
    adversarial = create_attack(name, trained, eps=eps, steps=5)(
        x, targets(len(x)), mask=mask).adversarial
    changed = (adversarial != x).any(dim=1)  # (N, H, W)
    assert not bool((changed & ~mask).any()), "a pixel outside the mask changed"
    assert bool(changed.any())


# -- honest claims ---------------------------------------------------------------------------
def test_success_claims_hold_on_a_fresh_forward_pass(trained, victims):
    x = victims[0]
    result = create_attack("pgd", trained, eps=0.15, steps=10, confidence=CONFIDENCE,
                           restarts=2)(x, targets(len(x)))
    assert 0 < int(result.success.sum()) < len(x)  # a mix, so both directions are tested
    verified = fooled(trained, result.adversarial)
    assert torch.equal(verified, result.success)
    torch.testing.assert_close(result.prob_of(targets(len(x))),
                               trained(result.adversarial).softmax(dim=1)[:, TARGET].detach())


def test_restarts_only_add_successes(trained, victims):
    x = victims[0]
    settings = {"eps": 0.12, "steps": 6, "confidence": CONFIDENCE, "seed": 5}
    once = create_attack("pgd", trained, **settings)(x, targets(len(x)))
    thrice = create_attack("pgd", trained, restarts=3, **settings)(x, targets(len(x)))
    assert not bool((once.success & ~thrice.success).any())
    failed_once = ~once.success
    assert bool(failed_once.any()), "the settings must leave some images for restarts to try"
    # Restarts keep each image's best attempt, so none ends further from the target.
    goal = targets(len(x))
    assert bool((thrice.prob_of(goal) >= once.prob_of(goal) - 1e-6).all())
    assert bool((thrice.prob_of(goal)[failed_once] > once.prob_of(goal)[failed_once]).any())


def test_random_starts_depend_on_the_image_not_the_batch(victims):
    x = victims[0][:8]
    together = uniform_noise(x, seed=3)
    alone = torch.cat([uniform_noise(image[None], seed=3) for image in x])
    assert torch.equal(together, alone)
    assert not torch.equal(together, uniform_noise(x, seed=4))
    assert not torch.equal(together[0], together[1])
    assert float(together.min()) >= 0.0 and float(together.max()) < 1.0
    assert abs(float(together.mean()) - 0.5) < 0.02


# -- torchattacks as the reference ---------------------------------------------------------
def _torchattacks_pgd(model, x, eps, alpha, steps, random_start, seed):
    import torchattacks

    attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps,
                              random_start=random_start)
    attack.set_mode_targeted_by_label(quiet=True)
    torch.manual_seed(seed)
    return attack(x, targets(len(x)))


class TorchattacksStart(PGD):
    """Our PGD started exactly where torchattacks starts (its draw from the global RNG)."""

    def initial_delta(self, x, eps, restart):
        scalar = float(eps.flatten()[0])
        return torch.empty_like(x).uniform_(-scalar, scalar)


@pytest.mark.parametrize("alpha_ratio", [0.25, 0.6])
@pytest.mark.parametrize("random_start", [False, True])
def test_targeted_pgd_succeeds_at_least_as_often_as_torchattacks(trained, victims, alpha_ratio,
                                                                 random_start):
    x = victims[0]
    eps, steps = 0.1, 10
    alpha = alpha_ratio * eps
    theirs = fooled(trained, _torchattacks_pgd(trained, x, eps, alpha, steps, random_start, 0))
    cls = TorchattacksStart if random_start else PGD
    ours_attack = cls(trained, eps=eps, steps=steps, step_size=alpha,
                      random_start=random_start, confidence=CONFIDENCE)
    torch.manual_seed(0)
    ours = ours_attack(x, targets(len(x)))
    assert torch.equal(fooled(trained, ours.adversarial), ours.success)
    assert 0.0 < float(theirs.float().mean()) < 1.0  # the comparison is not decided in advance
    assert float(ours.success.float().mean()) >= float(theirs.float().mean())


def assert_same_pixels(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Equal up to rounding: we feed the model channels-last tensors, torchattacks does not,
    and a gradient component within rounding of zero may take the other sign."""
    same = (ours - theirs).abs() <= 1e-6
    assert float(same.float().mean()) >= 0.999, f"{float((~same).float().mean()):.2%} differ"


def test_pgd_steps_match_torchattacks_without_early_stopping(trained, victims):
    x = victims[0][:32]
    theirs = _torchattacks_pgd(trained, x, 0.1, 0.02, 7, False, 0)
    ours = create_attack("pgd", trained, eps=0.1, steps=7, step_size=0.02, random_start=False,
                         stop_early=False)(x, targets(len(x)))
    assert_same_pixels(ours.adversarial, theirs)


def test_fgsm_matches_torchattacks(trained, victims):
    import torchattacks

    x = victims[0][:32]
    reference = torchattacks.FGSM(trained, eps=0.07)
    reference.set_mode_targeted_by_label(quiet=True)
    theirs = reference(x, targets(len(x)))
    ours = create_attack("fgsm", trained, eps=0.07, stop_early=False)(x, targets(len(x)))
    assert_same_pixels(ours.adversarial, theirs)


# -- minimal epsilon -------------------------------------------------------------------------
SEARCH = {"steps": 8, "seed": 0}


@pytest.fixture(scope="module")
def searched(trained, victims):
    x = victims[0][:24]
    return x, minimal_epsilon(trained, x, TARGET, CONFIDENCE, eps_budget=0.05, **SEARCH)


def test_minimal_epsilon_sits_on_the_attack_boundary(trained, searched):
    x, result = searched
    eps = result.eps
    found = np.isfinite(eps)
    assert found.sum() >= len(x) // 2
    np.testing.assert_allclose(eps[found] / 1e-3, np.round(eps[found] / 1e-3), atol=1e-6)
    attack = create_attack("pgd", trained, confidence=CONFIDENCE, **SEARCH)
    index = np.flatnonzero(found & (eps > 0))
    labels = targets(len(index))
    at_eps = attack(x[index], labels, eps=torch.tensor(eps[index], dtype=torch.float32))
    below = attack(x[index], labels, eps=torch.tensor(eps[index] - 1e-3, dtype=torch.float32))
    assert bool(at_eps.success.all()), "the attack must succeed at the reported epsilon"
    assert not bool(below.success.any()), "the attack must fail 1e-3 below it"
    assert bool(fooled(trained, result.adversarial[found]).all())
    excess = (result.adversarial - x).abs().flatten(1).max(dim=1).values.numpy() - eps
    assert float(excess[found].max()) <= 1e-6


def test_minimal_epsilon_budget_outcome_matches_a_direct_attack(trained, searched):
    x, result = searched
    direct = create_attack("pgd", trained, eps=0.05, confidence=CONFIDENCE, **SEARCH)(
        x, targets(len(x)))
    assert torch.equal(result.at_budget.success, direct.success)
    # under the bisection's scaling, success at the budget agrees with min_eps <= budget
    agree = (result.eps <= 0.05) == direct.success.numpy()
    assert agree.mean() >= 0.9


def test_batched_search_keeps_each_image_its_own_bracket(trained, searched):
    """Reversing the batch reverses the result: no image borrows another's epsilon or start.

    (Compared with a batch of the same size and the same bisection path: sign-gradient
    steps amplify rounding, and CPU kernels round differently for very small batches.)
    """
    x, result = searched
    reversed_result = minimal_epsilon(trained, x.flip(0), TARGET, CONFIDENCE, eps_budget=0.05,
                                      **SEARCH)
    np.testing.assert_array_equal(reversed_result.eps[::-1], result.eps)
    torch.testing.assert_close(reversed_result.adversarial.flip(0), result.adversarial,
                               atol=0, rtol=0)


def test_minimal_epsilon_with_a_mask_and_an_unreachable_goal(trained, victims):
    x, masks = victims[0][:6], victims[1][:6]
    digit_only = minimal_epsilon(trained, x, TARGET, CONFIDENCE, mask=region_mask(masks, "digit"),
                                 max_eps=0.01, steps=3)
    assert np.all(np.isinf(digit_only.eps) | (digit_only.eps <= 0.01))
    assert np.isinf(digit_only.eps).any()  # 0.01 on the digit alone cannot fool this model
    changed = (digit_only.adversarial != x).any(dim=1)
    assert not bool((changed & ~masks).any())


# -- side effects ----------------------------------------------------------------------------
def test_model_mode_parameters_and_grads_are_left_untouched(victims):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                          nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    model.train()
    model[3].eval()  # a mixed state must come back exactly as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    seen = []
    hook = model[1].register_forward_hook(lambda module, *_: seen.append(module.training))
    x = victims[0][:8]
    create_attack("pgd", model, eps=0.1, steps=3, confidence=0.5)(x, targets(len(x)))
    minimal_epsilon(model, x, TARGET, 0.5, steps=2, max_eps=0.064, precision=0.004)
    hook.remove()
    assert seen and not any(seen), "the attack must run the model in eval mode"
    assert [m.training for m in model.modules()] == modes
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())


def test_eval_mode_restores_on_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
    model.train()
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("boom")
    assert model.training and model[1].training


# -- bad input -------------------------------------------------------------------------------
def test_bad_arguments_are_reported_clearly(trained, victims):
    x = victims[0][:2]
    with pytest.raises(ShortcutlabError, match="confidence"):
        create_attack("pgd", trained, confidence=1.5)
    with pytest.raises(ShortcutlabError, match="confidence"):
        minimal_epsilon(trained, x, TARGET, confidence=0.0)
    with pytest.raises(ShortcutlabError, match="unknown attack"):
        create_attack("cw", trained)
    with pytest.raises(ShortcutlabError, match=r"\[0, 1\]"):
        create_attack("pgd", trained)(x * 255, targets(2))
    with pytest.raises(ShortcutlabError, match="multiple"):
        minimal_epsilon(trained, x, TARGET, eps_budget=0.0505)
    with pytest.raises(ShortcutlabError, match="mask"):
        create_attack("pgd", trained)(x, targets(2), mask=torch.ones(2, 14, 14, dtype=torch.bool))
