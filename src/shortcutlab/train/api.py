"""``train_run``: the one-call Python entry point used by the CLI, sweeps and the study."""

from __future__ import annotations

import os
from typing import Any

from shortcutlab.errors import ShortcutlabError
from shortcutlab.train.algorithm import Algorithm
from shortcutlab.train.config import TrainConfig
from shortcutlab.train.presets import get_preset
from shortcutlab.train.trainer import EvalCallback, resolve_algorithm, train


def build_config(preset: str | None = "lazy", algorithm: type[Algorithm] | str | None = None,
                 **overrides: Any) -> tuple[TrainConfig, dict[str, Any]]:
    """Split ``overrides`` into trainer settings (over the preset) and method hparams."""
    method = resolve_algorithm(algorithm)
    trainer_keys = set(TrainConfig.keys())
    method_keys = set(method.default_hparams)
    unknown = sorted(set(overrides) - trainer_keys - method_keys)
    if unknown:
        raise ShortcutlabError(
            f"unknown setting(s) {', '.join(unknown)}; valid trainer settings: "
            f"{', '.join(sorted(trainer_keys))}"
            + (f"; {method.name} hyperparameters: {', '.join(sorted(method_keys))}"
               if method_keys else "")
        )
    settings = {**get_preset(preset),
                **{k: v for k, v in overrides.items() if k in trainer_keys}}
    hparams = method.resolve_hparams(
        {k: v for k, v in overrides.items() if k in method_keys and k not in trainer_keys})
    config = TrainConfig.from_dict(settings)
    config.validate()
    return config, hparams


def train_run(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
              preset: str | None = "lazy", seed: int = 0, resume: bool = False,
              algorithm: type[Algorithm] | str | None = None, force: bool = False,
              on_eval: EvalCallback | None = None, **overrides: Any) -> dict[str, Any]:
    """Train one run into ``out_dir`` and return its ``metrics.json`` content.

    ``preset`` names a recipe (``lazy``, ``standard``; ``None`` for the trainer defaults);
    ``overrides`` replace any trainer setting (``model``, ``model_kwargs``, ``lr``,
    ``batch_size``, ``epochs``, ``steps``, ``optimizer``, ``momentum``, ``weight_decay``,
    ``schedule``, ``eval_every``, ``select``, ``device``, ``threads``, ... see
    :class:`TrainConfig`) or set a hyperparameter of ``algorithm`` (its
    ``default_hparams``); anything else raises :class:`ShortcutlabError` listing the
    valid keys. ``algorithm`` is an :class:`Algorithm` subclass or a registered name
    (``None``: ERM). ``resume`` continues an interrupted run, or returns a finished
    run's metrics; ``force`` overwrites a run already in ``out_dir``.
    """
    config, hparams = build_config(preset, algorithm, **overrides)
    return train(data_dir, out_dir, config, seed=seed, algorithm=algorithm, hparams=hparams,
                 preset=preset, resume=resume, force=force, on_eval=on_eval)

