"""``shortcutlab benchmark``: a protocol's grid as trials of the sweep machinery, and its table.

The grid (methods x conflicting ratios x seeds) becomes a grid sweep
(:mod:`shortcutlab.sweep`): the protocol's dataset for each ratio is built once into the
sweep's dataset cache, every trial is a training run with the protocol's recipe, and the
Optuna storage (SQLite in the output directory by default, or PostgreSQL to spread one
benchmark over several machines) records what finished, so running the command again
resumes where it stopped. Settings a method needs on this protocol reach only that
method's trials (``hparams.<method>.<key>`` in the sweep).

Layout of ``OUT``: ``sweep.db`` (unless ``--storage``), ``datasets/`` (one per ratio),
``runs/`` (one run directory per trial), and ``table.md``, ``table.csv``,
``table.json``, ``table.png``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import config_hash
from shortcutlab.errors import ShortcutlabError
from shortcutlab.protocols.protocol import Protocol

DATA_SEED = 0  # one dataset per ratio, as the papers; seeds vary the training


def steps_per_epoch(protocol: Protocol, limit: int | None = None,
                    source_name: str | None = None) -> int:
    """Full batches per epoch of the protocol's training split (read off its source)."""
    from shortcutlab.data import load_source
    from shortcutlab.data.build import VALIDATION_SIZE, _split_sources

    source = load_source(source_name or protocol.dataset.get("source", "mnist"), limit=limit)
    parts = _split_sources(source, limit, protocol.dataset.get("validation", VALIDATION_SIZE))
    return max(1, len(parts["train"][1]) // int(protocol.trainer["batch_size"]))


def sweep_spec(protocol: Protocol, *, methods: tuple[str, ...], ratios: tuple[float, ...],
               seeds: tuple[int, ...], scaling: str | None = None,
               epochs: float | None = None, limit: int | None = None,
               source: str | None = None, study: str | None = None,
               settings: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The grid sweep (as a spec mapping, checked by :func:`shortcutlab.sweep.parse_spec`)
    that runs ``methods`` x ``ratios`` x ``seeds`` with the protocol's recipe.

    ``epochs`` shortens (or lengthens) the budget, a deviation the table states;
    ``limit`` builds the datasets from that many source images and ``source`` from
    another grayscale source (``synthetic``: tests). ``settings`` (method -> setting ->
    value) replace the protocol's own method settings: a deviation the table states, run
    as a study of its own (its name ends with a hash of them).
    """
    chosen = protocol.scaling(scaling)
    trainer = dict(protocol.trainer)
    per_epoch = steps_per_epoch(protocol, limit, source)
    if epochs is not None:
        if not epochs > 0:
            raise ShortcutlabError(f"--epochs must be positive, got {epochs}")
        trainer["epochs"] = epochs
    step_every_epochs = trainer.pop("step_every_epochs", None)
    if step_every_epochs:
        # the schedule's drops stay at the same share of the budget when it is shortened
        share = step_every_epochs / float(protocol.trainer["epochs"])
        trainer["step_every"] = max(1, round(share * float(trainer["epochs"]) * per_epoch))
    evals_per_epoch = int(trainer.pop("evals_per_epoch", 1))
    total = math.ceil(float(trainer["epochs"]) * per_epoch)
    eval_every = max(1, per_epoch // evals_per_epoch)
    # about 25 evaluations on long runs: the learning curves, not the selection
    eval_every = max(eval_every, total // 25) if protocol.selection == "last" else eval_every
    train = {
        "preset": "none", "model": protocol.model,
        "model_kwargs": {**protocol.model_kwargs, **chosen.model_kwargs},
        **trainer, "select": protocol.selection, "early_stop": False,
        "eval_every": eval_every, "eval_dense_every": 0, "warmup_steps": 0,
    }
    extra = {name: dict(values) for name, values in (settings or {}).items()
             if name in methods and values}
    merged = {name: {**protocol.method_settings.get(name, {}), **extra.get(name, {})}
              for name in methods}
    merged = {name: values for name, values in merged.items() if values}
    if merged:
        train["hparams"] = merged
    data = {**protocol.dataset, "seed": DATA_SEED}
    if limit is not None:
        data["limit"] = limit
    if source is not None:
        data["source"] = source
    # one study per method: a later run with more methods adds studies instead of being
    # refused by a finished one made from another method list
    name = study or f"benchmark-{protocol.name}-{chosen.name}-{'_'.join(methods)}" + (
        f"-e{epochs:g}" if epochs is not None else "") + (f"-limit{limit}" if limit else "") + (
        f"-{source}" if source else "") + (
        f"-set{config_hash(extra, length=8)}" if extra and not study else "")
    return {
        "study": name,
        "mode": "grid",
        "description": f"{protocol.title}: {', '.join(methods)} at conflicting ratios "
                       f"{', '.join(f'{r:g}' for r in ratios)}, seeds "
                       f"{', '.join(map(str, seeds))}",
        "objective": {"metric": protocol.metric, "direction": "maximize"},
        "fixed": {"data": data, "train": train},
        "axes": {"data": {"bias": [round(1.0 - r, 10) for r in ratios]},
                 "train": {"algorithm": list(methods), "seed": list(seeds)}},
    }


def run_benchmark(protocol: Protocol, out: str | os.PathLike, *,
                  methods: list[str] | None = None, ratios: list[float] | None = None,
                  seeds: tuple[int, ...] = (0, 1, 2), scaling: str | None = None,
                  epochs: float | None = None, workers: int = 1, storage: str | None = None,
                  train: bool = True, limit: int | None = None, source: str | None = None,
                  threads: int | None = None,
                  settings: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run (or, with ``train=False``, only tabulate) the protocol's grid into ``out``;
    write the table files and return the table."""
    from shortcutlab.protocols.table import collect, write_table
    from shortcutlab.sweep.spec import parse_spec

    chosen_methods = protocol.check_methods(methods)
    chosen_ratios = protocol.check_ratios(ratios)
    if not seeds:
        raise ShortcutlabError("--seeds needs at least one seed")
    specs = [parse_spec(sweep_spec(protocol, methods=(method,), ratios=chosen_ratios,
                                   seeds=tuple(seeds), scaling=scaling, epochs=epochs,
                                   limit=limit, source=source, settings=settings))
             for method in chosen_methods]
    out = Path(out)
    if train:
        from shortcutlab.sweep.runner import run_sweep

        for spec in specs:  # every method's trials share the datasets and the workers
            run_sweep(spec, output=out, storage=storage, workers=workers, threads=threads)
    rows = [row for spec in specs for row in collect(spec, out, storage)]
    table = {
        "protocol": protocol.name, "title": protocol.title, "paper": protocol.paper,
        "code": protocol.code, "metric": protocol.metric, "metric_text": protocol.metric_text,
        "selection": protocol.selection_text,
        "scaling": protocol.scaling(scaling).name,
        "scaling_text": protocol.scaling(scaling).text,
        "epochs": float(epochs if epochs is not None else protocol.trainer["epochs"]),
        "protocol_epochs": float(protocol.trainer["epochs"]),
        "methods": list(chosen_methods), "ratios": list(chosen_ratios), "seeds": list(seeds),
        "deviations": list(protocol.deviations)
        + ([f"{epochs:g} epochs instead of the protocol's {protocol.trainer['epochs']:g}"]
           if epochs is not None and float(epochs) != float(protocol.trainer["epochs"]) else [])
        + ([f"datasets built from the first {limit} source images of each split"]
           if limit else [])
        + ([f"digits from the {source} source instead of {protocol.dataset.get('source')}"]
           if source else [])
        + [f"{method} with {', '.join(f'{k} = {v!r}' for k, v in values.items())} instead "
           "of the protocol's settings" for method, values in (settings or {}).items()
           if method in chosen_methods and values],
        "studies": [spec.study for spec in specs],
    }
    from shortcutlab.protocols.table import summarize

    table.update(summarize(protocol, rows, chosen_methods, chosen_ratios, tuple(seeds)))
    write_table(out, table)
    return table
