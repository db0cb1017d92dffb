"""What every attack shares, so that each attack writes only its step.

In the spirit of torchattacks' ``Attack`` base class: :class:`Attack` puts the model in
eval mode (and restores every module's mode afterwards), works in pixel space with
images in [0, 1], projects onto the epsilon ball of its norm (``linf`` or ``l2``) and the
valid pixel range, restricts the perturbation to a per-pixel mask, handles targeted and
untargeted goals, runs random restarts, and stops each image as soon as it reaches its
goal. A subclass implements only :meth:`Attack.step`.

We write our own rather than wrap torchattacks because the study needs what it lacks:
one epsilon (and step size) per image so that a whole batch can be bisected at once,
per-image early stopping at a target confidence, masks, restarts that keep the best
result, random starts that do not depend on the batch (see
:mod:`shortcutlab.attack.noise`), and a guarantee that the model is left untouched.
torchattacks stays the reference our tests and benchmark compare against.

Gradients are taken with ``torch.autograd.grad`` with respect to the input only, so the
model's parameters never accumulate a ``.grad``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from shortcutlab.attack.noise import uniform_noise
from shortcutlab.errors import ShortcutlabError

NORMS = ("linf", "l2")
_TINY = 1e-12


@dataclass
class AttackResult:
    """What an attack returns for a batch of N images.

    ``success`` is re-checked by one forward pass over the whole batch of returned
    ``adversarial`` images, and ``probs`` are that pass's softmax outputs: a success claim
    never rests on an intermediate iterate.
    """

    adversarial: Tensor  # (N, C, H, W) float in [0, 1]
    success: Tensor  # bool (N,)
    probs: Tensor  # (N, num_classes) at ``adversarial``

    @property
    def predicted(self) -> Tensor:
        return self.probs.argmax(dim=1)

    def prob_of(self, labels: Tensor) -> Tensor:
        """The probability each image gives to its entry of ``labels``."""
        return self.probs.gather(1, labels.view(-1, 1)).squeeze(1)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode; restore each module's own flag afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def per_sample(value: float | Tensor, n: int, like: Tensor) -> Tensor:
    """A float or (N,) tensor -> float tensor (N, 1, 1, 1) on ``like``'s device."""
    tensor = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if tensor.dim() == 0:
        tensor = tensor.expand(n)
    if tensor.shape != (n,):
        raise ShortcutlabError(f"expected a number or one value per image ({n}), "
                               f"got shape {tuple(tensor.shape)}")
    return tensor.reshape(n, 1, 1, 1)


def pixel_mask(mask: Tensor | None, x: Tensor) -> Tensor | None:
    """Bool/float mask (N,H,W), (N,1,H,W) or (N,C,H,W) -> float (N,1|C,H,W) on ``x``'s device."""
    if mask is None:
        return None
    mask = mask.to(device=x.device)
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.dim() != 4 or mask.shape[0] != x.shape[0] or mask.shape[2:] != x.shape[2:]:
        raise ShortcutlabError(f"mask of shape {tuple(mask.shape)} does not fit images of shape "
                               f"{tuple(x.shape)}; expected (N, H, W) or (N, 1 or C, H, W)")
    return mask.to(x.dtype)


def _fast_layout(x: Tensor) -> Tensor:
    """Channels-last images on CPU: convolutions and max-pooling run about 1.5x faster there
    (oneDNN's native layout) for batches; the model and its weights are not touched."""
    if x.device.type == "cpu" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


@dataclass
class StepContext:
    """What a stateful attack's :meth:`Attack.update` sees at one iteration, for the
    images still being optimized: their clean images, radii, losses at the current
    iterate (before this update), the iteration number and the attack's own state."""

    x: Tensor
    eps: Tensor
    losses: Tensor
    iteration: int
    state: dict[str, Tensor]
    constrain: Callable[[Tensor], Tensor]  # onto the ball, the pixel range and the mask


