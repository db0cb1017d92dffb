"""FMN, the fast minimum-norm attack: honest norms, and Foolbox's FMN as the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shortcutlab.attack import minimal_epsilon, region_mask
from shortcutlab.attack.fmn import fmn, margin
from shortcutlab.attack.minimal import FMN_STEPS
from shortcutlab.data import load_split
from shortcutlab.errors import ShortcutlabError

TARGET = 3

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def victims(tiny_data):
    split = load_split(tiny_data, "val")
    chosen = split.subset(np.flatnonzero(split.labels != TARGET)[:48])
    return chosen.image_tensor(), torch.from_numpy(chosen.masks)


def reached(model, images, confidence):
    with torch.no_grad():
        return margin(model(images), torch.full((len(images),), TARGET), confidence) >= 0


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("confidence", [None, 0.9])
def test_every_norm_found_is_an_adversarial_of_that_norm(trained, victims, norm, confidence):
    x = victims[0]
    result = fmn(trained, x, TARGET, confidence, norm=norm, steps=40,
                 max_step=1.0 if norm == "linf" else 5.0)
    found = torch.from_numpy(result.found)
    assert int(found.sum()) > 0
    assert bool(reached(trained, result.adversarial, confidence)[found].all())
    delta = (result.adversarial - x).flatten(1)
    sizes = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
    assert np.all(sizes[found].numpy() <= result.norms[result.found] + 1e-6)
    assert torch.equal(result.adversarial[~found], x[~found])  # no claim, no change
    assert float(result.adversarial.min()) >= 0.0 and float(result.adversarial.max()) <= 1.0


def test_a_masked_search_changes_only_its_region(trained, victims):
    x, masks = victims
    mask = region_mask(masks, "background")
    result = fmn(trained, x, TARGET, None, steps=30, mask=mask)
    changed = (result.adversarial != x).any(dim=1)
    assert not bool((changed & ~mask).any()) and bool(changed.any())


def test_linf_norms_match_foolbox(trained, victims):
    import foolbox

    x = victims[0]
    steps = 100
    ours = fmn(trained, x, TARGET, None, steps=steps)
    model = foolbox.PyTorchModel(trained.eval(), bounds=(0, 1))
    criterion = foolbox.criteria.TargetedMisclassification(torch.full((len(x),), TARGET))
    theirs = foolbox.attacks.LInfFMNAttack(steps=steps).run(model, x, criterion)
    their_ok = reached(trained, theirs, None).numpy()
    their_norms = np.where(their_ok, (theirs - x).abs().flatten(1).max(1).values.numpy(),
                           np.inf)
    assert ours.found.mean() >= their_ok.mean() - 0.02
    both = ours.found & their_ok
    assert both.sum() >= len(x) // 2
    ratio = np.median(ours.norms[both]) / np.median(their_norms[both])
    assert 0.95 <= ratio <= 1.05, f"median norm ours / Foolbox = {ratio:.3f}"


def test_fmn_is_not_above_the_bisections_upper_bound_by_more_than_its_grid(trained, victims):
    x = victims[0]
    precision = 0.005
    bisected = minimal_epsilon(trained, x, TARGET, None, steps=20, seed=0, max_eps=0.5,
                               precision=precision)
    searched = fmn(trained, x, TARGET, None, steps=FMN_STEPS)
    both = bisected.found & searched.found
    assert both.sum() >= len(x) // 2
    assert searched.found.sum() >= bisected.found.sum()
    excess = searched.norms[both] - bisected.eps[both]
    assert float(excess.max()) <= precision, f"FMN above the bisection by {excess.max():.4f}"


def test_bad_arguments_are_refused(trained, victims):
    x = victims[0][:2]
    for kwargs, message in [({"norm": "l1"}, "norm"), ({"steps": 0}, "steps"),
                            ({"gamma": 1.5}, "gamma"), ({"max_step": 0}, "max_step")]:
        with pytest.raises(ShortcutlabError, match=message):
            fmn(trained, x, TARGET, None, **kwargs)
