"""A registry of self-contained model files, in the spirit of timm's ``create_model``.

Every model takes float images (N, 3, 28, 28) with pixels in [0, 1] and does any
normalization itself, so explanations and attacks work in pixel space. Models are built
from plain modules (Conv2d, ReLU, MaxPool2d, Linear, Flatten, BatchNorm), each used once
and never in place, so that explanation methods can hook every layer.

A saved model is a directory with ``model.pt`` (a state_dict) and ``model.json``
(``name``, ``kwargs``, the state_dict's ``sha256``); :func:`load` rebuilds the module
from the registry and loads the weights with ``weights_only=True`` after checking the
checksum.

Models from outside the registry are named ``package.module:factory`` or published under
the ``shortcutlab.models`` entry-point group (:mod:`shortcutlab.models.external`); they
are saved and rebuilt the same way, by importing their factory again.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shortcutlab.artifacts import load_torch, read_json, save_torch, write_json
from shortcutlab.errors import ShortcutlabError
from shortcutlab.models import external
from shortcutlab.registry import Registry

MODEL_FILE = "model.pt"
MODEL_META = "model.json"

MODELS: Registry[Callable[..., nn.Module]] = Registry(
    "model", hint="; or name your own as package.module:factory (e.g. --model mymodels:build "
                  "with mymodels.py beside the command)")


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make a model factory buildable by ``create(name)``."""
    return MODELS.register_as(name)


def list_models() -> list[str]:
    """The registry's models, then those installed packages publish as entry points."""
    own = MODELS.names()
    return own + [name for name in external.entry_point_names() if name not in own]


def factory_for(name: str, search: tuple[str, ...] = ()) -> Callable[..., nn.Module]:
    """The factory behind a model name: the registry's, an entry point's, or an import path
    (looked for in ``search`` folders too, after ``sys.path`` and the current directory)."""
    if not isinstance(name, str) or not name:
        raise ShortcutlabError(f"a model name must be a non-empty string, got {name!r}")
    if name in MODELS:
        return MODELS.get(name)
    if external.is_import_path(name):
        return external.import_factory(name, search)
    factory = external.entry_point_factory(name)
    if factory is None:
        raise ShortcutlabError(MODELS.unknown_message(name))
    return factory


def create(name: str, _search: tuple[str, ...] = (), **kwargs: Any) -> nn.Module:
    """Build a model by name; ``model.spec`` records how, so it can be saved and rebuilt."""
    factory = factory_for(name, _search)
    try:
        model = factory(**kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ShortcutlabError(f"bad arguments for model {name!r}: {exc}") from exc
    model = external.check_built(model, name)
    model.spec = {"name": name, "kwargs": dict(kwargs)}
    if name not in MODELS and external.is_import_path(name):
        model.spec.update(external.module_fingerprint(name))
    return model


def save(model: nn.Module, run_dir: str | os.PathLike) -> dict[str, Any]:
    """Write ``model.pt`` and ``model.json`` into ``run_dir`` atomically."""
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ValueError("only models made by shortcutlab.models.create can be saved")
    run_dir = Path(run_dir)
    # contiguous: the file's bytes must not depend on the memory format trained in
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    digest = save_torch(run_dir / MODEL_FILE, state)
    meta = {**spec, "weights": MODEL_FILE, "sha256": digest}
    write_json(run_dir / MODEL_META, meta)
    return meta


def load(run_dir: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a saved model in eval mode, weights verified and loaded safely.

    Convolution weights come in the channels-last layout the trainer uses: on CPU a
    forward pass of the study's CNN takes about 0.6x the time of the default layout's
    (max-pooling alone a third) and a backward pass 0.75x, with the same predictions;
    ``model.to(memory_format=torch.contiguous_format)`` gives the default back.
    """
    run_dir = Path(run_dir)
    meta_path = run_dir / MODEL_META
    if not meta_path.is_file():
        raise ShortcutlabError(
            f"{run_dir} holds no trained model ({MODEL_META} is missing); "
            "train one with `shortcutlab train` or `shortcutlab intervene`"
        )
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise ShortcutlabError(f"{meta_path} does not describe a model (no \"name\")")
    if not isinstance(meta.get("sha256"), str):
        raise ShortcutlabError(
            f"{meta_path} has no sha256 of its weights, so they cannot be verified; save the "
            "model again with shortcutlab (models.save) or add the file's sha256")
    weights = (run_dir / meta.get("weights", MODEL_FILE)).resolve()
    if weights.parent != run_dir.resolve():
        raise ShortcutlabError(f"{meta_path} names weights outside its directory "
                               f"({meta.get('weights')!r}); a model's weights sit beside it")
    recorded_file = meta.get("module_file")
    search = (str(Path(recorded_file).parent),) if isinstance(recorded_file, str) else ()
    model = create(meta["name"], search, **meta.get("kwargs", {}))
    recorded = meta.get("module_sha256")
    if recorded and model.spec.get("module_sha256") not in (None, recorded):
        warnings.warn(f"{model.spec.get('module_file')} changed since the model in {run_dir} "
                      f"was saved; rebuilding {meta['name']!r} from today's code",
                      stacklevel=2)
    state = load_torch(weights, expected_sha256=meta["sha256"])
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ShortcutlabError(
            f"the weights in {weights} do not fit a {meta['name']} built with "
            f"{meta.get('kwargs', {})} ({first}); {meta_path} and the weights disagree"
        ) from None
    return model.to(device, memory_format=torch.channels_last).eval()


def last_conv(model: nn.Module) -> tuple[str, nn.Module]:
    """The name and module of the model's last Conv2d (Grad-CAM's default layer)."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            found = (name, module)
    if found is None:
        raise ShortcutlabError(
            f"{type(model).__name__} has no Conv2d layer to default to; pass --layer NAME "
            f"(layer= in the library) with one of: {', '.join(layer_names(model))}")
    return found


def layer_names(model: nn.Module) -> list[str]:
    """The dotted names of the model's leaf modules, the candidates for ``--layer``."""
    return [name for name, module in model.named_modules()
            if name and next(module.children(), None) is None]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """A submodule by its dotted name, with the valid names in the error."""
    modules = dict(model.named_modules())
    if name not in modules:
        names = ", ".join(n for n in modules if n)
        raise ShortcutlabError(f"model has no layer {name!r}; layers are: {names}")
    return modules[name]
