"""Sweeps: spec validation, grids and searches on SQLite, dataset reuse, export, the CLI.

Trials run a fast fake objective (tests/sweep_fakes.py) so that these tests check the
sweep machinery; test_sweep_postgres.py runs the same on a real PostgreSQL server with
several worker processes.
"""

from __future__ import annotations

import csv
import itertools
import json
import threading
from pathlib import Path

import optuna
import pytest
import yaml

import sweep_fakes
from shortcutlab.cli import main
from shortcutlab.errors import ShortcutlabError
from shortcutlab.sweep import datasets as sweep_datasets
from shortcutlab.sweep import export_study, load_spec, parse_spec, run_sweep
from shortcutlab.sweep import storage as sweep_storage
from shortcutlab.sweep.runner import ClaimLock, claim_trial, open_study, resolve_paths
from shortcutlab.sweep.storage import normalize_url

LIMIT = 40  # images per split: the fake objective never looks at them


def grid_raw(study: str = "grid", **extra) -> dict:
    raw = {
        "study": study,
        "mode": "grid",
        "fixed": {"data": {"source": "synthetic", "limit": LIMIT}, "train": {"epochs": 1}},
        "axes": {
            "data": {"bias": [0.9, 0.99]},
            "train": {"lr": [0.01, sweep_fakes.FAILING_LR, 0.1], "model_kwargs": {"width": [4, 8]}},
        },
    }
    raw.update(extra)
    return raw


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=normalize_url(url))


def grid_points(spec) -> set[tuple]:
    return set(itertools.product(*spec.grid_space().values()))


def trial_point(trial, spec) -> tuple:
    return tuple(trial.params[name] for name in spec.grid_space())


# ---------------------------------------------------------------------------- specs


