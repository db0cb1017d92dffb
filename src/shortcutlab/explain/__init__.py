"""Task 3, the interrogation: where does a model look, and can we prove it?

* :func:`grad_cam`, :func:`grad_cam_pp`: written from scratch (no Grad-CAM library).
* :func:`lrp`: layer-wise relevance propagation whose heatmaps are differentiable with
  respect to the input and the parameters (the TEA intervention trains on them).
* :func:`input_x_gradient`, :func:`integrated_gradients`.
* :func:`background_share`, :func:`pointing_game`: the evidence, quantified.
* :func:`cascading_randomization`: the sanity check of Adebayo et al.
* :func:`explain_run`: the ``shortcutlab explain`` stage (``explain.json`` and figures).
"""

from shortcutlab.explain.gradcam import grad_cam, grad_cam_pp
from shortcutlab.explain.gradients import input_x_gradient, integrated_gradients
from shortcutlab.explain.lrp import (
    Composite,
    Epsilon,
    Flat,
    Rule,
    ZPlus,
    list_rules,
    lrp,
    make_composite,
    register_composite,
)
from shortcutlab.explain.methods import METHODS, attribution_maps, get_method
from shortcutlab.explain.metrics import background_area, background_share, pointing_game
from shortcutlab.explain.run import ExplainConfig, explain_run
from shortcutlab.explain.sanity import cascading_randomization, rank_correlation

__all__ = [
    "METHODS", "Composite", "Epsilon", "ExplainConfig", "Flat", "Rule", "ZPlus",
    "attribution_maps", "background_area", "background_share", "cascading_randomization",
    "explain_run", "get_method", "grad_cam", "grad_cam_pp", "input_x_gradient",
    "integrated_gradients", "list_rules", "lrp", "make_composite", "pointing_game",
    "rank_correlation", "register_composite",
]
