"""The model-randomization sanity check of Adebayo et al. (2018), "Sanity checks for saliency maps".

Re-initialize the model's layers one by one from the output down (cascading), recompute
the maps for the same images and targets, and measure how similar they stay (Spearman
rank correlation per image). An explanation that depends on what the model learned
decorrelates quickly; one that stays put is an edge detector in disguise.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from shortcutlab.explain.metrics import summarize


def rank_correlation(first: Tensor | np.ndarray, second: Tensor | np.ndarray) -> np.ndarray:
    """Spearman correlation per image of two batches of maps (ties get average ranks);
    NaN where a map is constant."""
    from scipy.stats import rankdata

    a = np.asarray(first, dtype=np.float64).reshape(len(first), -1)
    b = np.asarray(second, dtype=np.float64).reshape(len(second), -1)
    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (ra * rb).sum(axis=1) / denominator, np.nan)


def parameterized_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Layers with their own parameters and a ``reset_parameters``, in registration order."""
    return [
        (name, module) for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False)) and hasattr(module,
                                                                          "reset_parameters")
    ]


@dataclass
class SanityResult:
    """``stages[i]`` names the layers randomized so far (stage 0: none)."""

    stages: list[str]
    spearman: list[dict[str, Any]]
    spearman_abs: list[dict[str, Any]]
    maps: list[Tensor] = field(default_factory=list)  # per stage, the first few images' maps

    def to_json(self) -> dict[str, Any]:
        return {
            "randomized_from_top": self.stages,
            "spearman": self.spearman,
            "spearman_abs": self.spearman_abs,
        }


MapsFn = Callable[[nn.Module], Tensor]


def cascading_randomization(model: nn.Module, maps_fn: MapsFn, seed: int = 0,
                            keep: int = 6, reseed_each_layer: bool = False) -> SanityResult:
    """Randomize a copy of ``model`` from the top layer down; compare maps at each stage.

    ``maps_fn(model)`` returns the (N, H, W) maps of a fixed batch for fixed targets. The
    original model is never modified; the global random state is left as it was. The
    re-initializations draw from one stream seeded once with ``seed``, or, with
    ``reseed_each_layer``, from ``seed`` anew before every layer (Quantus' MPRT does so;
    tests/test_explain_quantus.py compares the two).
    """
    reference = maps_fn(model).detach().cpu()
    randomized = copy.deepcopy(model)
    stages = ["none (trained model)"]
    spearman = [summarize(torch.ones(len(reference)))]
    spearman_abs = [summarize(torch.ones(len(reference)))]
    kept = [reference[:keep]]
    cuda = sorted({p.device.index or 0 for p in randomized.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        for name, module in reversed(parameterized_layers(randomized)):
            if reseed_each_layer:
                torch.manual_seed(seed)
            module.reset_parameters()
            current = maps_fn(randomized).detach().cpu()
            stages.append(name)
            spearman.append(summarize(torch.from_numpy(rank_correlation(reference, current))))
            spearman_abs.append(summarize(torch.from_numpy(
                rank_correlation(reference.abs(), current.abs()))))
            kept.append(current[:keep])
    return SanityResult(stages, spearman, spearman_abs, kept)