def _norms(delta: Tensor) -> Tensor:
    return delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def strongest_other(logits: Tensor, labels: Tensor) -> Tensor:
    """Per image, the largest logit of any class but its entry of ``labels``."""
    return logits.scatter(1, labels.view(-1, 1), -math.inf).max(dim=1).values


def project(delta: Tensor, eps: Tensor, norm: str) -> Tensor:
    """Project each perturbation onto its own epsilon ball."""
    if norm == "linf":
        return torch.maximum(torch.minimum(delta, eps), -eps)
    return delta * torch.clamp(eps / (_norms(delta) + _TINY), max=1.0)


class Attack:
    """Base class: subclasses set ``name`` and ``norm`` and implement :meth:`step`.

    Args:
        model: maps images (N, C, H, W) in [0, 1] to logits.
        eps: the radius of the perturbation ball (L-inf or L2, by ``norm``); a call may
            override it, also with one value per image.
        steps: gradient steps per restart.
        step_size: absolute step size; when None it is ``rel_step_size * eps / steps``,
            so that the attack at a larger epsilon is the same attack scaled up (this
            is what makes success close to monotone in epsilon, see
            :func:`~shortcutlab.attack.minimal_epsilon`).
        rel_step_size: the step size relative to ``eps / steps`` (2.5 as in Madry et al.).
        random_start: start each restart at a random point of the ball.
        restarts: independent runs; images that reached their goal are not rerun, the
            others keep the run whose end point scores best.
        targeted: the second argument of a call is the target class (True) or the true
            class to move away from (False).
        confidence: for targeted attacks, the goal is reached when the target class is
            the prediction and its softmax probability is at least this; for untargeted
            ones, when the prediction is not the true class and its probability is at
            least this. None: the prediction alone decides.
        stop_early: freeze each image at the first iterate that reaches the goal.
        seed: fixes the random starts (which depend on each image, not on the batch).
    """

    name: ClassVar[str] = "base"
    norm: ClassVar[str] = "linf"

    def __init__(self, model: nn.Module, eps: float = 0.05, *, steps: int = 20,
                 step_size: float | None = None, rel_step_size: float = 2.5,
                 random_start: bool = True, restarts: int = 1, targeted: bool = True,
                 confidence: float | None = None, stop_early: bool = True,
                 seed: int = 0) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"{type(self).__name__}.norm must be one of {NORMS}")
        if steps < 1:
            raise ShortcutlabError(f"steps must be at least 1, got {steps}")
        if restarts < 1:
            raise ShortcutlabError(f"restarts must be at least 1, got {restarts}")
        if eps < 0:
            raise ShortcutlabError(f"eps must be non-negative, got {eps}")
        if step_size is not None and step_size <= 0:
            raise ShortcutlabError(f"step_size must be positive, got {step_size}")
        if rel_step_size <= 0:
            raise ShortcutlabError(f"rel_step_size must be positive, got {rel_step_size}")
        if confidence is not None and not 0.0 < confidence < 1.0:
            raise ShortcutlabError(f"confidence must be in (0, 1), got {confidence}")
        self.model = model
        self.eps = eps
        self.steps = steps
        self.step_size = step_size
        self.rel_step_size = rel_step_size
        self.random_start = random_start
        self.restarts = restarts
        self.targeted = targeted
        self.confidence = confidence
        self.stop_early = stop_early
        self.seed = seed

    def __repr__(self) -> str:
        step = (f"step_size={self.step_size}" if self.step_size is not None
                else f"rel_step_size={self.rel_step_size}")
        return (f"{type(self).__name__}(eps={self.eps}, steps={self.steps}, {step}, "
                f"random_start={self.random_start}, restarts={self.restarts}, "
                f"targeted={self.targeted}, confidence={self.confidence}, seed={self.seed})")

    def settings(self) -> dict:
        """The attack's settings as JSON-able data (for result files)."""
        return {"name": self.name, "norm": self.norm, "steps": self.steps,
                "step_size": self.step_size, "rel_step_size": self.rel_step_size,
                "random_start": self.random_start, "restarts": self.restarts,
                "targeted": self.targeted, "confidence": self.confidence,
                "stop_early": self.stop_early, "seed": self.seed}

    # -- what subclasses write -------------------------------------------------------------
    def step(self, delta: Tensor, grad: Tensor, step_size: Tensor) -> Tensor:
        """One update of the perturbation that decreases the attack loss (``grad``)."""
        raise NotImplementedError

    def init_state(self, delta: Tensor, eps: Tensor) -> dict[str, Tensor]:
        """Per-image state of an attack whose steps remember (momentum, step sizes, the
        best point so far): every entry has one row per image, and the base keeps the
        rows of the images still being optimized. Stateless attacks keep none."""
        return {}

    def update(self, delta: Tensor, grad: Tensor, step_size: Tensor, context: StepContext
               ) -> Tensor:
        """The next perturbation. Stateless attacks only write :meth:`step`; an attack
        with state (see :meth:`init_state`) overrides this and reads ``context``."""
        return self.step(delta, grad, step_size)

    def finish(self, delta: Tensor, context: StepContext) -> Tensor:
        """The perturbation a restart ends with (by default its last iterate)."""
        return delta

    # -- shared machinery -----------------------------------------------------------------
    def per_image_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The loss the attack descends, per image: CE to the target, or minus CE to the
        truth."""
        ce = nn.functional.cross_entropy(logits, labels, reduction="none")
        return ce if self.targeted else -ce

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The per-image losses summed, not averaged, so that one image's gradient does
        not shrink with the batch."""
        return self.per_image_loss(logits, labels).sum()

    def goal_reached(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(reached, score): reached per image, and a score that is higher when closer."""
        probs = logits.softmax(dim=1)
        predicted = probs.argmax(dim=1)
        p_label = probs.gather(1, labels.view(-1, 1)).squeeze(1)
        if self.targeted:
            reached = predicted == labels
            if self.confidence is not None:
                reached &= p_label >= self.confidence
            return reached, p_label
        reached = predicted != labels
        if self.confidence is not None:
            reached &= probs.max(dim=1).values >= self.confidence
        return reached, 1.0 - p_label

    def initial_delta(self, x: Tensor, eps: Tensor, restart: int) -> Tensor:
        """A random point of the ball (uniform per pixel for L-inf, a random radius for L2)."""
        if not self.random_start:
            return torch.zeros_like(x)
        direction = uniform_noise(x, self.seed, stream=restart).mul_(2).sub_(1)
        if self.norm == "linf":
            return direction * eps
        radius = uniform_noise(x, self.seed, stream=10_000 + restart)[:, :1, :1, :1]
        return direction / (_norms(direction) + _TINY) * eps * radius

    def __call__(self, x: Tensor, labels: Tensor, *, eps: float | Tensor | None = None,
                 mask: Tensor | None = None) -> AttackResult:
        """Attack images ``x`` (N, C, H, W) in [0, 1] toward (or away from) ``labels`` (N,).

        ``eps`` overrides the constructor's epsilon (a number or one per image); ``mask``
        (N, H, W) restricts the perturbation to pixels where it is nonzero.
        """
        if x.dim() != 4:
            raise ShortcutlabError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
        x = x.detach()
        if float(x.min()) < 0.0 or float(x.max()) > 1.0:
            raise ShortcutlabError("images must have pixels in [0, 1]")
        labels = labels.detach().to(device=x.device, dtype=torch.long).view(-1)
        if labels.shape[0] != x.shape[0]:
            raise ShortcutlabError(f"{labels.shape[0]} labels for {x.shape[0]} images")
        n = x.shape[0]
        eps_t = per_sample(self.eps if eps is None else eps, n, x)
        if bool((eps_t < 0).any()):
            raise ShortcutlabError("eps must be non-negative")
        mask_t = pixel_mask(mask, x)
        with eval_mode(self.model), torch.enable_grad():
            adversarial = x.clone()
            best = torch.full((n,), -float("inf"), device=x.device)
            done = torch.zeros(n, dtype=torch.bool, device=x.device)
            for restart in range(self.restarts):
                todo = torch.nonzero(~done).squeeze(1)
                if todo.numel() == 0:
                    break
                adv, reached, score = self._run(
                    x[todo], labels[todo], eps_t[todo],
                    None if mask_t is None else mask_t[todo], restart,
                    score_all=self.restarts > 1)
                better = reached | (score > best[todo])
                adversarial[todo[better]] = adv[better]
                best[todo[better]] = score[better]
                done[todo[reached]] = True
            with torch.no_grad():
                logits = self.model(adversarial)
            success, _ = self.goal_reached(logits, labels)
        return AttackResult(adversarial, success, logits.softmax(dim=1).detach())

    def _step_size(self, eps: Tensor) -> Tensor:
        if self.step_size is not None:
            return torch.full_like(eps, self.step_size)
        return eps * (self.rel_step_size / self.steps)

    def _run(self, x: Tensor, labels: Tensor, eps: Tensor, mask: Tensor | None,
             restart: int, score_all: bool) -> tuple[Tensor, Tensor, Tensor]:
        """One restart: returns (adversarial, reached, score) for every image of ``x``.

        The last iterate is only scored when ``score_all`` (restarts compare scores);
        otherwise its images get ``reached=False`` and ``score=+inf`` (it is kept), and
        the caller's final forward pass decides success: one pass fewer per call.
        """
        n = x.shape[0]
        out = x.clone()
        reached_out = torch.zeros(n, dtype=torch.bool, device=x.device)
        score_out = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
        alive = torch.arange(n, device=x.device)  # positions still being optimized
        step_size = self._step_size(eps)
        delta = self.initial_delta(x, eps, restart)
        if mask is not None:
            delta = delta * mask
        delta = self._constrain(delta, x, eps)
        state = self.init_state(delta, eps)
        context = None
        for iteration in range(self.steps):
            current = _fast_layout((x + delta).clamp_(0.0, 1.0)).requires_grad_(True)
            logits = self.model(current)
            if self.stop_early:
                reached, score = self.goal_reached(logits.detach(), labels)
                if bool(reached.any()):
                    out[alive[reached]] = current.detach()[reached]
                    reached_out[alive[reached]] = True
                    score_out[alive[reached]] = score[reached]
            losses = self.per_image_loss(logits, labels)
            grad = torch.autograd.grad(losses.sum(), current)[0].contiguous()
            losses = losses.detach()
            if self.stop_early and bool(reached.any()):
                keep = ~reached
                if not bool(keep.any()):
                    return out, reached_out, score_out
                alive, x, labels, eps, step_size = (alive[keep], x[keep], labels[keep],
                                                    eps[keep], step_size[keep])
                delta, grad, losses = delta[keep], grad[keep], losses[keep]
                mask = None if mask is None else mask[keep]
                state = {key: value[keep] for key, value in state.items()}
            if mask is not None:
                grad = grad * mask
            context = StepContext(x, eps, losses, iteration, state,
                                  self._constrainer(x, eps, mask))
            delta = self.update(delta, grad, step_size, context)
            if mask is not None:
                delta = delta * mask
            delta = self._constrain(delta, x, eps)
        if context is not None:
            delta = self.finish(delta, context)
        final = (x + delta).clamp_(0.0, 1.0)
        out[alive] = final
        if score_all:
            with torch.no_grad():
                reached, score = self.goal_reached(self.model(final), labels)
            reached_out[alive] = reached
            score_out[alive] = score
        return out, reached_out, score_out

    def _constrainer(self, x: Tensor, eps: Tensor, mask: Tensor | None
                     ) -> Callable[[Tensor], Tensor]:
        def constrain(delta: Tensor) -> Tensor:
            return self._constrain(delta if mask is None else delta * mask, x, eps)
        return constrain

    def _constrain(self, delta: Tensor, x: Tensor, eps: Tensor) -> Tensor:
        """Onto the epsilon ball, then into the pixel range (which only shrinks each pixel)."""
        delta = project(delta.detach(), eps, self.norm)
        return (x + delta).clamp_(0.0, 1.0) - x
