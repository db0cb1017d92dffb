"""Published protocols as benchmarks: their data files, their datasets, the grid run
through the sweep machinery (resumed, on SQLite and PostgreSQL) and the table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shortcutlab.cli import main
from shortcutlab.data import load_source
from shortcutlab.data.build import BuildConfig, build_arrays
from shortcutlab.data.palette import LFF_COLORS, PALETTE
from shortcutlab.errors import ShortcutlabError
from shortcutlab.protocols import get_protocol, list_protocols, run_benchmark, sweep_spec
from shortcutlab.sweep import parse_spec

LIMIT = 300


def protocol_arrays(name: str, ratio: float) -> dict:
    protocol = get_protocol(name)
    config = BuildConfig(**{**protocol.dataset, "source": "synthetic", "limit": LIMIT,
                            "validation": 50}, bias=1.0 - ratio)
    return build_arrays(load_source("synthetic", limit=LIMIT), config)


def test_every_shipped_protocol_loads_and_names_its_sources():
    assert set(list_protocols()) >= {"lff-cmnist", "rebias-biased-mnist", "shortcutlab"}
    for name in list_protocols():
        protocol = get_protocol(name)
        assert protocol.paper and protocol.metric and protocol.ratios
        for row in protocol.published:
            assert row.source and len(row.values) <= len(protocol.ratios)
        spec = parse_spec(sweep_spec(protocol, methods=protocol.methods[:2],
                                     ratios=protocol.ratios[:1], seeds=(0,),
                                     source="synthetic", limit=LIMIT))
        assert spec.grid_size() == 2


def test_lff_cmnist_colors_the_stroke_and_splits_conflicts_evenly_per_class():
    arrays = protocol_arrays("lff-cmnist", 0.1)
    train = arrays["train"]
    gray = load_source("synthetic", limit=LIMIT)["train_images"][: len(train["labels"])]
    assert np.all(train["images"][gray == 0] == 0)  # black background
    ink = gray == 255
    palette = np.asarray(LFF_COLORS)
    for image, mask, color in zip(train["images"], ink, train["colors"], strict=True):
        if mask.any():  # the stroke in (about) its color's mean, noise std 0.005
            assert np.abs(image[mask].mean(0) - palette[color]).max() < 6
    for c in range(10):
        colors = train["colors"][train["labels"] == c]
        counts = np.bincount(colors, minlength=10)
        assert counts[c] == round(0.9 * len(colors))
        others = np.delete(counts, c)
        assert others.max() - others.min() <= 1
    test = arrays["test_unbiased"]
    for c in range(10):
        counts = np.bincount(test["colors"][test["labels"] == c], minlength=10)
        assert counts.max() - counts.min() <= 1


def test_rebias_biased_mnist_colors_the_background_and_whitens_the_digit():
    train = protocol_arrays("rebias-biased-mnist", 0.01)["train"]
    gray = load_source("synthetic", limit=LIMIT)["train_images"][: len(train["labels"])]
    assert np.all(train["images"][gray > 0] == 255)
    pixel = train["images"][:, 0, 0]  # a corner: background in every synthetic digit
    np.testing.assert_array_equal(pixel, np.asarray(PALETTE)[train["colors"]])


def test_protocols_refuse_what_they_do_not_have():
    protocol = get_protocol("lff-cmnist")
    with pytest.raises(ShortcutlabError, match=r"ratios are 0\.005, 0\.01, 0\.02, 0\.05"):
        protocol.check_ratios([0.3])
    with pytest.raises(ShortcutlabError, match=r"choose from .*jtt"):
        protocol.check_methods(["vanilla"])
    with pytest.raises(ShortcutlabError, match="MLP has none"):
        protocol.check_methods(["saliency-guide"])
    with pytest.raises(ShortcutlabError, match="official, clean"):
        protocol.scaling("raw")
    with pytest.raises(ShortcutlabError, match="lff-cmnist, rebias-biased-mnist"):
        get_protocol("waterbirds")


def test_cli_lists_and_shows_protocols(capsys):
    assert main(["benchmark", "--list"]) == 0
    assert "rebias-biased-mnist" in capsys.readouterr().out
    assert main(["benchmark", "lff-cmnist", "--show"]) == 0
    shown = capsys.readouterr().out
    assert "35.34" in shown and "input_scale" not in shown and "official (default)" in shown
    assert main(["benchmark", "lff-cmnist", "--ratios", "0.5", "--out", "x"]) == 2
    assert "its ratios are" in capsys.readouterr().err


def run_grid(out, storage=None, workers=1):
    return run_benchmark(get_protocol("lff-cmnist"), out, methods=["erm", "lff"],
                         ratios=[0.05], seeds=(0, 1), epochs=3, workers=workers,
                         storage=storage, limit=LIMIT, source="synthetic", threads=1)


def check_table(out, table):
    cells = {cell["method"]: cell for cell in table["cells"]}
    assert set(cells) == {"erm", "lff"}
    for cell in cells.values():
        assert cell["seeds"] == 2 and cell["failed"] == 0
        assert 0.0 <= cell["mean"] <= 100.0 and cell["std"] is not None
        assert cell["published"] == {"erm": 77.63, "lff": 85.39}[cell["method"]]
        assert cell["difference"] == pytest.approx(cell["mean"] - cell["published"])
    markdown = (out / "table.md").read_text()
    assert "77.63" in markdown and "3 epochs instead of the protocol's 100" in markdown
    assert (out / "table.png").is_file() and (out / "table.csv").is_file()
    stored = json.loads((out / "table.json").read_text())
    assert stored["protocol"] == "lff-cmnist" and stored["scaling"] == "official"


def test_a_benchmark_grid_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "bench"
    table = run_grid(out, workers=2)
    check_table(out, table)
    runs = sorted(path.name for path in (out / "runs").iterdir() if path.is_dir())
    assert len(runs) == 4
    stamps = {path: path.stat().st_mtime_ns for path in (out / "runs").glob("*/metrics.json")}
    again = run_grid(out)  # everything finished: trains nothing, same table
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert again["cells"] == table["cells"]
    # LfF's own settings on this protocol reached only LfF's trials
    configs = [json.loads((path.parent / "config.json").read_text()) for path in stamps]
    lff = [c for c in configs if c.get("method") == "lff" or c.get("algorithm") == "lff"]
    assert lff and all(c["hparams"]["warmup"] == 0.0 for c in lff)


@pytest.mark.postgres
def test_a_benchmark_grid_runs_on_postgres(tmp_path, postgres_url):
    import optuna

    from shortcutlab.sweep.storage import normalize_url

    out = tmp_path / "bench"
    table = run_grid(out, storage=postgres_url, workers=2)
    try:
        check_table(out, table)
    finally:
        for name in table["studies"]:
            optuna.delete_study(study_name=name, storage=normalize_url(postgres_url))


def test_the_table_shows_the_second_metric_beside_the_first():
    from shortcutlab.protocols.table import render_markdown, summarize

    protocol = get_protocol("lff-cmnist")
    rows = [{"state": "COMPLETE", "value": first, "data.bias": 0.995, "train.algorithm": "erm",
             "train.seed": seed, protocol.second_metric: second}
            for seed, (first, second) in enumerate([(0.40, 0.34), (0.42, 0.36), (0.44, 0.38)])]
    table = summarize(protocol, rows, ["erm"], [0.005], [0, 1, 2])
    cell = table["cells"][0]
    assert cell["mean"] == pytest.approx(42.0) and cell["second_mean"] == pytest.approx(36.0)
    assert cell["second_difference"] == pytest.approx(36.0 - 35.34)
    text = render_markdown({**table, "title": "t", "protocol": "p", "paper": "x", "code": "c",
                            "metric_text": "m", "metric": "m", "selection": "s",
                            "scaling": "official", "scaling_text": "", "epochs": 100.0,
                            "seeds": [0, 1, 2], "ratios": [0.005], "deviations": []})
    assert "36.00 ± 2.00 | +0.66 |" in text and protocol.second_metric in text
    assert "`erm`: nothing beyond images and labels" in text


def test_the_table_says_what_each_method_knows_of_the_bias():
    from shortcutlab.protocols.table import method_uses

    assert method_uses("erm") == ["none"] and method_uses("lff") == ["none"]
    assert method_uses("groupdro") == ["color-labels"]
    assert method_uses("color-consistency") == ["bias-knowledge"]


def test_a_method_setting_instead_of_the_protocols_is_its_own_study():
    protocol = get_protocol("lff-cmnist")
    plain = sweep_spec(protocol, methods=("lff",), ratios=(0.01,), seeds=(0,))
    changed = sweep_spec(protocol, methods=("lff",), ratios=(0.01,), seeds=(0,),
                         settings={"lff": {"sampling": 1}})
    assert plain["fixed"]["train"]["hparams"]["lff"]["sampling"] == 0  # the official one
    lff = changed["fixed"]["train"]["hparams"]["lff"]
    assert lff["sampling"] == 1 and lff["warmup"] == 0.0  # the rest stays the protocol's
    assert changed["study"] != plain["study"] and changed["study"].startswith(plain["study"])
    parse_spec(changed)  # a valid sweep
    other = sweep_spec(protocol, methods=("erm",), ratios=(0.01,), seeds=(0,),
                       settings={"lff": {"sampling": 1}})
    assert other["study"].endswith("-erm")  # settings of a method not run change nothing
