"""The smallest epsilon that fools the model, for every image of a batch at once.

Definition. Epsilons live on the grid ``k * precision`` (k = 0, 1, ..., max_eps /
precision). For one image, ``minimal_epsilon`` returns the grid value ``eps`` such that
*the attack with these settings succeeds at ``eps`` and fails at ``eps - precision``*
(at ``eps = 0``: the clean image already reaches the goal). "The attack with these
settings" is ``create_attack(attack, model, confidence=confidence, **attack_kwargs)``
called on the image with that epsilon: the same steps, the same step size relative to
epsilon, the same seed and thus the same random start direction, scaled with epsilon.
Both endpoints were evaluated; an image for which the attack fails even at ``max_eps``
gets ``inf``.

Success of a gradient attack is not guaranteed to be monotone in epsilon, so the value
found is a boundary point of the attack's success, not a certificate that no smaller
perturbation exists (an upper bound on the true minimal epsilon). Making the attack at
eps the same attack scaled (fixed seed, step size proportional to eps, early stopping
that keeps the first success) keeps violations rare: for two cnn3 trained on real Colored
MNIST, 24 of 24 images per model had monotone success over a 0.01 grid from 0.01 to 0.5
with 20 steps, and 2 of 91 failed at one of the ten 0.001 steps just above the value
found; a width-4 cnn3 trained on synthetic digits with 8 steps had 2 of 12 images
non-monotone on the 0.01 grid.
Where success is not monotone, the boundary found depends on the points tested, so
giving ``eps_budget`` (which becomes the first point tested) can move it.

Reproducibility: the same inputs, settings and batch give bit-identical results. Very
small batches may round differently in some CPU kernels, and sign-gradient steps
amplify such last-bit differences, so an image searched alone can occasionally end on
another boundary point than in a batch.

Search. An integer bisection on the grid, vectorized: each image carries its own
bracket ``[lo, hi]`` (fails at ``lo``, succeeds at ``hi``) and every round attacks all
unresolved images in one batch, each at its own midpoint. Since random starts depend
only on the image (see :mod:`shortcutlab.attack.noise`), the result for an image does
not depend on the rest of the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from shortcutlab.attack.attacks import create_attack
from shortcutlab.attack.base import AttackResult, eval_mode, pixel_mask
from shortcutlab.errors import ShortcutlabError
from shortcutlab.models import batched_forward
from shortcutlab.progress import progress


@dataclass
class MinimalEpsilon:
    """The result of :func:`minimal_epsilon` for N images."""

    eps: np.ndarray  # float64 (N,): grid value, inf where the attack fails even at max_eps
    adversarial: Tensor  # (N, C, H, W): the successful image at ``eps`` (last try if inf)
    probs: Tensor  # (N, num_classes) at ``adversarial``
    precision: float
    max_eps: float
    rounds: int  # batched attack calls made
    at_budget: AttackResult | None = None  # the attack at ``eps_budget`` (when given)
    # An ensemble's (see :func:`ensemble_minimal_epsilon`): each attack's own minimal
    # epsilons, and per image the attack that found the smallest (None where none did).
    by_attack: dict[str, np.ndarray] | None = None
    found_by: list[str | None] | None = None
    # the members that searched only below the best so far (their values are capped by it)
    capped: tuple[str, ...] = ()

    @property
    def found(self) -> np.ndarray:
        return np.isfinite(self.eps)


def _grid_steps(value: float, precision: float, name: str) -> int:
    steps = round(value / precision)
    if not math.isclose(steps * precision, value, rel_tol=0.0, abs_tol=precision * 1e-6):
        raise ShortcutlabError(f"{name}={value} is not a multiple of the precision {precision}")
    return steps


def minimal_epsilon(model: nn.Module, x: Tensor, target: Tensor | int,
                    confidence: float | None = 0.9, *, attack: str = "pgd",
                    mask: Tensor | None = None, max_eps: float = 1.0,
                    precision: float = 1e-3, eps_budget: float | None = None,
                    batch_size: int | None = None, desc: str | None = None,
                    below: np.ndarray | None = None, **attack_kwargs: Any) -> MinimalEpsilon:
    """The smallest grid epsilon at which the targeted ``attack`` reaches ``confidence``.

    Args:
        model: maps images in [0, 1] to logits (left untouched: mode, weights, grads).
        x: images (N, C, H, W) in [0, 1].
        target: the class to reach, one for all or one per image.
        confidence: the target's softmax probability to reach (None: being the argmax).
        attack: a registered attack name; ``attack_kwargs`` go to its constructor
            (``steps``, ``rel_step_size``, ``restarts``, ``seed``, ...). Keep the step size
            relative (the default): a fixed step size breaks the scaling that makes
            success nearly monotone in epsilon.
        mask: (N, H, W), perturb only where nonzero.
        max_eps: the top of the search range.
        precision: the grid spacing (1e-3 by default).
        eps_budget: when given, evaluated first; its result is returned as
            ``at_budget`` (and the search continues from it, so it costs nothing extra).
        batch_size: images per batched attack call (None: all at once).
        desc: label of the progress bar.
        below: (N,) grid epsilons already known to succeed by other means (inf: none).
            The search then looks only below them: an image whose attack fails one grid
            step below its value is not searched further and gets that value back. An
            ensemble uses it to ask a member only whether it beats the best so far.

    See the module docstring for the exact definition of the value returned.
    """
    if x.dim() != 4 or x.shape[0] == 0:
        raise ShortcutlabError(f"expected a non-empty batch of images (N, C, H, W), "
                               f"got shape {tuple(x.shape)}")
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise ShortcutlabError(f"confidence must be in (0, 1), got {confidence}")
    if precision <= 0 or max_eps <= 0:
        raise ShortcutlabError("precision and max_eps must be positive")
    n = x.shape[0]
    top = _grid_steps(max_eps, precision, "max_eps")
    target_t = torch.as_tensor(target, device=x.device, dtype=torch.long).expand(n).contiguous()
    mask_t = pixel_mask(mask, x)
    atk = create_attack(attack, model, confidence=confidence, targeted=True, **attack_kwargs)
    budget_k = None
    if eps_budget is not None:
        budget_k = _grid_steps(eps_budget, precision, "eps_budget")
        if not 0 < budget_k <= top:
            raise ShortcutlabError(f"eps_budget must be in (0, max_eps={max_eps}], "
                                   f"got {eps_budget}")

    def evaluate(index: Tensor, k: Tensor) -> AttackResult:
        """Attack images ``index`` at grid points ``k``, in chunks of ``batch_size``."""
        chunk = batch_size or len(index)
        parts = []
        for start in range(0, len(index), chunk):
            sub = index[start:start + chunk]
            eps = k[start:start + chunk].to(torch.float64) * precision
            parts.append(atk(x[sub], target_t[sub], eps=eps.to(x.dtype),
                             mask=None if mask_t is None else mask_t[sub]))
        return AttackResult(torch.cat([p.adversarial for p in parts]),
                            torch.cat([p.success for p in parts]),
                            torch.cat([p.probs for p in parts]))

    # Each image's bracket: the attack fails at lo (after the clean check) and succeeds at
    # hi once ``tested``; a capped image's hi is its ``below`` value, claimed elsewhere.
    lo = torch.zeros(n, dtype=torch.long, device=x.device)
    hi = torch.full((n,), top, dtype=torch.long, device=x.device)
    capped = torch.zeros(n, dtype=torch.bool, device=x.device)
    if below is not None:
        cap = _cap_steps(below, n, precision, top)
        capped = torch.from_numpy(cap <= top).to(x.device)
        hi = torch.minimum(hi, torch.from_numpy(np.minimum(cap, top)).to(x.device))
    tested = torch.zeros(n, dtype=torch.bool, device=x.device)
    adversarial = x.detach().clone()
    with eval_mode(model):
        logits = batched_forward(model, x, batch_size or n)
    clean, _ = atk.goal_reached(logits, target_t)
    probs = logits.softmax(dim=1)
    hi[clean] = 0
    tested[clean] = True

    def settle(todo: Tensor, mid: Tensor, result: AttackResult) -> None:
        won = result.success
        # a success at or below hi lowers it; one above a capped hi says nothing new
        improve = won & (mid <= hi[todo])
        hi[todo[improve]] = mid[improve]
        tested[todo[improve]] = True
        adversarial[todo[improve]] = result.adversarial[improve]
        probs[todo[improve]] = result.probs[improve]
        # a failure inside the bracket raises lo; a failure at an untested hi ends the
        # search there (at the top: unreachable; at a cap: the member does not beat it)
        lost = ~won & (mid > lo[todo]) & ((mid < hi[todo])
                                          | ((mid == hi[todo]) & ~tested[todo]))
        lo[todo[lost]] = mid[lost]
        final = lost & (mid == top)
        adversarial[todo[final]] = result.adversarial[final]
        probs[todo[final]] = result.probs[final]

    at_budget = None
    rounds = 0
    bar = progress(total=2 + math.ceil(math.log2(max(top, 2))),
                   desc=desc or "minimal epsilon", unit="round")

    def attack_round(todo: Tensor, mid: Tensor) -> AttackResult | None:
        nonlocal rounds
        rounds += 1
        bar.update(1)
        if not todo.numel():
            return None
        result = evaluate(todo, mid)
        settle(todo, mid, result)
        return result

    try:
        if budget_k is not None:
            todo = torch.nonzero(~clean).squeeze(1)
            result = attack_round(todo, torch.full_like(todo, budget_k))
            at_budget = _budget_result(x, probs, clean, todo, result)
        probe = torch.nonzero(capped & ~tested & (hi - lo > 1)).squeeze(1)
        if probe.numel():  # does the attack beat the cap at all? (one step below it)
            attack_round(probe, hi[probe] - 1)
        while True:
            todo = torch.nonzero(hi - lo > 1).squeeze(1)
            if todo.numel() == 0:
                break
            attack_round(todo, (lo[todo] + hi[todo]) // 2)
        untested = torch.nonzero(~tested & ~capped & (lo < top)).squeeze(1)
        if untested.numel():  # every midpoint failed: the top itself was never tried
            attack_round(untested, hi[untested])
    finally:
        bar.close()
    eps = np.round(hi.cpu().numpy().astype(np.float64) * precision, 12)
    eps[~(tested | capped).cpu().numpy()] = np.inf
    return MinimalEpsilon(eps, adversarial, probs, precision, max_eps, rounds, at_budget)


def _cap_steps(below: np.ndarray, n: int, precision: float, top: int) -> np.ndarray:
    """``below`` in grid steps (``top + 1`` where it is inf or above the range)."""
    below = np.asarray(below, dtype=np.float64)
    if below.shape != (n,):
        raise ShortcutlabError(f"below must hold one epsilon per image ({n}), "
                               f"got shape {below.shape}")
    if np.any(below < 0) or np.any(np.isnan(below)):
        raise ShortcutlabError("below must hold epsilons >= 0 (inf: no cap)")
    steps = np.full(n, top + 1, dtype=np.int64)
    finite = np.isfinite(below)
    steps[finite] = np.minimum(np.round(below[finite] / precision), top + 1).astype(np.int64)
    return steps


def _budget_result(x: Tensor, clean_probs: Tensor, clean: Tensor, todo: Tensor,
                   result: AttackResult | None) -> AttackResult:
    """The attack at the budget for all N images (clean successes stay clean)."""
    adversarial = x.detach().clone()
    probs = clean_probs.clone()
    success = clean.clone()
    if result is not None:
        adversarial[todo] = result.adversarial
        probs[todo] = result.probs
        success[todo] = result.success
    return AttackResult(adversarial, success, probs)


ENSEMBLE = ("pgd", "fmn", "apgd-ce", "apgd-dlr")
# FMN's own search, whatever the others' steps: at Pintor et al.'s 100 steps FMN ended above
# PGD's bisection by more than the 1e-3 grid on 16 of 256 hard-set 7s (lazy and cured
# models); at 200 on none of 512 others.
FMN_STEPS = 200


def fmn_on_grid(model: nn.Module, x: Tensor, target: Tensor | int,
                confidence: float | None, *, mask: Tensor | None = None, max_eps: float = 1.0,
                precision: float = 1e-3, eps_budget: float | None = None,
                batch_size: int | None = None, desc: str | None = None,
                **_: Any) -> MinimalEpsilon:
    """FMN's L-inf minimal norms as a :class:`MinimalEpsilon` on the bisection's grid: an
    adversarial at norm ``r`` is one at every grid epsilon from ``r`` rounded up, so each
    norm becomes that grid value (inf above ``max_eps``). At the budget an image counts as
    fooled when its norm is within it. The bisection's attack settings do not apply."""
    from shortcutlab.attack.fmn import fmn

    result = fmn(model, x, target, confidence, norm="linf", steps=FMN_STEPS, mask=mask,
                 batch_size=batch_size, desc=desc)
    eps = np.ceil(np.round(result.norms / precision, 6)) * precision
    eps = np.round(np.where(eps <= max_eps + precision * 1e-6, eps, np.inf), 12)
    with eval_mode(model), torch.no_grad():
        probs = batched_forward(model, result.adversarial, batch_size or len(x)).softmax(1)
    at_budget = None
    if eps_budget is not None:
        success = torch.from_numpy(eps <= eps_budget + precision * 1e-6).to(x.device)
        adversarial = torch.where(success.view(-1, 1, 1, 1), result.adversarial, x)
        with eval_mode(model), torch.no_grad():
            budget_probs = batched_forward(model, adversarial, batch_size or len(x)).softmax(1)
        at_budget = AttackResult(adversarial, success, budget_probs)
    return MinimalEpsilon(eps, result.adversarial, probs, precision, max_eps, FMN_STEPS,
                          at_budget)


