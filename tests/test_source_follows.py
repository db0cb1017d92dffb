"""What MNIST used to fix now follows the dataset: the lazy bar, the judge, class names."""

from __future__ import annotations

import math

import pytest

from shortcutlab.data import load_meta
from shortcutlab.data.dataset import class_names
from shortcutlab.errors import ShortcutlabError
from shortcutlab.train.config import color_only_bar, parse_selection, resolve_selection
from shortcutlab.train.presets import get_preset


def test_the_auto_bar_is_color_alone_plus_one_standard_error():
    assert color_only_bar(10000, 0.95) == 0.952  # the study's bar, derived
    assert color_only_bar(1000, 0.95) == round(0.95 + math.sqrt(0.95 * 0.05 / 1000), 3)
    assert color_only_bar(10000, 0.99) == 0.991
    assert color_only_bar(400, 0.8) == 0.82
    assert color_only_bar(10000, 0.9) > color_only_bar(10000, 0.8)


def test_auto_thresholds_resolve_and_never_hold_unresolved():
    rule = get_preset("lazy")["select"]
    assert "auto" in rule
    unresolved = parse_selection(rule)
    assert not unresolved.fires({"easy_val": 1.0, "easy_train": 1.0})
    resolved = parse_selection(resolve_selection(rule, 0.952))
    assert resolved.fires({"easy_val": 0.952, "easy_train": 0.953})
    assert not resolved.fires({"easy_val": 0.9519, "easy_train": 0.99})
    assert resolve_selection("best-val", 0.9) == "best-val"


def test_a_lazy_run_records_the_bar_its_dataset_set(tiny_data, tmp_path):
    import json

    import numpy as np

    from shortcutlab.train import train_run

    train_run(tiny_data, tmp_path / "run", preset="lazy", steps=30, eval_every=10,
              threads=1)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    meta = load_meta(tiny_data)
    share = np.trace(np.asarray(meta["counts"]["val"])) / meta["sizes"]["val"]
    bar = color_only_bar(meta["sizes"]["val"], share)
    assert config["select_resolved"] == f"first:easy_val>={bar:g},easy_train>={bar:g}"
    assert config["trainer"]["select"] == "first:easy_val>=auto,easy_train>=auto"


def test_class_names_follow_the_source(tiny_data):
    meta = load_meta(tiny_data)
    assert class_names(meta) == [str(c) for c in range(10)]
    fashion = {"config": {"source": "fashion-mnist"}}
    assert class_names(fashion)[7] == "sneaker" and class_names(fashion)[3] == "dress"
    assert class_names({"class_names": ["a", "b"]}) == ["a", "b"]
    assert class_names({"config": {"source": "imported"}, "classes": 3}) == ["0", "1", "2"]


def test_the_judge_is_trained_on_the_datasets_source(tiny_data, tmp_path):
    from shortcutlab.data.importer import import_dataset
    from shortcutlab.probe.grayscale import judge_recipe

    assert judge_recipe(tiny_data).source == "synthetic"
    imported = tmp_path / "imported"
    import_dataset(tiny_data, imported)
    with pytest.raises(ShortcutlabError, match="no grayscale source"):
        judge_recipe(imported)


def test_attack_captions_name_the_sources_classes(tiny_data, tmp_path, train_tiny):
    import json
    import shutil

    from shortcutlab import models
    from shortcutlab.cli import main

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    meta = json.loads((data / "meta.json").read_text())
    meta["class_names"] = [f"class{c}" for c in range(10)]
    (data / "meta.json").write_text(json.dumps(meta))
    run = tmp_path / "run"
    models.save(train_tiny(tiny_data, steps=30), run)
    assert main(["attack", str(run), "--data", str(data), "--split", "test_easy",
                 "--limit", "3", "--steps", "2", "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "attack.json").read_text())
    assert report["class_names"] == {"source": "class7", "target": "class3"}
