"""Task 1: the trainer, its presets and the evaluation of trained models.

``train_run(data_dir, out_dir, preset=..., seed=..., **overrides)`` is the entry point;
``Algorithm`` is the interface every training method implements.
"""

from shortcutlab.train.algorithm import (
    ERM,
    Algorithm,
    Batch,
    TrainContext,
    get_algorithm,
    list_algorithms,
    make_optimizer,
    register_algorithm,
)
from shortcutlab.train.api import build_config, train_run
from shortcutlab.train.config import TrainConfig
from shortcutlab.train.presets import PRESETS, get_preset, list_presets
from shortcutlab.train.trainer import Trainer, train

__all__ = [
    "ERM", "PRESETS", "Algorithm", "Batch", "TrainConfig", "TrainContext", "Trainer",
    "build_config", "get_algorithm", "get_preset", "list_algorithms", "list_presets",
    "make_optimizer", "register_algorithm", "train", "train_run",
]