def ensemble_minimal_epsilon(model: nn.Module, x: Tensor, target: Tensor | int,
                             confidence: float | None = 0.9, *,
                             attacks: tuple[str, ...] = ENSEMBLE, desc: str | None = None,
                             **kwargs: Any) -> MinimalEpsilon:
    """The worst case over ``attacks``: per image, the smallest of their minimal epsilons
    (:func:`minimal_epsilon`, each with the same grid, budget, mask and settings; ``fmn``
    searches the norm directly, see :func:`fmn_on_grid`), with the adversarial image of
    the attack that found it.

    The first member and ``fmn`` search the whole range, so each is a complete estimate
    of its own (the report compares FMN with the bisection). Every other member is asked
    only whether it beats the best so far (``below``): where it fails one grid step below,
    its value is that best, and the image costs it two attack calls (budget and probe)
    instead of a whole bisection. By construction the result is never larger than any
    member's value, image by image (the first member's included). At the budget, an
    image counts as fooled when any member fooled it.
    """
    if not attacks:
        raise ShortcutlabError("an ensemble needs at least one attack")
    results: dict[str, MinimalEpsilon] = {}
    best: np.ndarray | None = None
    for index, name in enumerate(attacks):
        label = f"{desc or 'minimal epsilon'} [{name}]"
        if name == "fmn":
            results[name] = fmn_on_grid(model, x, target, confidence, desc=label, **kwargs)
        else:
            results[name] = minimal_epsilon(model, x, target, confidence, attack=name,
                                            desc=label, below=best if index else None,
                                            **kwargs)
        best = results[name].eps if best is None else np.minimum(best, results[name].eps)
    stacked = np.stack([results[name].eps for name in attacks])  # (A, N)
    winner = np.argmin(stacked, axis=0)  # the first of the tied members
    eps = stacked[winner, np.arange(stacked.shape[1])]
    first = results[attacks[0]]
    adversarial, probs = first.adversarial.clone(), first.probs.clone()
    for index, name in enumerate(attacks[1:], start=1):
        chosen = torch.from_numpy(winner == index).to(adversarial.device)
        adversarial[chosen] = results[name].adversarial[chosen]
        probs[chosen] = results[name].probs[chosen]
    at_budget = None
    if first.at_budget is not None:
        success = torch.zeros_like(first.at_budget.success)
        budget_adv = first.at_budget.adversarial.clone()
        budget_probs = first.at_budget.probs.clone()
        for name in reversed(attacks):  # the first member that fooled an image wins
            member = results[name].at_budget
            budget_adv[member.success] = member.adversarial[member.success]
            budget_probs[member.success] = member.probs[member.success]
            success |= member.success
        at_budget = AttackResult(budget_adv, success, budget_probs)
    found_by = [attacks[int(w)] if math.isfinite(float(e)) else None
                for w, e in zip(winner, eps, strict=True)]
    return MinimalEpsilon(eps, adversarial, probs, first.precision, first.max_eps,
                          sum(result.rounds for result in results.values()), at_budget,
                          by_attack={name: result.eps for name, result in results.items()},
                          found_by=found_by,
                          capped=tuple(name for index, name in enumerate(attacks)
                                       if index and name != "fmn"))
