"""Shared fixtures: a tiny synthetic dataset and small models, built once per session."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("SHORTCUTLAB_PROGRESS", "0")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TINY_LIMIT = 400

if importlib.util.find_spec("torchvision") is None:
    sys.path.insert(0, str(Path(__file__).parent / "stubs"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic Colored-MNIST dataset with 400 images per split (default style)."""
    from shortcutlab.data import BuildConfig, build_dataset, load_source

    out = tmp_path_factory.mktemp("tiny_data")
    config = BuildConfig(source="synthetic", limit=TINY_LIMIT)
    build_dataset(config, out, load_source("synthetic", limit=TINY_LIMIT))
    return out


@pytest.fixture
def small_cnn() -> torch.nn.Module:
    from shortcutlab import models

    torch.manual_seed(0)
    return models.create("cnn3", width=4, hidden=16).eval()
