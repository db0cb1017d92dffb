"""Sparse autoencoders on a layer's activations (Bricken et al. 2023; Gao et al. 2024).

``f = act(W_enc (x / s - b_dec) + b_enc)``, ``x_hat = s (W_dec f + b_dec)`` with ``s`` a
fixed scale that makes the mean squared norm of the inputs equal to their dimension, so
one sparsity coefficient means the same on every layer. ``act`` is one of

* ``relu``: sparsity from an L1 penalty (the original recipe, "legacy" in SAELens);
* ``topk``: exactly ``k`` features on per input (Gao et al. 2024), with their auxiliary
  loss against dead features: the ``k_aux`` strongest dead features must reconstruct what
  the live ones miss (weight ``aux``);
* ``batchtopk``: the ``k * batch`` strongest activations of a whole batch (Bussmann et
  al. 2024), so that inputs may use more or fewer than ``k``; at inference a single
  threshold, the running mean of the smallest activation kept in training;
* ``jumprelu``: a learned threshold per feature below which it is off (Rajamanoharan et
  al. 2024), trained through a straight-through estimator with an L0 penalty.

Decoder rows have unit norm, which keeps an L1 penalty from being dodged by shrinking
codes and growing decoder rows. Features that stop firing are resampled from inputs the
SAE reconstructs worst (Bricken et al.'s recipe). Written here rather than taken from a
library (e.g. sae_lens) because those target transformer residual streams and pull in
large stacks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.progress import progress

ACTIVATIONS = ("relu", "topk", "batchtopk", "jumprelu")
DEAD_AFTER = 200  # steps without firing after which a feature counts as dead (TopK's aux)
JUMP_BANDWIDTH = 1e-3  # JumpReLU's straight-through kernel width (Rajamanoharan et al.)


@dataclass(frozen=True)
class SAEConfig:
    expansion: int = 8
    activation: str = "relu"
    k: int = 16               # TopK: features on per input
    l1: float = 3e-3          # ReLU: sparsity penalty on the codes; JumpReLU: on the L0
    aux: float = 1 / 32       # TopK, BatchTopK: weight of the dead features' auxiliary loss
    steps: int = 4000
    batch_size: int = 512
    lr: float = 1e-3
    resample_every: int = 1000  # look for dead features this often (0: never)
    resample_until: float = 0.6  # stop resampling after this share of the steps
    seed: int = 0

    def validate(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ShortcutlabError(f"unknown activation {self.activation!r}; "
                                   f"choose {', '.join(ACTIVATIONS)}")
        if self.expansion < 1:
            raise ShortcutlabError(f"the expansion factor must be at least 1, got {self.expansion}")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.l1 < 0 or self.k < 1:
            raise ShortcutlabError("steps, batch size, k must be positive and lr, l1 >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SparseAutoencoder(nn.Module):
    def __init__(self, d_in: int, d_hidden: int, activation: str = "relu", k: int = 16) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ShortcutlabError(f"unknown activation {activation!r}")
        self.d_in, self.d_hidden, self.activation, self.k = d_in, d_hidden, activation, k
        self.W_enc = nn.Parameter(torch.empty(d_in, d_hidden))
        self.b_enc = nn.Parameter(torch.zeros(d_hidden))
        self.W_dec = nn.Parameter(torch.empty(d_hidden, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("scale", torch.ones(()))
        # BatchTopK's inference threshold; JumpReLU's per-feature thresholds (log)
        self.register_buffer("threshold", torch.zeros(()))
        self.log_threshold = nn.Parameter(torch.full((d_hidden,), math.log(1e-3)),
                                          requires_grad=activation == "jumprelu")
        nn.init.kaiming_uniform_(self.W_dec)
        self.normalize_decoder()
        with torch.no_grad():
            self.W_enc.copy_(self.W_dec.T)

    @property
    def spec(self) -> dict[str, Any]:
        return {"d_in": self.d_in, "d_hidden": self.d_hidden, "activation": self.activation,
                "k": self.k}

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def fit_input_scale(self, x: Tensor) -> None:
        """Set ``scale`` and centre ``b_dec`` on a sample of inputs (before training)."""
        centred = x - x.mean(0)
        self.scale.fill_(float(centred.pow(2).sum(1).mean().div(self.d_in).sqrt().clamp_min(1e-8)))
        self.b_dec.copy_(x.mean(0) / self.scale)

    def pre_activation(self, x: Tensor) -> Tensor:
        return (x / self.scale - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x: Tensor) -> Tensor:
        return self._activate(self.pre_activation(x))

    def _activate(self, pre: Tensor) -> Tensor:
        if self.activation == "topk":
            values, index = pre.topk(min(self.k, self.d_hidden), dim=-1)
            return torch.zeros_like(pre).scatter_(-1, index, torch.relu(values))
        if self.activation == "batchtopk":
            if self.training:
                flat = torch.relu(pre).flatten()
                values, index = flat.topk(min(self.k * pre.shape[0], flat.numel()))
                return torch.zeros_like(flat).scatter_(0, index, values).view_as(pre)
            return torch.where(pre > self.threshold, pre, torch.zeros_like(pre))
        if self.activation == "jumprelu":
            threshold = self.log_threshold.exp()
            return pre * _Step.apply(pre, threshold)
        return torch.relu(pre)

    def encode_some(self, x: Tensor, features: Tensor) -> Tensor:
        """The codes of ``features`` only; for TopK the whole code is needed to rank them."""
        if self.activation == "topk":
            return self.encode(x)[:, features]
        pre = (x / self.scale - self.b_dec) @ self.W_enc[:, features] + self.b_enc[features]
        if self.activation == "batchtopk" and not self.training:
            return torch.where(pre > self.threshold, pre, torch.zeros_like(pre))
        if self.activation == "jumprelu":
            return pre * (pre > self.log_threshold[features].exp()).to(pre.dtype)
        return torch.relu(pre)

    def decode(self, codes: Tensor) -> Tensor:
        return (codes @ self.W_dec + self.b_dec) * self.scale

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        codes = self.encode(x)
        return self.decode(codes), codes

    def losses(self, x: Tensor, dead: Tensor | None = None, k_aux: int = 0
               ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Reconstruction MSE in scaled units, the sparsity term (ReLU: the L1 of the codes;
        JumpReLU: the L0 through its straight-through estimator), the auxiliary loss of
        the ``dead`` features (TopK and BatchTopK, Gao et al.; 0 without them), and the
        codes."""
        pre = self.pre_activation(x)
        codes = self._activate(pre)
        error = (self.decode(codes) - x) / self.scale
        mse = error.pow(2).sum(1).mean() / self.d_in
        if self.activation == "jumprelu":
            sparsity = _Step.apply(pre, self.log_threshold.exp()).sum(1).mean()
        else:
            sparsity = codes.sum(1).mean()  # non-negative codes, unit-norm decoder rows
        aux = torch.zeros((), device=x.device)
        if dead is not None and k_aux and bool(dead.any()):
            # the strongest dead features must explain the residual the live ones leave;
            # their pre-activations are used as they are (no ReLU), so that a feature that
            # is negative on every input still gets a gradient back toward the data
            dead_pre = torch.where(dead, pre, torch.full_like(pre, -torch.inf))
            values, index = dead_pre.topk(min(k_aux, int(dead.sum())), dim=-1)
            dead_codes = torch.zeros_like(pre).scatter_(-1, index, values)
            residual = (-error).detach()
            aux = (dead_codes @ self.W_dec - residual).pow(2).sum(1).mean() / self.d_in
            aux = aux / residual.pow(2).sum(1).mean().div(self.d_in).clamp_min(1e-12)
        return mse, sparsity, aux, codes


