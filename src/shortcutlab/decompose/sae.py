"""Sparse autoencoders on a layer's activations (Bricken et al. 2023; Gao et al. 2024).

``f = act(W_enc (x / s - b_dec) + b_enc)``, ``x_hat = s (W_dec f + b_dec)`` with ``s`` a
fixed scale that makes the mean squared norm of the inputs equal to their dimension, so
one sparsity coefficient means the same on every layer. ``act`` is a ReLU (sparsity from
an L1 penalty) or TopK (exactly ``k`` features on, Gao et al.). Decoder rows have unit
norm, which keeps the L1 penalty from being dodged by shrinking codes and growing
decoder rows. Features that stop firing are resampled from inputs the SAE reconstructs
worst (Bricken et al.'s recipe). Written here rather than taken from a library (e.g.
sae_lens) because those target transformer residual streams and pull in large stacks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.progress import progress

ACTIVATIONS = ("relu", "topk")


@dataclass(frozen=True)
class SAEConfig:
    expansion: int = 8
    activation: str = "relu"
    k: int = 16               # TopK: features on per input
    l1: float = 3e-3          # ReLU: sparsity penalty on the codes
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

    def encode(self, x: Tensor) -> Tensor:
        pre = (x / self.scale - self.b_dec) @ self.W_enc + self.b_enc
        if self.activation == "topk":
            values, index = pre.topk(min(self.k, self.d_hidden), dim=-1)
            return torch.zeros_like(pre).scatter_(-1, index, torch.relu(values))
        return torch.relu(pre)

    def encode_some(self, x: Tensor, features: Tensor) -> Tensor:
        """The codes of ``features`` only; for TopK the whole code is needed to rank them."""
        if self.activation == "topk":
            return self.encode(x)[:, features]
        pre = (x / self.scale - self.b_dec) @ self.W_enc[:, features] + self.b_enc[features]
        return torch.relu(pre)

    def decode(self, codes: Tensor) -> Tensor:
        return (codes @ self.W_dec + self.b_dec) * self.scale

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        codes = self.encode(x)
        return self.decode(codes), codes

    def losses(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruction MSE in scaled units, the L1 of the codes, and the codes."""
        codes = self.encode(x)
        error = (self.decode(codes) - x) / self.scale
        mse = error.pow(2).sum(1).mean() / self.d_in
        l1 = codes.sum(1).mean()  # codes are non-negative and decoder rows have unit norm
        return mse, l1, codes


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
    optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr)
    l1_weight = config.l1 if config.activation == "relu" else 0.0
    fired = torch.zeros(sae.d_hidden, dtype=torch.bool, device=device)
    history: list[dict] = []
    quiet = {} if show_progress else {"disable": True}
    for step in progress(range(config.steps), desc="train SAE", unit="step", **quiet):
        index = torch.randint(0, len(acts), (config.batch_size,), generator=generator)
        batch = acts[index.to(device)]
        mse, l1, codes = sae.losses(batch)
        # Warm the penalty up over the first 5% of steps so features form before they are
        # pushed to zero (a common remedy against features dying at the start).
        warm = min(1.0, (step + 1) / max(1, config.steps // 20))
        loss = mse + warm * l1_weight * l1
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _remove_parallel_gradient(sae)
        optimizer.step()
        sae.normalize_decoder()
        fired |= (codes.detach() > 0).any(0)
        if step % 50 == 0 or step == config.steps - 1:
            history.append({"step": step, "loss": float(loss.detach()),
                            "mse": float(mse.detach()), "l1": float(l1.detach()),
                            "l0": float((codes > 0).float().sum(1).mean())})
        window_done = config.resample_every and (step + 1) % config.resample_every == 0
        if window_done and step < config.resample_until * config.steps:
            resample_dead(sae, optimizer, acts, ~fired, generator)
            fired.zero_()
    return sae.eval(), history


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


@torch.no_grad()
def sae_metrics(sae: SparseAutoencoder, acts: Tensor, batch_size: int = 8192) -> dict[str, float]:
    """``r2`` (variance explained), mean ``l0`` and ``dead_fraction`` on held-out activations."""
    total_error = 0.0
    active = 0.0
    fired = torch.zeros(sae.d_hidden, dtype=torch.bool, device=acts.device)
    for chunk in acts.split(batch_size):
        recon, codes = sae(chunk)
        total_error += float((recon - chunk).pow(2).sum())
        active += float((codes > 0).sum())
        fired |= (codes > 0).any(0)
    variance = float((acts - acts.mean(0)).pow(2).sum())
    return {
        "r2": 1.0 - total_error / max(variance, 1e-12),
        "l0": active / len(acts),
        "dead_fraction": float((~fired).float().mean()),
    }
