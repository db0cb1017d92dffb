"""Sweeps shared by several worker processes, on SQLite and on a real PostgreSQL server.

The PostgreSQL server is the throwaway one ``scripts/services.sh start`` runs (``make
test`` starts it); its URL is in ``.services/postgres.url``. Without it these tests fail
with a message saying how to start it, unless ``SHORTCUTLAB_SKIP_POSTGRES=1``.
"""

from __future__ import annotations

import collections
import itertools
import uuid

import optuna
import pytest

import sweep_fakes
from shortcutlab.sweep import parse_spec, run_sweep
from shortcutlab.sweep.storage import normalize_url


def concurrent_grid(study: str) -> dict:
    return {
        "study": study,
        "mode": "grid",
        "fixed": {"data": {"source": "synthetic", "limit": 40, "bias": 0.95}},
        "axes": {"train": {"lr": [0.01, 0.02, 0.05, 0.1, sweep_fakes.FAILING_LR],
                           "batch_size": [16, 32, 64, 128]}},
    }


def run_two_workers(tmp_path, monkeypatch, storage: str | None, study: str):
    """Two worker processes that start claiming at the same moment (a barrier)."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    monkeypatch.setenv("SWEEP_BARRIER", str(barrier))
    monkeypatch.setenv("SWEEP_BARRIER_N", "2")
    spec = parse_spec(concurrent_grid(study))
    summary = run_sweep(spec, output=tmp_path / "out", storage=storage, workers=2,
                        run_trial=sweep_fakes.barrier_trial, threads=1)
    url = normalize_url(storage) if storage else normalize_url(str(tmp_path / "out/sweep.db"))
    return spec, summary, optuna.load_study(study_name=study, storage=url).get_trials()


def check_each_point_once(spec, summary, trials) -> None:
    points = [tuple(t.params[name] for name in spec.grid_space()) for t in trials]
    duplicates = [p for p, n in collections.Counter(points).items() if n > 1]
    assert duplicates == []
    assert set(points) == set(itertools.product(*spec.grid_space().values()))
    assert summary["done"] == len(trials) == 20
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 4 and all("diverged" in t.user_attrs["error"] for t in failed)
    assert all(t.state.name == "COMPLETE" for t in trials if t not in failed)
    # one dataset, built by exactly one of the two workers
    assert sum(bool(t.user_attrs.get("dataset_built")) for t in trials) == 1


@pytest.mark.postgres
def test_two_workers_on_postgres_run_every_grid_point_once(postgres_url, tmp_path, monkeypatch):
    study = f"pg-{uuid.uuid4().hex[:8]}"
    spec, summary, trials = run_two_workers(tmp_path, monkeypatch, postgres_url, study)
    check_each_point_once(spec, summary, trials)
    optuna.delete_study(study_name=study, storage=normalize_url(postgres_url))


def test_two_workers_on_sqlite_run_every_grid_point_once(tmp_path, monkeypatch):
    spec, summary, trials = run_two_workers(tmp_path, monkeypatch, None, "sqlite-workers")
    check_each_point_once(spec, summary, trials)
