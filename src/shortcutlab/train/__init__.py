"""Task 1: the trainer, its presets and the evaluation of trained models."""

from shortcutlab.train.algorithm import ERM, Algorithm, Batch, TrainContext, make_optimizer

__all__ = ["ERM", "Algorithm", "Batch", "TrainContext", "make_optimizer"]