@pytest.mark.parametrize(("change", "message"), [
    ({"axes": {"data": {"colour": [1]}}}, "unknown dataset parameter axes.data.colour"),
    ({"axes": {"train": {"learning_rate": [0.1]}}}, "unknown training parameter"),
    ({"axes": {"model": {"width": [1]}}}, "unknown section"),
    ({"axes": {"train": {"batch_size": [32.5]}}}, "batch_size: expected int"),
    ({"axes": {"train": {"batch_size": ["64"]}}}, "expected int"),
    ({"axes": {"train": {"lr": [True]}}}, "expected float"),
    ({"axes": {"data": {"bias": [0.9, 1.5]}}}, "bias = 1.5: bias must be in"),
    ({"axes": {"data": {"style": ["plaid"]}}}, "unknown style"),
    ({"axes": {"train": {"lr": {"low": 0.001, "high": 0.1}}}}, "a grid needs a list"),
    ({"axes": {"train": {"lr": []}}}, "has no values"),
    ({"axes": {"train": {"lr": [0.1, 0.1]}}}, "lists a value twice"),
    ({"axes": {"train": {"model": ["cnn3", "transformer"]}}}, "unknown model 'transformer'"),
    ({"axes": {}}, "sweeps nothing"),
    ({"mode": "random"}, "mode must be one of"),
    ({"n_trials": 5}, "n_trials is for mode: search"),
    ({"objective": {"metric": "hard", "direction": "down"}}, "minimize or maximize"),
    ({"study": "has spaces"}, "spec needs `study: NAME`"),
    ({"epochs": 3}, "unknown spec key"),
    ({"fixed": {"train": {"lr": 0.1}}}, "both fixed and swept"),
    ({"fixed": {"data": {"source": "cifar"}}}, "unknown source"),
    ({"fixed": {"data": {"bias": "high"}}}, "fixed.data.bias: expected float"),
    ({"runner": "no_colon"}, "package.module:function"),
])
def test_spec_errors_name_the_problem(change, message):
    raw = grid_raw()
    raw.update(change)
    with pytest.raises(ShortcutlabError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_spec(raw)


def test_search_spec_needs_budget_and_checks_ranges():
    raw = {"study": "s", "mode": "search", "axes": {"train": {"lr": {"low": 1e-4, "high": 0.1}}}}
    with pytest.raises(ShortcutlabError, match="n_trials"):
        parse_spec(raw)
    raw["n_trials"] = 4
    raw["axes"]["train"]["lr"] = {"low": 0.1, "high": 0.01}
    with pytest.raises(ShortcutlabError, match="must be below high"):
        parse_spec(raw)
    raw["axes"]["train"]["lr"] = {"low": 0.0, "high": 0.1, "log": True}
    with pytest.raises(ShortcutlabError, match="log range needs low > 0"):
        parse_spec(raw)
    raw["axes"]["train"]["batch_size"] = {"low": 16.0, "high": 64.0}
    raw["axes"]["train"]["lr"] = {"low": 1e-4, "high": 0.1, "log": True}
    with pytest.raises(ShortcutlabError, match="batch_size: expected int values"):
        parse_spec(raw)


def test_spec_file_reads_yaml_floats_and_nested_model_kwargs(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(
        "study: t\n"
        "axes:\n"
        "  data: {bias: [0.95]}\n"
        "  train:\n"
        "    lr: [1e-3, 3e-2]\n"
        "    model_kwargs: {width: [8], kernel_size: [3, 5]}\n"
        "fixed:\n"
        "  train: {model_kwargs: {hidden: 64}, preset: lazy}\n"
    )
    spec = load_spec(path)
    assert spec.grid_space()["train.lr"] == [0.001, 0.03]
    assert spec.grid_size() == 4
    data, train = spec.trial_config({"data.bias": 0.95, "train.lr": 0.001,
                                     "train.model_kwargs.width": 8,
                                     "train.model_kwargs.kernel_size": 5})
    assert data == {"bias": 0.95}
    assert train == {"preset": "lazy", "lr": 0.001,
                     "model_kwargs": {"hidden": 64, "width": 8, "kernel_size": 5}}
    path.write_text("study: t\naxes: [oops")
    with pytest.raises(ShortcutlabError, match="not valid YAML"):
        load_spec(path)


# ---------------------------------------------------------------------------- grids


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """The 12-point grid (2 biases x 3 lrs x 2 widths, one lr failing) run once on SQLite."""
    out = tmp_path_factory.mktemp("grid")
    spec = parse_spec(grid_raw())
    summary = run_sweep(spec, output=out, run_trial=sweep_fakes.fake_trial)
    return spec, out, summary


def test_grid_on_sqlite_runs_every_point_once_and_records_failures(grid_run):
    spec, tmp_path, summary = grid_run
    assert summary["planned"] == summary["done"] == 12
    study = load(str(tmp_path / "sweep.db"), "grid")
    trials = study.get_trials()
    points = [trial_point(t, spec) for t in trials]
    assert len(points) == 12 and set(points) == grid_points(spec)

    failed = [t for t in trials if t.state.name == "FAIL"]
    assert {t.params["train.lr"] for t in failed} == {sweep_fakes.FAILING_LR}
    assert len(failed) == 4
    assert all("training diverged" in t.user_attrs["error"] for t in failed)
    for trial in trials:
        if trial.state.name != "COMPLETE":
            continue
        _, train = spec.trial_config(trial.params)
        expected = sweep_fakes.fake_metrics(Path(trial.user_attrs["dataset_dir"]), train)
        assert trial.value == expected["hard"]  # the trial ran with its own grid point
        assert trial.user_attrs["hard"] == expected["hard"]
        assert trial.user_attrs["per_class.0"] == expected["hard"]  # nested metrics, dotted
        assert trial.user_attrs["duration_s"] >= 0
        assert json.loads(Path(trial.user_attrs["run_dir"], "sweep_trial.json").read_text())[
            "params"] == trial.params

    # running it again finds nothing to do: failed points are not retried forever
    again = run_sweep(spec, output=tmp_path, run_trial=sweep_fakes.fake_trial)
    assert again["done"] == 12 and len(load(str(tmp_path / "sweep.db"), "grid").trials) == 12


def test_datasets_are_built_once_per_config(grid_run):
    _, tmp_path, _ = grid_run
    trials = load(str(tmp_path / "sweep.db"), "grid").get_trials()
    built = [t for t in trials if t.user_attrs.get("dataset_built")]
    assert len(built) == 2  # two biases, twelve trials
    assert {t.params["data.bias"] for t in built} == {0.9, 0.99}
    cached = [p for p in (tmp_path / "datasets").iterdir() if not p.name.startswith(".")]
    assert len(cached) == 2
    assert {t.user_attrs["dataset"] for t in trials} == {p.name for p in cached}


def test_concurrent_requests_build_a_dataset_once(tmp_path, monkeypatch):
    import shortcutlab.data

    calls = []
    real_build = shortcutlab.data.build_dataset

    def counting_build(*args, **kwargs):
        calls.append(1)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(shortcutlab.data, "build_dataset", counting_build)
    results = []
    data = {"source": "synthetic", "limit": LIMIT, "bias": 0.8}
    threads = [threading.Thread(target=lambda: results.append(
        sweep_datasets.ensure_dataset(data, tmp_path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len({path for path, _ in results}) == 1
    assert sorted(built for _, built in results) == [False, False, True]
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [
        results[0][0].name]  # no staging directory left behind


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupted_trial_releases_its_point(tmp_path, monkeypatch, how):
    spec = parse_spec(grid_raw(axes={"data": {"bias": [0.9, 0.99]}}))
    flag = tmp_path / "interrupt"
    flag.write_text(how)
    monkeypatch.setenv("SWEEP_INTERRUPT", str(flag))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, output=tmp_path, run_trial=sweep_fakes.interrupting_trial)
    study = load(str(tmp_path / "sweep.db"), "grid")
    assert [t.user_attrs.get("failure") for t in study.trials] == ["interrupted"]
    run_sweep(spec, output=tmp_path, run_trial=sweep_fakes.interrupting_trial)
    trials = load(str(tmp_path / "sweep.db"), "grid").trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["data.bias"] for t in complete) == [0.9, 0.99]
    assert len(trials) == 3  # the interrupted point ran once more, nothing else did


def test_point_of_a_dead_worker_is_claimed_again(tmp_path):
    import sqlite3

    spec = parse_spec(grid_raw(axes={"data": {"bias": [0.9, 0.99]}}))
    paths = resolve_paths(spec, tmp_path)
    study = open_study(spec, paths.storage)
    lock = ClaimLock(paths.storage, spec.study)
    orphan = claim_trial(study, spec, lock)  # claimed, then the worker "dies"
    lock.close()
    # its last heartbeat an hour ago, far beyond the grace period (instead of waiting: the
    # SQLite clock the check reads has whole seconds only)
    with sqlite3.connect(sweep_storage.sqlite_path(paths.storage)) as db:
        changed = db.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', "
                             "'-1 hour') WHERE trial_id = (SELECT trial_id FROM trials "
                             "WHERE number = ?)", (orphan.number,)).rowcount
    assert changed == 1
    run_sweep(spec, output=tmp_path, run_trial=sweep_fakes.fake_trial)
    trials = load(paths.storage, "grid").trials
    assert trials[orphan.number].state.name == "FAIL"
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["data.bias"] for t in complete) == [0.9, 0.99]


def test_study_refuses_a_different_spec(tmp_path):
    run_sweep(parse_spec(grid_raw(axes={"data": {"bias": [0.9]}})), output=tmp_path,
              run_trial=sweep_fakes.fake_trial)
    with pytest.raises(ShortcutlabError, match="different spec"):
        run_sweep(parse_spec(grid_raw(axes={"data": {"bias": [0.8]}})), output=tmp_path,
                  run_trial=sweep_fakes.fake_trial)


def test_search_runs_its_budget_within_the_ranges(tmp_path):
    raw = {
        "study": "search", "mode": "search", "n_trials": 4, "seed": 3,
        "objective": {"metric": "hard", "direction": "minimize"},
        "fixed": {"data": {"source": "synthetic", "limit": LIMIT}},
        "axes": {"train": {"lr": {"low": 1e-3, "high": 0.2, "log": True},
                           "model_kwargs.width": {"low": 4, "high": 16, "step": 4}}},
    }
    spec = parse_spec(raw)
    run_sweep(spec, output=tmp_path, run_trial=sweep_fakes.fake_trial)
    run_sweep(spec, output=tmp_path, run_trial=sweep_fakes.fake_trial)  # budget is spent
    trials = load(str(tmp_path / "sweep.db"), "search").trials
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    for trial in trials:
        assert 1e-3 <= trial.params["train.lr"] <= 0.2
        assert trial.params["train.model_kwargs.width"] in (4, 8, 12, 16)
    # the same seed proposes the same trials
    other = tmp_path / "again"
    run_sweep(spec, output=other, run_trial=sweep_fakes.fake_trial)
    assert [t.params for t in load(str(other / "sweep.db"), "search").trials] == [
        t.params for t in trials]


def test_missing_objective_metric_fails_the_trial_clearly(tmp_path):
    spec = parse_spec(grid_raw(axes={"data": {"bias": [0.9]}},
                               objective={"metric": "worst_group"}))
    run_sweep(spec, output=tmp_path, run_trial=sweep_fakes.fake_trial)
    (trial,) = load(str(tmp_path / "sweep.db"), "grid").trials
    assert trial.state.name == "FAIL"
    assert "no 'worst_group'" in trial.user_attrs["error"]


# ---------------------------------------------------------------------------- export


def test_export_writes_table_figures_and_summary(grid_run, tmp_path):
    url = str(grid_run[1] / "sweep.db")
    result = export_study(url, "grid", tmp_path / "export", x="bias", y="train.lr")
    with open(result["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12
    assert {"number", "state", "duration_s", "data.bias", "train.lr",
            "train.model_kwargs.width", "hard", "easy_val", "cheats", "error"} <= set(rows[0])
    assert sorted({row["state"] for row in rows}) == ["COMPLETE", "FAIL"]
    assert all(row["error"] for row in rows if row["state"] == "FAIL")
    figures = [Path(f) for f in result["figures"]]
    assert {f.name for f in figures} == {"phase_hard_lr_vs_bias.png",
                                         "phase_cheats_lr_vs_bias.png", "main_effects.png",
                                         "cheat_window.png"}
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    cells = json.loads((tmp_path / "export" / "phase_diagrams.json").read_text())["diagrams"][0]
    assert cells["x_values"] == [0.9, 0.99] and cells["y_values"] == [0.01, 0.1]
    hard = {(float(r["data.bias"]), float(r["train.lr"]), r["train.model_kwargs.width"]):
            float(r["hard"]) for r in rows if r["state"] == "COMPLETE"}
    expected = (hard[(0.9, 0.01, "4")] + hard[(0.9, 0.01, "8")]) / 2  # averaged over width
    assert cells["mean"][0][0] == pytest.approx(expected)
    summary = (tmp_path / "export" / "summary.md").read_text()
    assert "4 failed" in summary and "training diverged" in summary

    # --where: the figures only average over the trials that meet every condition
    export_study(url, "grid", tmp_path / "narrow", x="bias", y="lr",
                 where=["width=4", "easy_val>=0.9"])
    narrow = json.loads((tmp_path / "narrow" / "phase_diagrams.json").read_text())["diagrams"][0]
    assert narrow["mean"][0][0] == pytest.approx(hard[(0.9, 0.01, "4")])
    assert narrow["count"] == [[1, 1], [1, 1]]
    with pytest.raises(ShortcutlabError, match="cannot read the condition"):
        export_study(url, "grid", tmp_path / "narrow", where=["width~4"])
    with pytest.raises(ShortcutlabError, match="no trial meets"):
        export_study(url, "grid", tmp_path / "narrow", where=["hard>5"])
    with pytest.raises(ShortcutlabError, match="no axis 'depth'"):
        export_study(url, "grid", tmp_path / "export", x="depth", y="lr")
    with pytest.raises(ShortcutlabError, match="no study 'nope'"):
        export_study(url, "nope", tmp_path / "export")


# ---------------------------------------------------------------------------- CLI


def test_cli_runs_and_exports_a_spec(tmp_path, capsys):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(grid_raw(
        "cli", runner="sweep_fakes:fake_trial", output=str(tmp_path / "out"))))
    assert main(["sweep", str(spec_path), "--dry-run"]) == 0
    assert "12 grid points on 2 dataset(s)" in capsys.readouterr().out
    assert main(["sweep", str(spec_path)]) == 0
    out = capsys.readouterr().out
    assert "12 of 12 done (8 complete, 4 failed)" in out
    assert main(["sweep", "export", str(spec_path)]) == 0
    export = tmp_path / "out" / "export"
    assert (export / "trials.csv").is_file() and (export / "summary.md").is_file()
    assert len(list(export.glob("phase_hard_*.png"))) == 3  # every pair of the three axes
    storage = str(tmp_path / "out" / "sweep.db")
    assert main(["sweep", "export", "--storage", storage, "--study", "cli",
                 "--out", str(tmp_path / "e2"), "--x", "width", "--y", "bias",
                 "--metric", "unbiased"]) == 0
    assert [p.name for p in (tmp_path / "e2").glob("phase_*.png")] == [
        "phase_unbiased_bias_vs_width.png"]
    assert main(["sweep", "export", "--out", str(tmp_path / "e3")]) == 2
    assert "--storage URL and --study NAME" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "missing.yaml")]) == 2
    with pytest.raises(SystemExit):
        main(["sweep", str(spec_path), "--study", "x"])


