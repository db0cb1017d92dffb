"""One intervention run: a method trained by the project's trainer, then measured.

``intervene_run`` resolves the method and its hyperparameters and hands the method's
class to ``shortcutlab.train.train_run``, which owns the loop, evaluation, checkpoint
selection, logging, resuming and the run-directory format. The settings every
intervention shares are fixed here:

- the model is the lazy model's architecture, ``cnn3`` at its default width, unless the
  caller names another (``model``, ``model_kwargs``: any name ``models.create`` takes);
- the training set is the dataset's own 95%-biased ``train`` split, unchanged;
- the budget is the method's ``epochs`` (the common
  :data:`~shortcutlab.intervene.hparams.EPOCHS` unless the method declares more; its
  control trains as long), over which its ``schedule`` runs;
- the checkpoint kept is the one with the best easy-validation accuracy, evaluated
  :data:`EVALS_PER_EPOCH` times per epoch; the hard and unbiased splits choose nothing.

Afterwards it adds to ``metrics.json`` what the results table needs beyond the
trainer's keys: ``hparams``, ``hard_inverted`` and ``background_share``; and whether the
run converged (:mod:`shortcutlab.intervene.convergence`): ``undertrained`` and
``convergence`` (the reason, the suggested ``--set epochs=N``), with ``convergence.png``
(its learning curves) in the run directory and an :class:`UndertrainedWarning` when the
selected checkpoint is the last evaluation and easy-val accuracy was still rising.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from shortcutlab.artifacts import read_json, write_json, writer_lock
from shortcutlab.errors import ShortcutlabError
from shortcutlab.intervene import convergence
from shortcutlab.intervene.hparams import OPTIMIZER_KEYS, resolve_hparams
from shortcutlab.intervene.registry import get_method

MODEL = "cnn3"
SELECTION = "best-val"
EVALS_PER_EPOCH = 2
METRICS = "metrics.json"


def trainer_settings(hparams: dict[str, Any], num_train: int, model: str = MODEL,
                     model_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trainer settings of an intervention: its optimizer keys and the fixed rest."""
    settings = {key: hparams[key] for key in OPTIMIZER_KEYS}
    settings["grad_clip"] = float(settings["grad_clip"]) or None
    settings["epochs"] = float(settings["epochs"])
    per_epoch = max(1, num_train // int(settings["batch_size"]))
    settings.update(model=model, model_kwargs=dict(model_kwargs or {}), steps=None, warmup_steps=0,
                    select=SELECTION, early_stop=False,
                    eval_every=max(1, per_epoch // EVALS_PER_EPOCH), eval_dense_every=0)
    return settings


def intervene_run(data_dir: str | os.PathLike, out_dir: str | os.PathLike, method: str, *,
                  seed: int = 0, teacher_dir: str | os.PathLike | None = None,
                  overrides: dict[str, Any] | None = None, resume: bool = False,
                  force: bool = False, measure: bool = True, model: str = MODEL,
                  model_kwargs: dict[str, Any] | None = None,
                  **trainer_options: Any) -> dict[str, Any]:
    """Train ``method`` on ``data_dir`` into the run directory ``out_dir``.

    ``overrides`` update the method's registered hyperparameters (strings are converted
    to each default's type); ``teacher_dir`` is TEA's teacher; ``trainer_options``
    (``device``, ``threads``, ...) go to the trainer untouched; ``model`` and
    ``model_kwargs`` name the architecture (default: the study's ``cnn3``). ``resume`` continues an
    interrupted run or returns a finished one. Returns the final ``metrics.json``.
    """
    from shortcutlab.data import load_meta
    from shortcutlab.train import train_run

    cls = get_method(method)
    overrides = dict(overrides or {})
    if teacher_dir is not None:
        teacher_dir = Path(teacher_dir)
        if not (teacher_dir / "model.json").is_file():
            raise ShortcutlabError(f"--teacher {teacher_dir} holds no trained model; train one "
                                   "with `shortcutlab intervene --method teacher`")
        if "teacher" not in cls.default_hparams:
            raise ShortcutlabError(f"{method} does not use a teacher; drop --teacher")
        overrides["teacher"] = str(teacher_dir.resolve())
    hparams = resolve_hparams(method, overrides)
    if "teacher" in cls.uses and not hparams.get("teacher"):
        raise ShortcutlabError(
            f"{method} distills a teacher: pass --teacher RUN (train one with "
            "`shortcutlab intervene --method teacher --data DIR --out RUN`)"
        )
    meta = load_meta(data_dir)
    if "masks" in cls.uses and meta.get("masks", True) is False:
        raise ShortcutlabError(f"{method} trains on the object masks, and {data_dir} has none; "
                               "import the dataset with a masks array per split or choose a "
                               "method that does not use masks (intervene --list)")
    num_train = int(meta["sizes"]["train"])
    own = {key: value for key, value in hparams.items() if key not in OPTIMIZER_KEYS}
    with writer_lock(out_dir):  # training, then measuring: one writer throughout
        metrics = dict(train_run(data_dir, out_dir, preset=None, seed=seed, resume=resume,
                                 force=force, algorithm=cls,
                                 **trainer_settings(hparams, num_train, model, model_kwargs),
                                 **own,
                                 **trainer_options))
        metrics.update(method=method, uses=list(cls.uses), role=cls.role, hparams=hparams)
        if measure and "hard_inverted" not in metrics:
            from shortcutlab.intervene.measure import extra_metrics

            metrics.update(extra_metrics(out_dir, data_dir,
                                         device=trainer_options.get("device", "auto")))
        metrics.update(check_convergence(out_dir, metrics, label=method))
        write_json(Path(out_dir) / METRICS, metrics)
    return metrics


def check_convergence(run_dir: str | os.PathLike, metrics: dict[str, Any],
                      label: str) -> dict[str, Any]:
    """Draw the run's ``convergence.png`` and return its metrics keys ``undertrained``
    and ``convergence``; warn (:class:`~shortcutlab.intervene.convergence.UndertrainedWarning`)
    when it looks undertrained."""
    records = convergence.read_log(run_dir)
    assessment = convergence.assess(records, metrics)
    if records:
        convergence.plot_run(run_dir, label, metrics)
        assessment["figure"] = convergence.FIGURE
    if assessment["undertrained"]:
        warnings.warn(convergence.warning_text(f"{label} ({run_dir})", assessment),
                      convergence.UndertrainedWarning, stacklevel=3)
    return {"undertrained": assessment["undertrained"], "convergence": assessment}


def finished(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's metrics when it finished and was measured, else None."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return None
    metrics = read_json(path)
    return metrics if "hparams" in metrics and "hard_inverted" in metrics else None
