"""Task 4: cure the lazy model with debiasing methods, each trained next to its control.

- :func:`intervene_run` trains one method into a run directory (``shortcutlab intervene
  --method NAME``), loadable with ``shortcutlab.models.load``;
- :func:`run_all` trains every method and its ``erm-control`` over seeds and writes the
  results table (``shortcutlab intervene --all``);
- :mod:`shortcutlab.intervene.convergence` draws a run's learning curves and flags a run
  stopped while still improving (:func:`still_rising`, :class:`UndertrainedWarning`);
- :func:`get_method`, :func:`list_methods` and the hyperparameter registry
  (:mod:`shortcutlab.intervene.hparams`) describe what exists.
"""

from shortcutlab.intervene.convergence import UndertrainedWarning, assess_run, still_rising
from shortcutlab.intervene.hparams import (
    EPOCHS,
    OPTIMIZER_KEYS,
    default_hparams,
    hparam_space,
    random_hparams,
    resolve_hparams,
)
from shortcutlab.intervene.registry import (
    USES,
    Intervention,
    get_method,
    hypothesis,
    list_methods,
    register_method,
)
from shortcutlab.intervene.run import intervene_run
from shortcutlab.intervene.table import run_all

__all__ = [
    "EPOCHS", "OPTIMIZER_KEYS", "USES", "Intervention", "UndertrainedWarning", "assess_run",
    "default_hparams", "get_method", "hparam_space", "hypothesis", "intervene_run",
    "list_methods", "random_hparams", "register_method", "resolve_hparams", "run_all",
    "still_rising",
]
