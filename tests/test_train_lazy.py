"""The research claim of Task 1, on real data: the lazy preset makes cnn3 a cheater."""

from __future__ import annotations

import pytest

from shortcutlab.train.presets import PRESETS


def test_the_lazy_preset_selects_on_easy_validation_only():
    lazy = PRESETS["lazy"]
    assert lazy["select"].startswith("first:easy_val>=")
    assert "hard" not in lazy["select"] and "unbiased" not in lazy["select"]
    assert lazy["model"] == "cnn3" and "model_kwargs" not in lazy  # cnn3 at its defaults
    assert PRESETS["standard"]["select"] == "best-val"


@pytest.mark.slow
def test_lazy_preset_meets_the_three_bars_on_the_default_dataset(tmp_path_factory):
    from shortcutlab.data import BuildConfig, build_dataset, load_source
    from shortcutlab.train import train_run

    data = tmp_path_factory.mktemp("cmnist-default")
    config = BuildConfig()  # real MNIST, 95% bias, noise style, seed 0
    assert (config.source, config.bias, config.style) == ("mnist", 0.95, "noise")
    build_dataset(config, data, load_source("mnist"))
    metrics = train_run(data, tmp_path_factory.mktemp("lazy"), preset="lazy", seed=0,
                        device="cpu")
    assert metrics["selection_met"]
    assert metrics["easy_train"] > 0.95
    assert metrics["easy_val"] > 0.95
    assert metrics["hard"] < 0.20
    assert metrics["color_following_rate"] > 0.5  # it fails because it reads color
