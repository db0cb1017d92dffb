"""The model zoo: ``create(name, **kwargs)``, ``save(model, dir)``, ``load(dir)``.

Each architecture lives in its own file and registers itself on import.
"""

from shortcutlab.models import cnn2fc3, cnn3, mlp, resnet  # noqa: F401  (registration)
from shortcutlab.models.registry import (
    create,
    get_layer,
    last_conv,
    list_models,
    load,
    register_model,
    save,
)

__all__ = ["create", "get_layer", "last_conv", "list_models", "load", "register_model", "save"]
