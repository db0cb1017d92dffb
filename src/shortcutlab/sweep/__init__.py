"""Sweeps: what makes a CNN cheat, asked of a grid (or a search) instead of a spreadsheet.

``shortcutlab sweep SPEC.yaml`` runs every trial of a spec on Optuna; each trial builds
(or reuses, by config hash) its dataset, trains, and records all its metrics as trial
user attributes. ``shortcutlab sweep export`` turns the study into a CSV table, phase
diagrams and a markdown summary.

A spec (YAML)::

    study: lazy-phase            # the Optuna study name
    mode: grid                   # grid: every combination once (GridSampler)
                                 # search: TPE, with n_trials and ranges allowed
    objective: {metric: hard, direction: minimize}   # what a search optimizes
    seed: 0                      # the grid's shuffle and TPE's seed
    # n_trials: 40               # search only: trials in total, across all workers
    # output: runs/sweeps/lazy-phase   # trial runs, dataset cache, default SQLite storage
    # storage: postgresql://user@host:5432/sweeps   # default: OUTPUT/sweep.db
    # runner: mypackage.module:function   # default: shortcutlab.train.train_run
    fixed:                       # held constant in every trial
      data: {source: mnist, style: noise}
      train: {preset: lazy, epochs: 1}
    axes:                        # what varies; parameter names are section.key
      data:                      # BuildConfig fields: source, bias, style, hard,
        bias: [0.9, 0.95, 0.99]  #   noise_mix, alpha, seed, limit
      train:                     # preset, model, model_kwargs.*, lr, batch_size,
        batch_size: [32, 128]    #   epochs, steps, optimizer, momentum, seed, ...
        lr: [0.001, 0.01]        # search mode also takes {low: 1e-4, high: 0.1, log: true}
        model_kwargs:
          width: [8, 32]         # or, equivalently, model_kwargs.width: [8, 32]

Values are checked before anything runs: unknown parameters, wrong types and values the
dataset builder would reject are reported with the valid choices.

Storage: a SQLite file by default; ``postgresql://...`` lets workers on many machines
share one study. Workers claim trials under a study-wide lock, so no grid point runs
twice, and a failed trial is recorded as failed (with its error) while the others go on.
A custom ``runner`` is a function ``(data_dir, run_dir, train_config) -> metrics``.
"""

from shortcutlab.sweep.export import export_study
from shortcutlab.sweep.runner import run_sweep, train_trial, work
from shortcutlab.sweep.spec import SweepSpec, load_spec, parse_spec

__all__ = ["SweepSpec", "export_study", "load_spec", "parse_spec", "run_sweep", "train_trial",
           "work"]
