"""Auto-PGD: its constraints, its schedule, and torchattacks' APGD as the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from shortcutlab.attack import create_attack, region_mask
from shortcutlab.attack.apgd import checkpoints, dlr_loss
from shortcutlab.data import load_split
from shortcutlab.errors import ShortcutlabError

TARGET = 3
APGD_NAMES = ["apgd-ce", "apgd-dlr"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def victims(tiny_data, trained):
    """Validation images the model classifies correctly, none of the target class (the
    reference attacks only images it classifies correctly), with their labels and masks."""
    split = load_split(tiny_data, "val")
    images = split.image_tensor()
    with torch.no_grad():
        predicted = trained(images).argmax(1).numpy()
    keep = np.flatnonzero((split.labels != TARGET) & (predicted == split.labels))
    chosen = split.subset(keep)
    return (chosen.image_tensor(), torch.from_numpy(chosen.labels).long(),
            torch.from_numpy(chosen.masks))


def targets(n: int) -> torch.Tensor:
    return torch.full((n,), TARGET, dtype=torch.long)


def predictions(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(image[None]).argmax(1) for image in images])


def test_the_checkpoints_are_the_papers():
    # Croce & Hein 2020: p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(5) == [1, 2, 3, 4]


def test_dlr_is_invariant_to_shifting_and_scaling_the_logits():
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 5, 7, 9, 1])
    for targeted in (True, False):
        loss = dlr_loss(logits, labels, targeted)
        torch.testing.assert_close(dlr_loss(3.0 * logits + 2.0, labels, targeted), loss)
    # targeted: negative exactly when the target is the top class
    loss = dlr_loss(logits, labels, True)
    assert torch.equal(loss < 0, logits.argmax(1) == labels)
    with pytest.raises(ShortcutlabError, match="at least 4 classes"):
        dlr_loss(logits[:, :3], labels.clamp(max=2), True)


@pytest.mark.parametrize("name", APGD_NAMES)
def test_apgd_stays_within_eps_pixel_range_and_mask(trained, victims, name):
    x, _, masks = (part[:16] for part in victims)
    eps = torch.linspace(0.0, 0.3, len(x))
    attack = create_attack(name, trained, steps=12, seed=1, stop_early=False)
    adversarial = attack(x, targets(len(x)), eps=eps).adversarial
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
    excess = (adversarial - x).abs().flatten(1).max(dim=1).values - eps
    assert float(excess.max()) <= 1e-6
    assert torch.equal(adversarial[0], x[0])
    assert float((adversarial - x).abs().max()) > 0.1
    mask = region_mask(masks, "background")
    masked = create_attack(name, trained, eps=0.3, steps=12)(x, targets(len(x)), mask=mask)
    changed = (masked.adversarial != x).any(dim=1)
    assert not bool((changed & ~mask).any()) and bool(changed.any())
    assert torch.equal(predictions(trained, masked.adversarial) == TARGET, masked.success)


class RunnerUpIsOurTarget:
    """torchattacks' APGDT attacks the model's runner-up classes; this makes the first
    ranking of each run put our target second, so its loop attacks our target (the loss
    and the steps are its own)."""

    def __init__(self, reference) -> None:
        self.reference = reference
        real_get_logits, real_run = reference.get_logits, reference.attack_single_run
        state = {"labels": None}

        def get_logits(inputs, *args, **kwargs):
            if state["labels"] is None:
                return real_get_logits(inputs, *args, **kwargs)
            labels, state["labels"] = state["labels"], None
            ranking = torch.zeros(len(inputs), 10)
            ranking[:, TARGET] = 1.0
            ranking[torch.arange(len(inputs)), labels] = 2.0
            return ranking

        def attack_single_run(x, y):
            state["labels"] = y
            return real_run(x, y)

        reference.get_logits, reference.attack_single_run = get_logits, attack_single_run

    def __call__(self, x, labels):
        return self.reference(x, labels)


@pytest.mark.parametrize("eps", [0.04, 0.07])
def test_targeted_apgd_dlr_succeeds_at_least_as_often_as_torchattacks(trained, victims, eps):
    import torchattacks

    x, labels, _ = victims
    steps = 20
    reference = RunnerUpIsOurTarget(torchattacks.APGDT(
        trained, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=0, n_classes=2))
    theirs = float((predictions(trained, reference(x, labels)) == TARGET).float().mean())
    ours = create_attack("apgd-dlr", trained, eps=eps, steps=steps)(x, targets(len(x)))
    assert torch.equal(predictions(trained, ours.adversarial) == TARGET, ours.success)
    assert 0.0 < theirs < 1.0  # the comparison is not decided in advance
    assert float(ours.success.float().mean()) >= theirs - 0.01


def test_untargeted_apgd_ce_succeeds_at_least_as_often_as_torchattacks(trained, victims):
    import torchattacks

    x, labels, _ = victims
    eps, steps = 0.03, 20
    reference = torchattacks.APGD(trained, norm="Linf", eps=eps, steps=steps, n_restarts=1,
                                  seed=0, loss="ce")
    theirs = float((predictions(trained, reference(x, labels)) != labels).float().mean())
    ours = create_attack("apgd-ce", trained, eps=eps, steps=steps, targeted=False)(x, labels)
    assert torch.equal(predictions(trained, ours.adversarial) != labels, ours.success)
    assert 0.0 < theirs < 1.0
    assert float(ours.success.float().mean()) >= theirs - 0.01


def test_apgd_dlr_does_not_notice_a_saturated_softmax(trained, victims):
    """A confident model's cross-entropy is flat: scaling the logits by 50 leaves the
    predictions as they are but can starve a cross-entropy gradient of signal; DLR is
    invariant to the scale, so the attack succeeds as often."""
    x, _, _ = victims

    class Confident(nn.Module):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return 50.0 * self.model(images)

    confident = Confident(trained)
    eps, steps = 0.07, 20
    plain = create_attack("apgd-dlr", trained, eps=eps, steps=steps)(x, targets(len(x)))
    scaled = create_attack("apgd-dlr", confident, eps=eps, steps=steps)(x, targets(len(x)))
    assert abs(float(scaled.success.float().mean()) - float(plain.success.float().mean())) <= 0.05


def test_settings_and_bad_rho(trained):
    attack = create_attack("apgd-dlr", trained, steps=10)
    assert attack.settings()["loss"] == "dlr" and attack.settings()["rho"] == 0.75
    with pytest.raises(ShortcutlabError, match="rho"):
        create_attack("apgd-ce", trained, rho=1.5)


# -- the worst-case ensemble -----------------------------------------------------------------
ENSEMBLE_SEARCH = {"steps": 8, "seed": 0, "max_eps": 0.5, "precision": 0.005,
                   "eps_budget": 0.05}


def test_the_ensemble_takes_each_images_smallest_member(trained, victims):
    from shortcutlab.attack import minimal_epsilon
    from shortcutlab.attack.minimal import ENSEMBLE, ensemble_minimal_epsilon, fmn_on_grid

    x = victims[0][:24]
    ensemble = ensemble_minimal_epsilon(trained, x, TARGET, 0.9, **ENSEMBLE_SEARCH)
    members = np.stack([ensemble.by_attack[name] for name in ENSEMBLE])
    np.testing.assert_array_equal(ensemble.eps, members.min(axis=0))
    # never above the single PGD, searched on its own with the same settings
    pgd = minimal_epsilon(trained, x, TARGET, 0.9, attack="pgd", **ENSEMBLE_SEARCH)
    assert bool((ensemble.eps <= pgd.eps).all())
    for index, name in enumerate(ensemble.found_by):
        if name is None:
            assert math.isinf(ensemble.eps[index])
        else:
            assert ensemble.by_attack[name][index] == ensemble.eps[index]
    # the image returned for each found epsilon fools the model and stays within it
    found = np.isfinite(ensemble.eps)
    assert found.any()
    with torch.no_grad():
        probs = trained(ensemble.adversarial).softmax(1)
    fooled = (probs.argmax(1) == TARGET) & (probs[:, TARGET] >= 0.9)
    assert bool(fooled[torch.from_numpy(found)].all())
    excess = (ensemble.adversarial - x).abs().flatten(1).max(1).values.numpy() - ensemble.eps
    assert float(excess[found].max()) <= 1e-6
    # at the budget: fooled by any member
    any_member = np.zeros(len(x), dtype=bool)
    for name in ENSEMBLE:
        if name == "fmn":
            member = fmn_on_grid(trained, x, TARGET, 0.9, **ENSEMBLE_SEARCH)
        else:
            member = minimal_epsilon(trained, x, TARGET, 0.9, attack=name, **ENSEMBLE_SEARCH)
        any_member |= member.at_budget.success.numpy()
    np.testing.assert_array_equal(ensemble.at_budget.success.numpy(), any_member)


def test_a_search_below_known_values_only_asks_whether_it_beats_them(trained, victims):
    from shortcutlab.attack import minimal_epsilon

    x = victims[0][:24]
    settings = {**ENSEMBLE_SEARCH, "attack": "apgd-ce"}
    full = minimal_epsilon(trained, x, TARGET, 0.9, **settings)
    assert np.isfinite(full.eps).sum() >= len(x) // 2
    # no cap: the very same search
    uncapped = minimal_epsilon(trained, x, TARGET, 0.9, below=np.full(len(x), np.inf),
                               **settings)
    np.testing.assert_array_equal(uncapped.eps, full.eps)
    # capped at its own values: the probe one step below fails as it did in the full
    # search, so every value comes back unchanged after two calls per image
    again = minimal_epsilon(trained, x, TARGET, 0.9, below=full.eps, **settings)
    np.testing.assert_array_equal(again.eps, full.eps)
    assert again.rounds < full.rounds
    np.testing.assert_array_equal(again.at_budget.success.numpy(),
                                  full.at_budget.success.numpy())
    # capped above its values: never above the cap, and what it finds below is real
    cap = np.where(np.isfinite(full.eps), np.minimum(full.eps + 0.05, 0.5), 0.3)
    searched = minimal_epsilon(trained, x, TARGET, 0.9, below=cap, **settings)
    assert bool((searched.eps <= cap + 1e-12).all())
    beaten = torch.from_numpy(searched.eps < cap - 1e-12)
    assert bool(beaten.any())
    with torch.no_grad():
        probs = trained(searched.adversarial[beaten]).softmax(1)
    assert bool((probs[:, TARGET] >= 0.9).all())
    with pytest.raises(ShortcutlabError, match="one epsilon per image"):
        minimal_epsilon(trained, x, TARGET, 0.9, below=full.eps[:3], **settings)


def run_attack_cli(tiny_data, trained, tmp_path, *args: str) -> tuple:
    """``shortcutlab attack`` on the trained victim's test_easy images with ``args``; the
    output directory and its attack.json."""
    import json

    from shortcutlab import models
    from shortcutlab.cli import main

    models.save(trained, tmp_path / "model")
    out = tmp_path / "out"
    assert main(["attack", str(tmp_path / "model"), "--data", str(tiny_data), "--split",
                 "test_easy", *args, "--out", str(out)]) == 0
    return out, json.loads((out / "attack.json").read_text())


def test_cli_runs_the_ensemble_and_reports_each_member(tiny_data, trained, tmp_path):
    out, summary = run_attack_cli(tiny_data, trained, tmp_path, "--attack", "ensemble",
                                  "--steps", "4", "--limit", "6", "--regions", "all",
                                  "--precision", "0.01", "--eps", "0.05")
    assert (out / "min_eps_by_attack.png").is_file()
    assert "min_eps_by_attack.png" in summary["figures"]
    assert summary["attack"]["members"] == ["pgd", "fmn", "apgd-ce", "apgd-dlr"]
    model = summary["models"][0]
    by_attack = model["by_attack"]
    assert set(by_attack) == {"pgd", "apgd-ce", "apgd-dlr", "fmn"}
    assert sum(row["smallest"] for row in by_attack.values()) == model["min_eps"]["n_found"]
    for row in by_attack.values():
        if row["median"] is not None and model["min_eps"]["median"] is not None:
            assert row["median"] >= model["min_eps"]["median"]


# -- the color-only attack -------------------------------------------------------------------
def test_the_color_shift_moves_the_background_by_one_rgb_shift(trained, victims):
    from shortcutlab.attack import minimal_epsilon

    x, _, masks = victims
    background = region_mask(masks, "background")
    result = create_attack("color-shift", trained, eps=0.3, steps=10)(
        x, targets(len(x)), mask=background)
    delta = result.adversarial - x
    assert not bool((delta.abs().sum(1) > 0)[~background].any())  # the digit is untouched
    for image in range(len(x)):
        inside = (x[image] + delta[image] > 1e-6) & (x[image] + delta[image] < 1 - 1e-6)
        for channel in range(3):
            moved = delta[image, channel][background[image] & inside[channel]]
            if moved.numel():  # one shift per channel wherever the pixel range allows
                assert float(moved.max() - moved.min()) <= 1e-5
    assert float(delta.abs().max()) <= 0.3 + 1e-6
    assert torch.equal(predictions(trained, result.adversarial) == TARGET, result.success)
    searched = minimal_epsilon(trained, x[:16], TARGET, None, attack="color-shift",
                               mask=background[:16], steps=10, max_eps=1.0, precision=0.01)
    assert searched.found.any()


# -- one perturbation for all, and the gradient-free check -----------------------------------
def test_the_universal_perturbation_is_one_background_pattern(trained, victims):
    from shortcutlab.attack.universal import universal_perturbation

    x, _, masks = victims
    result = universal_perturbation(trained, x, masks, TARGET, 0.2, confidence=None, steps=20)
    assert result.delta.shape == x.shape[1:]
    assert float(result.delta.abs().max()) <= 0.2 + 1e-6
    assert result.n_fit + result.n_heldout == len(x)
    perturbed = (x + (~masks).unsqueeze(1) * result.delta).clamp(0, 1)
    said = predictions(trained, perturbed) == TARGET
    assert float(said[result.n_fit:].float().mean()) == pytest.approx(result.heldout_rate)
    assert float(said[:result.n_fit].float().mean()) == pytest.approx(result.fit_rate)
    assert result.fit_rate > 0.0


def test_square_uses_no_gradient_and_its_claims_hold(trained, victims):
    from shortcutlab.attack.universal import square_attack

    x, _, _ = victims

    class OutputsOnly(nn.Module):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            assert not torch.is_grad_enabled()  # a score-based attack asks for no graph
            return self.model(images)

    success, adversarial = square_attack(OutputsOnly(trained), x, TARGET, 0.15,
                                         confidence=None, queries=200)
    assert bool(success.any())
    assert torch.equal(predictions(trained, adversarial) == TARGET, success)
    assert float((adversarial - x).abs().max()) <= 0.15 + 1e-6


def test_cli_writes_the_universal_perturbation_and_the_masking_checks(tiny_data, trained,
                                                                      tmp_path):
    out, summary = run_attack_cli(tiny_data, trained, tmp_path, "--steps", "4", "--limit", "8",
                                  "--regions", "all", "--precision", "0.01", "--eps", "0.1",
                                  "--universal", "--checks", "--square-queries", "50")
    model = summary["models"][0]
    checks = model["masking_checks"]
    assert set(checks["success_by_eps"]) == {"0.05", "0.1", "0.2"}
    assert isinstance(checks["flags"], list) and checks["square"]["queries"] == 50
    assert 0 <= checks["square"]["black_box_only"] <= 8
    assert 0.0 <= model["universal"]["heldout_rate"] <= 1.0
    assert (out / "universal.png").is_file() and "universal.png" in summary["figures"]


def test_cli_runs_fmn_alone_and_the_color_shift_search(tiny_data, trained, tmp_path):
    _, summary = run_attack_cli(tiny_data, trained, tmp_path, "--attack", "fmn",
                                "--masked-attack", "pgd", "--steps", "4", "--limit", "6",
                                "--regions", "all,background", "--precision", "0.01",
                                "--color-shift")
    assert summary["attack"]["name"] == "fmn"
    assert summary["attack"]["by_region"] == {"all": "fmn", "background": "pgd"}
    model = summary["models"][0]
    assert model["min_eps"]["n_found"] >= 1
    shift = model["color_shift"]
    assert shift["region"] == "background" and shift["n"] == 6
    assert 0.0 <= shift["success_rate_at_eps"] <= 1.0
    # a uniform recoloring is one of the perturbations PGD may make on the background, so
    # PGD needs at most as much, up to the grid and the attacks' imperfection
    pgd_median = model["masked"]["background"]["min_eps"]["median"]
    shift_median = shift["min_eps"]["median"]
    if pgd_median is not None and shift_median is not None:
        assert pgd_median <= shift_median + 0.05