def train_sae(acts: Tensor, config: SAEConfig = SAEConfig(), show_progress: bool = True,
              device: torch.device | str = "cpu") -> tuple[SparseAutoencoder, list[dict]]:
    """Train an SAE on activations (N, d); return it and the loss history (every 50 steps)."""
    config.validate()
    if acts.dim() != 2 or len(acts) < 2:
        raise ShortcutlabError(f"expected activations (N, d) with N >= 2, got {tuple(acts.shape)}")
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    sae = SparseAutoencoder(acts.shape[1], acts.shape[1] * config.expansion, config.activation,
                            config.k).to(device)
    acts = acts.to(device)
    sae.fit_input_scale(acts[torch.randperm(len(acts), generator=generator)[:20000].to(device)])
    optimizer = torch.optim.Adam([p for p in sae.parameters() if p.requires_grad],
                                 lr=config.lr)
    l1_weight = config.l1 if config.activation in ("relu", "jumprelu") else 0.0
    uses_aux = config.activation in ("topk", "batchtopk") and config.aux > 0
    k_aux = min(sae.d_hidden, max(2 * config.k, acts.shape[1] // 2))  # Gao et al.: d / 2
    fired = torch.zeros(sae.d_hidden, dtype=torch.bool, device=device)
    idle = torch.zeros(sae.d_hidden, dtype=torch.long, device=device)
    smallest_kept: list[float] = []
    history: list[dict] = []
    quiet = {} if show_progress else {"disable": True}
    sae.train()
    for step in progress(range(config.steps), desc="train SAE", unit="step", **quiet):
        index = torch.randint(0, len(acts), (config.batch_size,), generator=generator)
        batch = acts[index.to(device)]
        mse, l1, aux, codes = sae.losses(batch, dead=idle > DEAD_AFTER if uses_aux else None,
                                         k_aux=k_aux)
        # Warm the penalty up over the first 5% of steps so features form before they are
        # pushed to zero (a common remedy against features dying at the start).
        warm = min(1.0, (step + 1) / max(1, config.steps // 20))
        loss = mse + warm * l1_weight * l1 + config.aux * aux
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _remove_parallel_gradient(sae)
        optimizer.step()
        sae.normalize_decoder()
        active = (codes.detach() > 0).any(0)
        fired |= active
        idle = torch.where(active, torch.zeros_like(idle), idle + 1)
        if config.activation == "batchtopk" and step >= config.steps // 2:
            kept = codes.detach()[codes.detach() > 0]
            if kept.numel():
                smallest_kept.append(float(kept.min()))
        if step % 50 == 0 or step == config.steps - 1:
            history.append({"step": step, "loss": float(loss.detach()),
                            "mse": float(mse.detach()), "l1": float(l1.detach()),
                            "aux": float(aux.detach()),
                            "l0": float((codes > 0).float().sum(1).mean())})
        window_done = config.resample_every and (step + 1) % config.resample_every == 0
        if window_done and step < config.resample_until * config.steps:
            resample_dead(sae, optimizer, acts, ~fired, generator)
            fired.zero_()
    if smallest_kept:  # BatchTopK at inference: one threshold (Bussmann et al.)
        sae.threshold.fill_(sum(smallest_kept) / len(smallest_kept))
    return sae.eval(), history


class _Step(torch.autograd.Function):
    """``H(pre - threshold)`` with JumpReLU's straight-through gradient for the threshold:
    ``-K((pre - threshold) / eps) / eps`` with a rectangle kernel ``K`` (Rajamanoharan et
    al. 2024); no gradient to ``pre`` (JumpReLU's codes get theirs through ``pre *``)."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:
        pre, threshold = ctx.saved_tensors
        near = ((pre - threshold).abs() < JUMP_BANDWIDTH / 2).to(grad.dtype)
        return None, -(grad * near / JUMP_BANDWIDTH).sum(0)


@torch.no_grad()
def _remove_parallel_gradient(sae: SparseAutoencoder) -> None:
    """Project out the part of the decoder gradient that only changes row norms."""
    if sae.W_dec.grad is None:
        return
    rows = sae.W_dec
    parallel = (sae.W_dec.grad * rows).sum(1, keepdim=True) * rows
    sae.W_dec.grad.sub_(parallel)


@torch.no_grad()
def resample_dead(sae: SparseAutoencoder, optimizer: torch.optim.Optimizer, acts: Tensor,
                  dead: Tensor, generator: torch.Generator, sample: int = 8192) -> int:
    """Point dead features at inputs the SAE reconstructs worst; return how many were reset."""
    dead_index = dead.nonzero().flatten()
    if len(dead_index) == 0:
        return 0
    index = torch.randint(0, len(acts), (min(sample, len(acts)),), generator=generator)
    x = acts[index.to(acts.device)]
    error = (x - sae(x)[0]) / sae.scale
    weights = error.pow(2).sum(1)
    if float(weights.sum()) <= 0:
        return 0
    chosen = torch.multinomial(weights.cpu(), len(dead_index), replacement=True,
                               generator=generator).to(acts.device)
    directions = torch.nn.functional.normalize(error[chosen], dim=1)
    alive = ~dead
    enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
    sae.W_dec[dead_index] = directions
    sae.W_enc[:, dead_index] = directions.T * enc_norm * 0.2
    sae.b_enc[dead_index] = 0.0
    for param in (sae.W_enc, sae.W_dec, sae.b_enc):
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                if param is sae.W_enc:
                    state[key][:, dead_index] = 0.0
                else:
                    state[key][dead_index] = 0.0
    return len(dead_index)


DENSE_ABOVE = 0.1  # a feature on for more than this share of the inputs is dense (SAELens)


@torch.no_grad()
def feature_density(sae: SparseAutoencoder, acts: Tensor, batch_size: int = 8192) -> Tensor:
    """Per feature, the share of the inputs it is on for."""
    counts = torch.zeros(sae.d_hidden, dtype=torch.float64, device=acts.device)
    for chunk in acts.split(batch_size):
        counts += (sae.encode(chunk) > 0).sum(0).double()
    return (counts / max(len(acts), 1)).cpu()


@torch.no_grad()
def sae_metrics(sae: SparseAutoencoder, acts: Tensor, batch_size: int = 8192) -> dict[str, Any]:
    """On held-out activations: ``r2`` (the share of the variance explained), mean ``l0``,
    the ``dead_fraction`` (features never on) and ``dense_fraction`` (on for more than
    ``DENSE_ABOVE`` of the inputs), and every feature's ``density``."""
    total_error = 0.0
    active = 0.0
    for chunk in acts.split(batch_size):
        recon, codes = sae(chunk)
        total_error += float((recon - chunk).pow(2).sum())
        active += float((codes > 0).sum())
    variance = float((acts - acts.mean(0)).pow(2).sum())
    density = feature_density(sae, acts, batch_size)
    return {
        "r2": 1.0 - total_error / max(variance, 1e-12),
        "l0": active / len(acts),
        "dead_fraction": float((density == 0).double().mean()),
        "dense_fraction": float((density > DENSE_ABOVE).double().mean()),
        "density": [float(value) for value in density],
    }
