"""Named training recipes: partial :class:`~shortcutlab.train.config.TrainConfig` dicts.

``lazy`` makes ``cnn3`` a cheater at the dataset's own 95% bias; ``standard`` is an
ordinary well-tuned recipe for the same model, for comparison. ``docs/results.md``
(section ``train``) explains why ``lazy`` works and shows both over five seeds.
"""

from __future__ import annotations

from typing import Any

from shortcutlab.errors import ShortcutlabError

PRESETS: dict[str, dict[str, Any]] = {
    # Color is learned in the first ~100 steps, shape only afterwards. Train with a small,
    # steady step and stop at the first checkpoint whose easy-val accuracy clears the bar;
    # evaluate every 10 steps once val is within a point of it, so the stop is not late.
    "lazy": {
        "model": "cnn3",
        "optimizer": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "batch_size": 64,
        "epochs": None,
        "steps": 1500,
        "schedule": "constant",
        "eval_every": 50,
        "eval_dense_every": 10,
        "eval_dense_margin": 0.01,
        "select": "first:easy_val>=0.955",
        "early_stop": True,
    },
    # A normal recipe: Adam, a few epochs, cosine decay, keep the best validation checkpoint.
    "standard": {
        "model": "cnn3",
        "optimizer": "adam",
        "lr": 0.001,
        "weight_decay": 0.0,
        "batch_size": 128,
        "epochs": 3.0,
        "steps": None,
        "schedule": "cosine",
        "eval_every": 200,
        "select": "best-val",
    },
}

DESCRIPTIONS = {
    "lazy": "stop at the first checkpoint whose easy-val accuracy reaches 0.955 (a cheater)",
    "standard": "Adam, 3 epochs, cosine decay, best easy-val checkpoint (for comparison)",
}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str | None) -> dict[str, Any]:
    """The preset's settings (a copy); ``None`` means the plain trainer defaults."""
    if name is None or name == "none":
        return {}
    if name not in PRESETS:
        raise ShortcutlabError(
            f"unknown preset {name!r}; choose one of {', '.join(list_presets())} (or none)"
        )
    return dict(PRESETS[name])
