"""Do the same features come back when the SAE is trained again with another seed?

Each other SAE's features are matched one to one with the reference's by the Hungarian
algorithm on the cosine similarity of their decoder directions (the direction a feature
writes into the layer). A reference feature *recurs* in another SAE when its match has a
cosine above ``threshold`` (0.9 by default). The share of the reference's color features
that recur in every other SAE says whether "the lazy model has a yellow feature" is a
finding about the model or an accident of one training run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from shortcutlab.errors import ShortcutlabError

THRESHOLD = 0.9


def match_features(reference: Tensor, other: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """For each reference feature, its match in ``other`` and their cosine.

    ``reference`` and ``other`` are decoder matrices (features, d) of the same layer."""
    from scipy.optimize import linear_sum_assignment

    if reference.shape[1] != other.shape[1]:
        raise ShortcutlabError(f"the SAEs decode into different spaces ({reference.shape[1]} "
                               f"and {other.shape[1]} dimensions): train them on one layer")
    a = torch.nn.functional.normalize(reference.detach().double(), dim=1)
    b = torch.nn.functional.normalize(other.detach().double(), dim=1)
    cosine = (a @ b.T).cpu().numpy()
    rows, cols = linear_sum_assignment(-cosine)
    match = np.full(len(a), -1)
    similarity = np.full(len(a), np.nan)
    match[rows] = cols
    similarity[rows] = cosine[rows, cols]
    return match, similarity


def stability(sae_dirs: list[str | os.PathLike], threshold: float = THRESHOLD
              ) -> dict[str, Any]:
    """Match every SAE's features with the first one's (its ``labels.json`` names them)."""
    from shortcutlab.artifacts import read_json
    from shortcutlab.decompose.run import LABELS, load_sae

    if len(sae_dirs) < 2:
        raise ShortcutlabError("stability needs at least two SAE directories (other seeds)")
    reference_dir = Path(sae_dirs[0])
    if not (reference_dir / LABELS).is_file():
        raise ShortcutlabError(f"{reference_dir} has no {LABELS}: run `shortcutlab sae label "
                               f"{reference_dir}` first")
    labelled = read_json(reference_dir / LABELS)
    labels = labelled["features"]
    kinds = np.array([row["label"].split(":")[0] for row in labels])
    reference, reference_meta = load_sae(reference_dir)
    similarities = []
    for other_dir in sae_dirs[1:]:
        other, meta = load_sae(other_dir)
        if meta["layer"] != reference_meta["layer"] or meta["run_dir"] != reference_meta[
                "run_dir"]:
            raise ShortcutlabError(f"{other_dir} was trained on {meta['run_dir']}:{meta['layer']}"
                                   f", {reference_dir} on {reference_meta['run_dir']}:"
                                   f"{reference_meta['layer']}; compare SAEs of one layer")
        similarities.append(match_features(reference.W_dec, other.W_dec)[1])
    worst = np.nanmin(np.stack(similarities), axis=0)  # the weakest match over the others
    recurs = worst > threshold
    alive = kinds != "dead"
    by_kind = {}
    for kind in ("color", "digit", "shape", "mixed"):
        chosen = kinds == kind
        by_kind[kind] = {"n": int(chosen.sum()),
                         "recurring": int((recurs & chosen).sum()),
                         "share": float(recurs[chosen].mean()) if chosen.any() else None}
    strongest = {color: {"feature": features[0], "cosine": float(worst[features[0]]),
                         "recurs": bool(recurs[features[0]])}
                 for color, features in labelled.get("color_features", {}).items() if features}
    return {
        "reference": str(reference_dir),
        "others": [str(path) for path in sae_dirs[1:]],
        "threshold": threshold,
        "definition": "a reference feature recurs when its Hungarian match (decoder cosine) "
                      "is above the threshold in every other SAE",
        "alive": int(alive.sum()),
        "recurring_alive": int((recurs & alive).sum()),
        "by_kind": by_kind,
        "color_share": by_kind["color"]["share"],
        # each color's most color-selective feature: the one a user would name "yellow"
        "strongest_per_color": strongest,
        "strongest_recurring": sum(entry["recurs"] for entry in strongest.values()),
        "median_cosine_alive": float(np.median(worst[alive])) if alive.any() else None,
    }
