"""Models from outside the registry: ``package.module:factory`` and the entry-point group.

A user's network is named the way plugins name callables: ``mymodels:build`` imports
``mymodels`` (from ``sys.path``, then from the current directory, so a file beside the
command works without installing it) and calls ``build(**kwargs)``; an installed package
can also publish factories under the ``shortcutlab.models`` entry-point group
(``[project.entry-points."shortcutlab.models"] mynet = "mypkg.nets:mynet"``), which makes
``mynet`` a model name like the registry's own.

A saved model records that name, its arguments and the module file's sha256
(:func:`module_fingerprint`); loading imports the module again and never unpickles a
model object. The fingerprint lets :func:`shortcutlab.models.load` warn when the code
changed since the weights were written.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from shortcutlab.errors import ShortcutlabError

ENTRY_POINT_GROUP = "shortcutlab.models"


def is_import_path(name: str) -> bool:
    """True for ``module:attribute`` names (a module path, one colon, an attribute path)."""
    module, sep, attribute = name.partition(":")
    return bool(sep and module and attribute and ":" not in attribute)


def entry_point_names() -> list[str]:
    """The model names installed packages publish, without importing them."""
    try:
        return sorted({ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})
    except Exception:  # a broken distribution's metadata must not break the registry
        return []


def entry_point_factory(name: str) -> Callable[..., nn.Module] | None:
    """The factory an installed package publishes as ``name``, or None."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                return _callable(ep.load(), f"entry point {name!r} ({ep.value})")
            except ShortcutlabError:
                raise
            except Exception as exc:
                raise ShortcutlabError(
                    f"the model entry point {name!r} ({ep.value}) could not be loaded: "
                    f"{type(exc).__name__}: {exc}") from exc
    return None


def _missing(exc: ModuleNotFoundError, module_name: str) -> bool:
    """Whether the named module itself is missing (not one of its own imports)."""
    return exc.name is not None and (module_name == exc.name
                                     or module_name.startswith(exc.name + "."))


def _import_module(module_name: str, search: tuple[str, ...]) -> Any:
    places = [os.getcwd(), *search]
    for place in [None, *places]:
        if place is not None:
            if place in sys.path:
                continue
            sys.path.append(place)  # appended, so an installed module of that name wins
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not _missing(exc, module_name):
                raise
    raise ShortcutlabError(
        f"no module named {module_name!r} (searched sys.path and {', '.join(places)}); put "
        "the file beside the command, install its package, or add its folder to PYTHONPATH")


def import_factory(name: str, search: tuple[str, ...] = ()) -> Callable[..., nn.Module]:
    """The callable ``module:attribute`` names (attribute may be dotted: ``mod:Net.build``),
    imported from ``sys.path``, then the current directory, then the folders in ``search``
    (a saved model's recorded module folder)."""
    module_name, _, attribute = name.partition(":")
    try:
        module = _import_module(module_name, search)
    except ShortcutlabError:
        raise
    except Exception as exc:
        raise ShortcutlabError(f"importing {module_name!r} for model {name!r} failed: "
                               f"{type(exc).__name__}: {exc}") from exc
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            public = sorted(n for n in dir(module) if not n.startswith("_")
                            and callable(getattr(module, n)))
            raise ShortcutlabError(
                f"module {module_name!r} has no {attribute!r} for model {name!r}; its "
                f"callables are: {', '.join(public) or 'none'}")
        target = getattr(target, part)
    return _callable(target, f"model {name!r}")


def _callable(target: Any, what: str) -> Callable[..., nn.Module]:
    if not callable(target):
        raise ShortcutlabError(f"{what} is a {type(target).__name__}, not a function or class "
                               "that builds an nn.Module")
    return target


def module_fingerprint(name: str) -> dict[str, str]:
    """The file and sha256 of the module a ``module:factory`` name imports (empty if the
    module has no file)."""
    module = sys.modules.get(name.partition(":")[0])
    path = getattr(module, "__file__", None)
    if not path or not Path(path).is_file():
        return {}
    return {"module_file": str(Path(path).resolve()),
            "module_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}


def check_built(model: Any, name: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ShortcutlabError(f"model factory {name!r} returned a {type(model).__name__}, "
                               "not a torch.nn.Module")
    return model
