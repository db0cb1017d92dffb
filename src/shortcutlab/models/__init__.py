"""The model zoo: ``create(name, **kwargs)``, ``save(model, dir)``, ``load(dir)``.

Each architecture lives in its own file and registers itself on import.
``batched_forward(model, images, batch_size)`` runs any of them over many images in chunks.
"""

from shortcutlab.models import cnn2fc3, cnn3, mlp, resnet, simpleconv  # noqa: F401  (registration)
from shortcutlab.models.inference import batched_forward
from shortcutlab.models.registry import (
    create,
    factory_for,
    get_layer,
    last_conv,
    list_models,
    load,
    register_model,
    save,
)

__all__ = ["batched_forward", "create", "factory_for", "get_layer", "last_conv", "list_models",
           "load", "register_model", "save"]