# ---------------------------------------------------------------------------- real trainer


def test_sweep_trains_real_models(tmp_path):
    spec = parse_spec({
        "study": "real",
        "fixed": {"data": {"source": "synthetic", "limit": 120},
                  "train": {"preset": "lazy", "steps": 3, "batch_size": 16, "eval_every": 3,
                            "select": "last", "model_kwargs": {"width": 2, "hidden": 8}}},
        "axes": {"train": {"lr": [0.01, 0.05]}},
    })
    run_sweep(spec, output=tmp_path, threads=1)
    trials = load(str(tmp_path / "sweep.db"), "real").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for trial in trials:
        run_dir = Path(trial.user_attrs["run_dir"])
        metrics = json.loads((run_dir / "metrics.json").read_text())
        for key in ("easy_train", "easy_val", "test_easy", "hard", "unbiased",
                    "color_following_rate"):
            assert trial.user_attrs[key] == metrics[key]
        assert trial.value == metrics["hard"]
        config = json.loads((run_dir / "config.json").read_text())
        assert json.dumps(config).count(str(trial.params["train.lr"])) >= 1
        assert (run_dir / "model.json").is_file()


def test_sweep_trains_an_intervention_by_name(tiny_data, tmp_path):
    """`algorithm: jtt` trains the intervention with its own hyperparameters swept, typed
    and defaulted by its table; the data is the session's tiny dataset, put in the cache."""
    from shortcutlab.data import BuildConfig, load_meta
    from shortcutlab.sweep.datasets import dataset_key

    data = {"source": "synthetic", "limit": load_meta(tiny_data)["config"]["limit"]}
    key = dataset_key(BuildConfig(**data))
    assert key == dataset_key(BuildConfig(**load_meta(tiny_data)["config"]))
    cache = tmp_path / "datasets"
    cache.mkdir()
    (cache / key).symlink_to(tiny_data, target_is_directory=True)
    spec = parse_spec({
        "study": "jtt",
        "fixed": {"data": data,
                  "train": {"preset": "lazy", "algorithm": "jtt", "steps": 4, "batch_size": 16,
                            "eval_every": 2, "select": "last",
                            "model_kwargs": {"width": 2, "hidden": 8}}},
        "axes": {"train": {"upweight": [5, 10]}},
    })
    run_sweep(spec, output=tmp_path / "out", datasets=cache, threads=1)
    trials = load(str(tmp_path / "out" / "sweep.db"), "jtt").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for trial in trials:
        assert trial.user_attrs["dataset_built"] is False
        run_dir = Path(trial.user_attrs["run_dir"])
        assert json.loads((run_dir / "metrics.json").read_text())["method"] == "jtt"
        config = json.loads((run_dir / "config.json").read_text())
        assert config["hparams"] == {"identify_fraction": 0.2,
                                     "upweight": trial.params["train.upweight"]}


