"""The public API: what users may rely on, in one place.

Everything listed in ``__all__`` keeps its name and signature across minor versions; the
modules behind it may move. Each stage has a function that runs it on directories (the
same thing its command does) and the building blocks it is made of, for notebooks::

    from shortcutlab.api import (BuildConfig, build_dataset, load_source, load_split,
                                 train_run, load_model, grad_cam, lrp, background_share)

    build_dataset(BuildConfig(source="synthetic", limit=600), "data",
                  load_source("synthetic", limit=600))
    train_run("data", "runs/lazy", preset="lazy")
    model = load_model("runs/lazy")
    hard = load_split("data", "test_hard")
    x = hard.image_tensor()[:8]
    share = background_share(grad_cam(model, x), hard.masks[:8])

The groups, in the order of the study:

- data: :class:`BuildConfig`, :func:`build_dataset`, :func:`load_source`,
  :func:`import_dataset`, :func:`load_split`, :func:`load_meta`, :class:`Split`,
  :class:`ColoredMNIST`, :func:`images_to_tensor`;
- models: :func:`create_model`, :func:`load_model`, :func:`save_model`,
  :func:`register_model`, :func:`list_models` (your own network as
  ``"package.module:factory"``);
- training: :func:`train_run`, :func:`evaluate_model`;
- evidence: :func:`grad_cam`, :func:`lrp`, :func:`check_lrp_model`,
  :func:`input_x_gradient`, :func:`integrated_gradients`, :func:`background_share`,
  :func:`pointing_game`, :func:`deletion_curves`, :func:`explain_run`, :func:`visualize`,
  :func:`run_probe`;
- cures: :func:`intervene_run`, :func:`list_methods`, :func:`run_all`;
- attacks: :func:`create_attack`, :func:`list_attacks`, :func:`minimal_epsilon`,
  :func:`ensemble_minimal_epsilon`, :func:`fmn`, :func:`universal_perturbation`,
  :func:`square_attack`, :class:`AttackSettings`, :func:`run_attack`;
- sparse autoencoders: :func:`train_sae_on_run`, :func:`label_features`,
  :func:`sae_interventions`, :func:`feature_direction`, :func:`accentuate`;
- the whole study: :func:`run_study`; errors: :class:`ShortcutlabError`.
"""

from __future__ import annotations

import importlib
from typing import Any

from shortcutlab.attack import AttackSettings, create_attack, list_attacks, minimal_epsilon
from shortcutlab.attack.experiment import run_attack
from shortcutlab.attack.fmn import fmn
from shortcutlab.attack.minimal import ensemble_minimal_epsilon
from shortcutlab.attack.universal import square_attack, universal_perturbation
from shortcutlab.data import (
    BuildConfig,
    ColoredMNIST,
    Split,
    build_dataset,
    images_to_tensor,
    load_meta,
    load_source,
    load_split,
)
from shortcutlab.data.importer import import_dataset
from shortcutlab.decompose.run import feature_direction, label_features
from shortcutlab.decompose.run import intervene as sae_interventions
from shortcutlab.decompose.run import train_on_run as train_sae_on_run
from shortcutlab.errors import ShortcutlabError
from shortcutlab.explain.faithfulness import deletion_curves
from shortcutlab.explain.gradcam import grad_cam
from shortcutlab.explain.gradients import input_x_gradient, integrated_gradients
from shortcutlab.explain.metrics import background_share, pointing_game
from shortcutlab.explain.relevance import check_model as check_lrp_model
from shortcutlab.explain.relevance import lrp
from shortcutlab.explain.run import explain_run
from shortcutlab.intervene import intervene_run, list_methods, run_all
from shortcutlab.models import create as create_model
from shortcutlab.models import list_models, register_model
from shortcutlab.models import load as load_model
from shortcutlab.models import save as save_model
from shortcutlab.probe.directions import accentuate
from shortcutlab.probe.run import run_probe
from shortcutlab.probe.visualize import visualize
from shortcutlab.train import train_run
from shortcutlab.train.evaluate import evaluate_model

# The study wing is named, not imported, as cli.py names its commands: importing the
# public API does not load the study (its pipeline and report) until run_study is used.
_LAZY = {"run_study": "shortcutlab.study.run"}

__all__ = [
    "AttackSettings", "BuildConfig", "ColoredMNIST", "ShortcutlabError", "Split",
    "accentuate", "background_share", "build_dataset", "check_lrp_model", "create_attack",
    "create_model", "deletion_curves", "ensemble_minimal_epsilon", "evaluate_model",
    "explain_run", "feature_direction", "fmn", "grad_cam", "images_to_tensor",
    "import_dataset", "input_x_gradient", "integrated_gradients", "intervene_run",
    "label_features", "list_attacks", "list_methods", "list_models", "load_meta",
    "load_model", "load_source", "load_split", "lrp", "minimal_epsilon", "pointing_game",
    "register_model", "run_all", "run_attack", "run_probe",
    "run_study",  # noqa: F822  (resolved on first use by __getattr__)
    "sae_interventions", "save_model", "square_attack", "train_run", "train_sae_on_run",
    "universal_perturbation", "visualize",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'shortcutlab.api' has no attribute {name!r}")

