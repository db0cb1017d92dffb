"""Task 3, the interrogation: where does a model look, and can we prove it?

* :func:`grad_cam`, :func:`grad_cam_pp`: written from scratch (no Grad-CAM library).
* :func:`lrp`: layer-wise relevance propagation whose heatmaps are differentiable with
  respect to the input and the parameters (the TEA intervention trains on them).
* :func:`input_x_gradient`, :func:`integrated_gradients`.
* :func:`background_share`, :func:`pointing_game`: the evidence, quantified.
* :func:`cascading_randomization`: the sanity check of Adebayo et al.
* :func:`explain_run`: the ``shortcutlab explain`` stage (``explain.json`` and figures).

Names are imported on first use, so that importing the CLI (which imports this package's
``commands`` module) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "grad_cam": "gradcam", "grad_cam_pp": "gradcam",
    "input_x_gradient": "gradients", "integrated_gradients": "gradients",
    "lrp": "relevance", "Composite": "relevance", "Epsilon": "relevance", "Flat": "relevance",
    "Rule": "relevance", "check_model": "relevance",
    "ZPlus": "relevance", "list_rules": "relevance", "make_composite": "relevance",
    "register_composite": "relevance",
    "METHODS": "methods", "attribution_maps": "methods", "get_method": "methods",
    "background_area": "metrics", "background_share": "metrics", "pointing_game": "metrics",
    "ExplainConfig": "run", "explain_run": "run", "headline": "run",
    "cascading_randomization": "sanity", "rank_correlation": "sanity",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'shortcutlab.explain' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"shortcutlab.explain.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
