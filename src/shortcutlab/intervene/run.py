"""One intervention run: a method trained by the project's trainer, then measured.

``intervene_run`` resolves the method and its hyperparameters, builds what the method
needs (a teacher, re-rendered images), and hands an algorithm factory to
``shortcutlab.train.train_run``, which owns the loop, evaluation, checkpoint selection
(best accuracy on the easy validation split, never the hard or unbiased splits), logging,
resuming and the run-directory format. Afterwards it adds to ``metrics.json`` what the
results table needs beyond the trainer's keys: ``method``, ``uses``, ``hard_inverted``,
``background_share`` and ``train_seconds``.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import read_json, write_json
from shortcutlab.errors import ShortcutlabError
from shortcutlab.intervene.hparams import resolve_hparams
from shortcutlab.intervene.registry import get_method

MODEL = "cnn3"  # the lazy model's architecture, at its default width
SELECTION = "best-val"  # easy validation accuracy; the hard splits never choose anything
METRICS = "metrics.json"


def trainer_overrides(hparams: dict[str, Any]) -> dict[str, Any]:
    """The trainer settings a method's hyperparameters fix (optimizer keys and budget)."""
    return {
        "model": MODEL,
        "optimizer": hparams["optimizer"],
        "lr": float(hparams["lr"]),
        "momentum": float(hparams["momentum"]),
        "weight_decay": float(hparams["weight_decay"]),
        "batch_size": int(hparams["batch_size"]),
        "grad_clip": float(hparams["grad_clip"]),
        "epochs": float(hparams["epochs"]),
        "selection": SELECTION,
    }


def intervene_run(data_dir: str | os.PathLike, out_dir: str | os.PathLike, method: str, *,
                  seed: int = 0, teacher_dir: str | os.PathLike | None = None,
                  overrides: dict[str, Any] | None = None, resume: bool = False,
                  measure: bool = True, **trainer_options: Any) -> dict[str, Any]:
    """Train ``method`` on ``data_dir`` into the run directory ``out_dir``.

    ``overrides`` update the method's registered hyperparameters (strings are converted
    to each default's type); ``trainer_options`` (device, threads, ...) go to the trainer
    untouched. Returns the final ``metrics.json`` content.
    """
    from shortcutlab.train import train_run

    cls = get_method(method)
    hparams = resolve_hparams(method, overrides)
    if "teacher" in cls.uses and teacher_dir is None:
        raise ShortcutlabError(
            f"{method} distills a teacher: pass --teacher RUN (train one with "
            "`shortcutlab intervene --method teacher --data DIR --out RUN`)"
        )
    if teacher_dir is not None:
        teacher_dir = Path(teacher_dir)
        if not (teacher_dir / "model.json").is_file():
            raise ShortcutlabError(f"--teacher {teacher_dir} holds no trained model")
    resources = cls.prepare(data_dir, hparams, teacher_dir=teacher_dir, seed=seed)
    factory = functools.partial(_build, cls, seed=seed, resources=resources)
    started = time.perf_counter()
    metrics = train_run(data_dir, out_dir, seed=seed, resume=resume, algorithm=factory,
                        hparams=hparams, **trainer_overrides(hparams), **trainer_options)
    seconds = time.perf_counter() - started
    metrics = dict(metrics)
    metrics.update(method=method, uses=list(cls.uses), hparams=hparams,
                   teacher=str(teacher_dir) if teacher_dir else None)
    metrics.setdefault("train_seconds", seconds)
    if measure:
        from shortcutlab.intervene.measure import extra_metrics

        metrics.update(extra_metrics(out_dir, data_dir))
    write_json(Path(out_dir) / METRICS, metrics)
    return metrics


def _build(cls: type, model: Any, hparams: dict[str, Any], *, seed: int,
           resources: dict[str, Any]) -> Any:
    return cls(model, hparams, seed=seed, **resources)


def finished(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's metrics when it finished (and was measured), else None."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return None
    metrics = read_json(path)
    return metrics if "method" in metrics and "hard_inverted" in metrics else None