@pytest.mark.parametrize(("train", "axes", "message"), [
    ({"algorithm": "nonsense"}, {"lr": [0.1]},
     r"unknown algorithm 'nonsense' in the spec; choose one of .*\berm\b.*\bjtt\b"),
    ({}, {"algorithm": ["erm", "nonsense"]}, "unknown algorithm 'nonsense'"),
    ({"algorithm": "jtt", "upweigth": 5}, {"lr": [0.1]},
     r"fixed\.train\.upweigth; .*hyperparameters of the spec's algorithm: identify_fraction, "
     "upweight"),
    ({"algorithm": "jtt"}, {"upweight": [5.5]}, "axes.train.upweight: expected int"),
    ({}, {"algorithm": ["erm", "jtt"], "upweight": [5]}, "unknown training parameter"),
    ({}, {"upweight": [5]}, "unknown training parameter axes.train.upweight"),
])
def test_spec_checks_the_algorithm_and_its_hyperparameters(train, axes, message):
    with pytest.raises(ShortcutlabError, match=message):
        parse_spec({"study": "s", "fixed": {"train": train}, "axes": {"train": axes}})


def test_per_algorithm_settings_reach_only_that_algorithms_trials(monkeypatch, tmp_path):
    raw = {"study": "per-algorithm", "mode": "grid",
           "fixed": {"data": {"source": "synthetic", "limit": 40},
                     "train": {"hparams": {"lff": {"warmup": 0.0, "q": 0.5}}}},
           "axes": {"train": {"algorithm": ["erm", "lff"]}}}
    spec = parse_spec(raw)
    trains = [spec.trial_config({"train.algorithm": name})[1] for name in ("erm", "lff")]
    assert all(t["hparams"] == {"lff": {"warmup": 0.0, "q": 0.5}} for t in trains)
    seen = {}

    def fake_train_run(data_dir, run_dir, **kwargs):
        seen[kwargs["algorithm"]] = kwargs
        return {"hard": 0.5}

    monkeypatch.setattr("shortcutlab.train.train_run", fake_train_run)
    from shortcutlab.sweep.runner import train_trial

    for train in trains:
        train_trial(tmp_path, tmp_path, train)
    assert seen["lff"]["warmup"] == 0.0 and seen["lff"]["q"] == 0.5
    assert "warmup" not in seen["erm"] and "hparams" not in seen["erm"]
    for bad, message in (({"jtt": {"warmup": 1}}, "jtt has no setting 'warmup'"),
                         ({"nope": {"q": 1}}, "unknown algorithm 'nope'"),
                         ({"lff": 3}, "maps an algorithm to its settings")):
        with pytest.raises(ShortcutlabError, match=message):
            parse_spec({**raw, "fixed": {"train": {"hparams": bad}}})


