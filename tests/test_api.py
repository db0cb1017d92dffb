"""``shortcutlab.api``: the names users may rely on, documented, typed and runnable."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import shortcutlab.api as api

pytestmark = pytest.mark.usefixtures("one_thread")
README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_public_name_exists_and_is_documented():
    assert sorted(api.__all__) == api.__all__ and len(set(api.__all__)) == len(api.__all__)
    for name in api.__all__:
        obj = getattr(api, name)
        assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
        assert f"{name}`" in api.__doc__, f"{name} is not listed in the module docstring"


def test_public_functions_have_type_hints():
    for name in api.__all__:
        obj = getattr(api, name)
        if not inspect.isfunction(obj):
            continue
        signature = inspect.signature(obj)
        untyped = [p.name for p in signature.parameters.values()
                   if p.annotation is inspect.Parameter.empty
                   and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        assert not untyped, f"{name}: parameters without a type hint: {untyped}"
        assert signature.return_annotation is not inspect.Signature.empty, name


def test_the_readme_uses_only_the_public_api():
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    imports = re.findall(r"from (shortcutlab[\w.]*) import", "\n".join(blocks))
    assert imports and set(imports) == {"shortcutlab.api"}
    inline = re.findall(r"`(shortcutlab\.[\w.]+)\(", text)
    assert all(ref.startswith("shortcutlab.api.") for ref in inline), inline


def test_the_docstring_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = api.__doc__.split("::\n", 1)[1].splitlines()
    block = []
    for line in lines[1:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line[4:])
    namespace: dict = {}
    exec("\n".join(block), namespace)  # the example as users read it
    share = namespace["share"]
    # NaN is the documented share of a map with no positive evidence (a Grad-CAM that is
    # zero everywhere); every other share is a fraction
    empty = namespace["grad_cam"](namespace["model"], namespace["x"]).flatten(1).amax(1) <= 0
    assert share.shape == (8,) and bool((share.isnan() == empty).all()) and not empty.all()
    assert bool(((share[~empty] >= 0) & (share[~empty] <= 1)).all())
