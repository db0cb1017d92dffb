"""The one registry type: registering, looking up, ordering, loading, and one error shape."""

from __future__ import annotations

import pytest

from shortcutlab.errors import ShortcutlabError
from shortcutlab.registry import Registry


def test_register_get_and_read_like_a_dict():
    colors: Registry[int] = Registry("color")
    assert colors.register("red", 1) == 1

    @colors.register_as("blue")
    def blue() -> int:
        return 2

    assert colors.get("red") == 1 and colors["blue"] is blue
    assert colors.names() == ["blue", "red"] and list(colors) == ["blue", "red"]
    assert "red" in colors and "green" not in colors and len(colors) == 2
    assert colors.items() == [("blue", blue), ("red", 1)]
    assert colors.values() == [blue, 1]


def test_a_name_registered_twice_with_another_object_is_a_bug():
    things: Registry[object] = Registry("thing")
    first = object()
    things.register("a", first)
    things.register("a", first)  # the same object again (a re-import) is harmless
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        things.register("a", object())
    with pytest.raises(ValueError, match="name"):
        things.register("", first)
    assert things.get("a") is first


def test_unknown_names_raise_one_message_shape():
    things: Registry[int] = Registry("thing", hint=" (see the docs)")
    for name, value in (("b", 2), ("a", 1)):
        things.register(name, value)
    with pytest.raises(ShortcutlabError) as info:
        things.get("c")
    assert str(info.value) == "unknown thing 'c'; choose one of: a, b (see the docs)"
    with pytest.raises(ShortcutlabError, match="unknown thing 'c'"):
        things["c"]
    with pytest.raises(ShortcutlabError, match="unknown thing"):
        things.get(["unhashable"])  # type: ignore[arg-type]


def test_order_sorted_registered_or_given():
    names = ("b", "c", "a")
    plain: Registry[int] = Registry("x")
    registered: Registry[int] = Registry("x", order="registered")
    given: Registry[int] = Registry("x", order=("c", "z"))
    for registry in (plain, registered, given):
        for value, name in enumerate(names):
            registry.register(name, value)
    assert plain.names() == ["a", "b", "c"]
    assert registered.names() == ["b", "c", "a"]
    assert given.names() == ["c", "b", "a"]  # the given ones first, the rest as registered
    with pytest.raises(ShortcutlabError, match=r"choose one of: c, b, a$"):
        given.get("q")
    with pytest.raises(ValueError, match="order"):
        Registry("x", order="alphabetical")


def test_the_loader_runs_once_before_the_first_lookup():
    calls = []

    def load() -> None:
        calls.append(1)
        lazy.register("loaded", 1)
        assert "loaded" in lazy  # a lookup during loading does not load again

    lazy: Registry[int] = Registry("thing", loader=load)
    lazy.register("early", 0)
    assert calls == []  # registering never loads
    assert lazy.names() == ["early", "loaded"] and calls == [1]
    assert lazy.get("loaded") == 1 and "early" in lazy and calls == [1]

    failing: Registry[int] = Registry("thing", loader=lambda: 1 / 0)
    for _ in range(2):  # a loader that failed is tried again, not forgotten
        with pytest.raises(ZeroDivisionError):
            failing.names()


def test_every_library_registry_speaks_the_same_way():
    from shortcutlab import models
    from shortcutlab.attack import attack_class, create_attack, list_attacks
    from shortcutlab.data.styles import STYLES
    from shortcutlab.explain.methods import METHODS
    from shortcutlab.explain.methods import get_method as explanation_method
    from shortcutlab.explain.relevance import COMPOSITES, list_rules, make_composite
    from shortcutlab.intervene.registry import get_method
    from shortcutlab.train import get_algorithm

    assert list_attacks() == ["apgd-ce", "apgd-dlr", "color-shift", "fgsm", "pgd", "pgd-l2"]
    with pytest.raises(ShortcutlabError) as info:
        attack_class("pgdd")
    assert str(info.value) == ("unknown attack 'pgdd'; choose one of: apgd-ce, apgd-dlr, "
                               "color-shift, fgsm, pgd, pgd-l2")
    with pytest.raises(ShortcutlabError, match=r"^unknown attack 'cw'; choose one of: apgd"):
        create_attack("cw", models.create("mlp"))
    cases = [
        (lambda: models.create("transformer"), "model 'transformer'", models.list_models()),
        (lambda: make_composite("alpha-beta"), "LRP rule 'alpha-beta'", list_rules()),
        (lambda: explanation_method("shap"), "explanation method 'shap'", list(METHODS)),
        (lambda: STYLES["plaid"], "style 'plaid'", list(STYLES)),
        (lambda: get_algorithm("nonsense"), "training algorithm 'nonsense'", None),
        (lambda: get_method("magic"), "method 'magic'", None),
    ]
    for call, what, names in cases:
        with pytest.raises(ShortcutlabError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"unknown {what}; choose one of: "), message
        if names is not None:
            hint = models.registry.MODELS.hint if what.startswith("model") else ""
            assert message == f"unknown {what}; choose one of: {', '.join(names)}{hint}"
    assert sorted(COMPOSITES) == list_rules() and "epsilon" in COMPOSITES
    assert list(METHODS) == ["gradcam", "gradcampp", "lrp", "ixg", "ig", "occlusion", "smoothgrad"]
    assert next(iter(STYLES)) == "noise" and STYLES["noise"].name == "noise"