@pytest.mark.parametrize("train, message", [
    ({"steps": -5}, "steps must be an integer in [1, inf)"),
    ({"grad_clip": -1.0}, "grad_clip must be a number in (0, inf)"),
    ({"model_kwargs": {"colour": 3}}, "bad arguments for model 'cnn3'"),
    ({"model_kwargs": {"width": -3}}, "model 'cnn3'"),
    ({"device": "cuda"}, "sees no CUDA GPU"),
    ({"select": "first:bogus>=0.5"}, "unknown metric"),
])
def test_dry_run_checks_every_trial_as_a_real_run_does(tmp_path, capsys, train, message):
    import torch

    if train.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    spec = {"study": "bad-trials", "mode": "grid",
            "fixed": {"data": {"source": "synthetic", "limit": 40},
                      "train": {"preset": "lazy", **train}},
            "axes": {"train": {"lr": [0.01, 0.1]}}, "output": str(tmp_path / "out")}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    for extra in (["--dry-run"], []):
        assert main(["sweep", str(path), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "would fail" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing was written


def test_a_prebuilt_dataset_is_used_as_it_is(tiny_data, tmp_path):
    from shortcutlab.artifacts import read_json

    path, built = sweep_datasets.ensure_dataset({"dir": str(tiny_data)}, tmp_path / "cache")
    assert path == tiny_data and built is False
    assert not (tmp_path / "cache").exists()  # nothing built, nothing cached
    assert sweep_datasets.dataset_identity({"dir": str(tiny_data)}) == read_json(
        tiny_data / "meta.json")["dataset_id"]
    with pytest.raises(ShortcutlabError, match="not a dataset directory"):
        sweep_datasets.ensure_dataset({"dir": str(tmp_path)}, tmp_path / "cache")
    with pytest.raises(ShortcutlabError, match="takes no other parameter"):
        sweep_datasets.ensure_dataset({"dir": str(tiny_data), "bias": 0.9}, tmp_path)
