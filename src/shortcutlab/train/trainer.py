"""The training loop around an :class:`~shortcutlab.train.algorithm.Algorithm`.

The algorithm owns the model and takes steps; the trainer owns everything around that:
the data (whole splits as tensors in memory), a seeded batch order, the learning-rate
schedule, evaluation on the easy validation set every ``eval_every`` steps (more often
while a ``first:`` selection rule is close to firing), checkpoint selection (``last``,
``best-val`` or ``first:METRIC>=VALUE``; the test splits are never looked at), a
json-lines log, resumable checkpoints, and the run directory of ``docs/artifacts.md``.

Resuming is exact on CPU: the batch order is a pure function of (seed, epoch), the
learning rate a pure function of the step, and the checkpoint holds the algorithm's full
training state, the torch RNG and the selection state, so an interrupted run continued
with ``resume=True`` ends with the same weights as an uninterrupted one.

A run that diverges stops with :class:`~shortcutlab.errors.TrainingDiverged` instead of
writing a model. The rule, checked as the run goes:

- after every step: the ``loss`` the algorithm returns is not finite (NaN or inf);
- at every evaluation: the easy-val loss is not finite (the model's outputs are NaN or
  inf);
- at every evaluation whose checkpoint may be selected (``Algorithm.selectable``): the
  easy-val accuracy is below chance, under ``(1 - CHANCE_MARGIN)`` times the split's
  chance floor, 1/classes or the share of its rarest class if lower (the score of a
  constant answer; :func:`~shortcutlab.train.metrics.below_chance`): 7.5% for ten
  balanced classes. It is judged once the run has trained a full epoch and at least
  :data:`MIN_JUDGED_STEPS` steps, or earlier once an earlier such evaluation was clearly
  above chance (at least :data:`CLEARLY_ABOVE_CHANCE` times 1/classes). Before that an
  untrained model may score anything: on this data a fresh network reads color, and a
  random color-to-class map without a fixed point scores near 0%.

Steps are counted as in ``log.jsonl``: step N is the N-th update. The error names the
method, the step, what went wrong and what to try (a lower ``--lr``, ``--set
grad_clip=...``). The run directory keeps ``config.json`` and ``log.jsonl`` (the
evaluations up to the one that failed) and loses any ``model.pt``, ``model.json`` and
``metrics.json``, and its resumable checkpoint too: resuming is exact, so continuing
from it would replay the same divergence, and a retry with other settings is another run,
which ``--resume`` refuses (train again with ``--force``).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shortcutlab import __version__, models
from shortcutlab.artifacts import (
    append_jsonl,
    config_hash,
    load_torch,
    read_json,
    read_jsonl,
    save_npz,
    save_torch,
    write_bytes,
    write_json,
)
from shortcutlab.data import load_meta
from shortcutlab.data.dataset import dataset_classes
from shortcutlab.errors import ShortcutlabError, TrainingDiverged
from shortcutlab.progress import progress
from shortcutlab.runtime import resolve_device, seed_everything, set_threads
from shortcutlab.train.algorithm import ERM, Algorithm, TrainContext, get_algorithm
from shortcutlab.train.config import (
    AUTO,
    ON_DEMAND_METRICS,
    TrainConfig,
    color_only_bar,
    lr_factor,
    parse_selection,
    resolve_selection,
    steps_per_epoch,
)
from shortcutlab.train.data import BatchOrder, TensorSplit, load_tensor_split, predict_logits
from shortcutlab.train.metrics import (
    CHANCE_MARGIN,
    METRIC_NAMES,
    below_chance,
    chance_floor,
    chance_level,
    split_scores,
)

CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
METRICS_FILE = "metrics.json"
# the selected model's predicted class of every image of every split, in split order
PREDICTIONS_FILE = "predictions.npz"
PREDICTIONS_KEY = "predictions"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FILE = "state.pt"
RUN_FILES = (CONFIG_FILE, LOG_FILE, METRICS_FILE, PREDICTIONS_FILE, models.registry.MODEL_FILE,
             models.registry.MODEL_META)

EvalCallback = Callable[[dict[str, Any]], None]

# The chance check of a run (see the module docstring) applies after a full epoch and at
# least MIN_JUDGED_STEPS steps (an epoch of a small training split is a few steps, too
# few for plain SGD to leave its first plateau), or earlier once a selectable evaluation
# scored at least CLEARLY_ABOVE_CHANCE times 1/classes.
MIN_JUDGED_STEPS = 100
CLEARLY_ABOVE_CHANCE = 2.0


def resolve_algorithm(algorithm: type[Algorithm] | str | None) -> type[Algorithm]:
    if algorithm is None:
        return ERM
    if isinstance(algorithm, str):
        return get_algorithm(algorithm)
    if isinstance(algorithm, type) and issubclass(algorithm, Algorithm):
        return algorithm
    raise ShortcutlabError(f"algorithm must be an Algorithm subclass or a registered name, "
                           f"got {algorithm!r}")


def run_config(data_dir: Path, config: TrainConfig, seed: int, algorithm: type[Algorithm],
               hparams: Mapping[str, Any], preset: str | None) -> dict[str, Any]:
    """The ``config.json`` content: everything needed to rebuild and retrain the run."""
    meta = load_meta(data_dir)
    body = {
        "data_dir": str(data_dir.resolve()),
        "dataset_id": meta["dataset_id"],
        "dataset_config": meta.get("config", {}),
        "seed": int(seed),
        "preset": preset,
        "method": algorithm.name,
        "uses": list(algorithm.uses),
        "hparams": dict(hparams),
        "model": {"name": config.model, "kwargs": dict(config.model_kwargs)},
        "trainer": config.to_dict(),
        "shortcutlab_version": __version__,
    }
    if AUTO in config.select:  # the dataset sets the bar (derived from dataset_id: no identity)
        body["select_resolved"] = resolve_selection(config.select, dataset_bar(meta))
    identity = {key: value for key, value in body.items()
                if key not in ("data_dir", "trainer", "shortcutlab_version", "select_resolved")}
    identity["trainer"] = config.identity()
    body["run_id"] = config_hash(identity)
    return body


def fit_model_to_dataset(config: TrainConfig, meta: Mapping[str, Any]) -> TrainConfig:
    """The config with ``num_classes`` given to the model when the dataset has other than
    ten classes (and the model's arguments do not say already); ten-class datasets keep
    their config, and so their run ids, unchanged."""
    classes = dataset_classes(meta)
    if classes == 10 or "num_classes" in config.model_kwargs:
        return config
    parameters = inspect.signature(models.factory_for(config.model)).parameters.values()
    if not any(p.name == "num_classes" or p.kind is p.VAR_KEYWORD for p in parameters):
        raise ShortcutlabError(
            f"the dataset has {classes} classes but model {config.model!r} takes no "
            "num_classes argument; give its factory one, or build it for this many classes")
    return dataclasses.replace(config, model_kwargs={**config.model_kwargs,
                                                     "num_classes": classes})


def dataset_bar(meta: Mapping[str, Any]) -> float:
    """The ``auto`` selection threshold of a dataset (:func:`color_only_bar` of its val
    split: size and share of images in their class's color, from ``meta.json``)."""
    size = int(meta["sizes"]["val"])
    counts = np.asarray(meta["counts"]["val"])
    return color_only_bar(size, float(np.trace(counts)) / max(1, size))


def _run_dir_mode(out_dir: Path, body: dict[str, Any], resume: bool, force: bool) -> str:
    """Return "fresh", "resume" or "done" after checking what ``out_dir`` already holds
    (nothing is changed: a "fresh" directory is cleared by :func:`_clear_run_dir`)."""
    existing = out_dir / CONFIG_FILE
    if existing.is_file():
        if resume:
            old = read_json(existing)
            if old.get("run_id") != body["run_id"]:
                changed = sorted(_changed_keys(old, body))
                raise ShortcutlabError(
                    f"{out_dir} holds a run with different settings ({', '.join(changed)}); "
                    "resume with the same settings, or train into another --out"
                )
            if (out_dir / METRICS_FILE).is_file() and (out_dir / models.registry.MODEL_META
                                                       ).is_file():
                return "done"
            if (out_dir / CHECKPOINT_DIR / CHECKPOINT_FILE).is_file():
                return "resume"
        elif not force:
            raise ShortcutlabError(
                f"{out_dir} already holds a run; pass --resume to continue it, --force to "
                "overwrite it, or choose another --out"
            )
    elif (out_dir / CHECKPOINT_DIR).exists() and not (resume or force):
        raise ShortcutlabError(f"{out_dir} holds leftover checkpoints; pass --force")
    return "fresh"


def _clear_run_dir(out_dir: Path) -> None:
    for name in RUN_FILES:
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)


def _changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        if key in ("run_id", "data_dir", "shortcutlab_version") or key in ("device", "threads",
                                                                            "checkpoint_every"):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            keys += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys or ["run_id"]


def _set_lr(algorithm: Algorithm, factor: float) -> float:
    lr = 0.0
    for optimizer in algorithm.optimizers():
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor
            lr = group["lr"]
    return lr


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _scored(logits: torch.Tensor, data: TensorSplit) -> dict[str, Any]:
    """:func:`split_scores` and, under ``predictions``, the predicted classes (int16 on the
    CPU: the run's ``predictions.npz``, which evaluation reuses instead of predicting
    every split again)."""
    scores: dict[str, Any] = split_scores(logits, data.labels, data.colors)
    scores[PREDICTIONS_KEY] = logits.argmax(1).to(device="cpu", dtype=torch.int16)
    return scores


class _Selector:
    """Tracks which evaluated checkpoint the selection rule picks, and keeps its weights."""

    def __init__(self, rule: str) -> None:
        self.rule = parse_selection(rule)
        self.step: int | None = None
        self.best: float | None = None
        self.fired = False
        self.weights: dict[str, torch.Tensor] | None = None
        self.scores: dict[str, dict[str, float | None]] = {}  # split scores at self.step

    def observe(self, record: Mapping[str, Any], model: torch.nn.Module,
                scores: Mapping[str, dict[str, float | None]]) -> None:
        rule = self.rule
        needed = rule.metrics if rule.kind == "first" else \
            ((rule.metric,) if rule.kind == "best" else ())
        missing = [m for m in needed if m not in record and m not in ON_DEMAND_METRICS]
        if missing:
            valid = sorted({*(k for k, v in record.items() if isinstance(v, float)),
                            *ON_DEMAND_METRICS})
            raise ShortcutlabError(f"selection metric {missing[0]!r} is not logged; "
                                   f"choose from {', '.join(valid)}")
        if rule.kind == "best":
            value = float(record[rule.metric])
            if self.best is None or value > self.best:
                self.best, self.step, self.weights = value, record["step"], _snapshot(model)
                self.scores = dict(scores)
        elif rule.kind == "first" and not self.fired and \
                all(m in record for m in rule.metrics) and rule.fires(record):
            self.fired, self.step, self.weights = True, record["step"], _snapshot(model)
            self.scores = dict(scores)

    def wants(self, record: Mapping[str, Any]) -> set[str]:
        """On-demand metrics worth computing for ``record``: those of the first condition
        not yet known, once every condition before it holds."""
        if self.rule.kind != "first" or self.fired:
            return set()
        for condition in self.rule.conditions:
            if condition.metric not in record:
                return {condition.metric} if condition.metric in ON_DEMAND_METRICS else set()
            if not condition.holds(record):
                return set()
        return set()

    def near(self, record: Mapping[str, Any], margin: float) -> bool:
        return self.rule.kind == "first" and not self.fired and \
            self.rule.distance(record) <= margin

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "best": self.best, "fired": self.fired,
                "weights": self.weights, "scores": self.scores}

    def load(self, state: Mapping[str, Any]) -> None:
        self.step, self.best = state["step"], state["best"]
        self.fired, self.weights = state["fired"], state["weights"]
        self.scores = dict(state.get("scores") or {})


class Trainer:
    """One training run into one run directory; call :meth:`run`."""

    def __init__(self, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                 config: TrainConfig, *, seed: int = 0,
                 algorithm: type[Algorithm] | str | None = None,
                 hparams: Mapping[str, Any] | None = None, preset: str | None = None,
                 resume: bool = False, force: bool = False,
                 on_eval: EvalCallback | None = None) -> None:
        config.validate()
        self.data_dir = Path(data_dir)
        self.out_dir = Path(out_dir)
        self.config = config
        self.seed = int(seed)
        self.algorithm_cls = resolve_algorithm(algorithm)
        unknown = sorted(set(hparams or {}) - set(self.algorithm_cls.default_hparams))
        if unknown:
            raise ShortcutlabError(
                f"{self.algorithm_cls.name} has no hyperparameter(s) {', '.join(unknown)}; "
                f"it takes: {', '.join(sorted(self.algorithm_cls.default_hparams)) or 'none'}"
            )
        self.hparams = {**self.algorithm_cls.default_hparams, **(hparams or {})}
        self.preset = preset
        self.resume = resume
        self.force = force
        self.on_eval = on_eval

    # -- public ------------------------------------------------------------------------

    def selection_rule(self) -> str:
        """The checkpoint-selection rule with ``auto`` thresholds set by the dataset."""
        return resolve_selection(self.config.select, dataset_bar(load_meta(self.data_dir)))

    def run(self) -> dict[str, Any]:
        """Train (or continue, or return the finished run's metrics); return metrics.json."""
        from shortcutlab.artifacts import writer_lock

        previous_threads = torch.get_num_threads()
        set_threads(self.config.threads)
        try:
            with writer_lock(self.out_dir):
                return self._run()
        finally:
            torch.set_num_threads(previous_threads)

    # -- internals ---------------------------------------------------------------------

    def _run(self) -> dict[str, Any]:
        started = time.perf_counter()
        cpu_started = time.process_time()
        from shortcutlab.data.dataset import require_splits

        require_splits(self.data_dir)  # the final evaluation reads every split
        self.config = config = fit_model_to_dataset(self.config, load_meta(self.data_dir))
        # a bad model fails before any write
        candidate = models.create(config.model, **config.model_kwargs)
        body = run_config(self.data_dir, config, self.seed, self.algorithm_cls, self.hparams,
                          self.preset)
        mode = _run_dir_mode(self.out_dir, body, self.resume, self.force)
        if mode == "done":
            return read_json(self.out_dir / METRICS_FILE)
        device = resolve_device(config.device)
        layout = torch.channels_last if config.channels_last else torch.contiguous_format
        train = load_tensor_split(self.data_dir, "train", device, config.channels_last)
        val = load_tensor_split(self.data_dir, "val", device, config.channels_last)
        self.algorithm_cls.check_model(candidate, {**config.optimizer_hparams(), **self.hparams},
                                       train.images[:1].cpu())
        del candidate
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if mode == "fresh":
            _clear_run_dir(self.out_dir)
            write_json(self.out_dir / CONFIG_FILE, body)
        per_epoch = steps_per_epoch(len(train), config.batch_size)
        total = config.total_steps(len(train))
        classes = max(int(train.labels.max()), int(val.labels.max())) + 1
        floor = chance_floor(val.labels, classes)

        seed_everything(self.seed)
        model = models.create(config.model, **config.model_kwargs)
        model = model.to(device=device, memory_format=layout)
        algorithm_hparams = {**config.optimizer_hparams(), **self.hparams}
        algorithm = self.algorithm_cls(model, algorithm_hparams).to(device)
        generator = torch.Generator().manual_seed(self.seed + 0x1234)
        context = TrainContext(
            num_train=len(train), total_steps=total, device=device, train=train.as_dict(),
            generator=generator, seed=self.seed, data_dir=self.data_dir, run_dir=self.out_dir,
            steps_per_epoch=per_epoch, batch_size=config.batch_size,
        )
        algorithm.setup(context)
        algorithm.to(device)

        selector = _Selector(self.selection_rule())
        step, dense, elapsed = 0, False, 0.0
        peak: float | None = None  # best easy_val of a selectable evaluation so far
        sums: dict[str, float] = {}
        count = 0
        if mode == "resume":
            state = load_torch(self.out_dir / CHECKPOINT_DIR / CHECKPOINT_FILE,
                               map_location=device)
            algorithm.load_training_state(state["algorithm"])
            torch.set_rng_state(state["torch_rng"].cpu())
            if device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
            generator.set_state(state["generator"].cpu())
            selector.load(state["selection"])
            step, dense, elapsed = state["step"], state["dense"], state["elapsed"]
            sums, count = dict(state["sums"]), state["count"]
            peak = state.get("peak_val")
            self._truncate_log(step)
        else:
            (self.out_dir / LOG_FILE).unlink(missing_ok=True)

        order = BatchOrder(self.seed, len(train), config.batch_size)
        bar = progress(total=total, initial=step, desc=f"train {algorithm.name}", unit="step")
        loop_start = time.perf_counter()
        stopped = False
        algorithm.train()
        try:
            while step < total and not stopped:
                lr = _set_lr(algorithm, lr_factor(config, step, total))
                index = order.indices(step)
                batch = train.batch(index.to(device) if device.type != "cpu" else index)
                scalars = algorithm.update(batch, step)
                loss = scalars.get("loss")
                if loss is not None and not math.isfinite(float(loss)):
                    raise self._diverged(algorithm.name, step + 1, total,
                                         f"its training loss is {float(loss)}")
                for key, value in scalars.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
                count += 1
                step += 1
                bar.update(1)
                every = config.eval_dense_every if dense and config.eval_dense_every else \
                    config.eval_every
                checkpoint_due = bool(config.checkpoint_every) and \
                    step % config.checkpoint_every == 0
                if step % every == 0 or step == total:
                    record, scores = self._evaluate(algorithm, train, val, selector, step,
                                                    per_epoch, lr, sums, count,
                                                    elapsed + time.perf_counter() - loop_start)
                    sums, count = {}, 0
                    append_jsonl(self.out_dir / LOG_FILE, record)
                    peak = self._check_evaluation(record, algorithm, step, total, per_epoch,
                                                  classes, floor, peak)
                    if algorithm.selectable(step):
                        selector.observe(record, algorithm.model, scores)
                        dense = selector.near(record, config.eval_dense_margin)
                    stopped = selector.fired and config.early_stop
                    bar.set_postfix(val=f"{record['easy_val']:.4f}", refresh=False)
                    checkpoint_due = checkpoint_due or not config.checkpoint_every
                    if checkpoint_due and not (stopped or step == total):
                        self._save_checkpoint(step, algorithm, generator, selector, dense,
                                              elapsed + time.perf_counter() - loop_start,
                                              sums, count, device, peak)
                    if self.on_eval is not None:
                        self.on_eval(record)
                elif checkpoint_due:
                    self._save_checkpoint(step, algorithm, generator, selector, dense,
                                          elapsed + time.perf_counter() - loop_start, sums,
                                          count, device, peak)
        finally:
            bar.close()
        train_seconds = elapsed + time.perf_counter() - loop_start

        if selector.rule.kind == "first" and not selector.fired:
            print(f"shortcutlab: warning: selection rule {self.selection_rule()!r} never fired; "
                  f"keeping the last checkpoint (step {step})", file=sys.stderr)
        if selector.weights is not None:
            algorithm.model.load_state_dict(selector.weights)
            selected_step = selector.step
        else:
            selected_step = step
        models.save(algorithm.model, self.out_dir)
        known = selector.scores if selector.weights is not None else {}
        metrics = self._final_metrics(algorithm, train, val, device, known)
        metrics.update({
            "selected_step": int(selected_step),
            "selection": config.select,
            "selection_met": selector.rule.kind != "first" or selector.fired,
            "steps_trained": int(step),
            "epochs_trained": step / per_epoch,
            "method": algorithm.name,
            "uses": list(algorithm.uses),
            "seed": self.seed,
            "preset": self.preset,
            "run_id": body["run_id"],
            "train_seconds": round(train_seconds, 3),
            "total_seconds": round(time.perf_counter() - started, 3),
            # CPU time of this process over all threads: a load-independent cost measure
            # on a shared machine (wall time ~ cpu_seconds / threads when it is idle)
            "cpu_seconds": round(time.process_time() - cpu_started, 3),
            "threads": torch.get_num_threads(),
        })
        write_json(self.out_dir / METRICS_FILE, metrics)
        shutil.rmtree(self.out_dir / CHECKPOINT_DIR, ignore_errors=True)
        return metrics

    def _check_evaluation(self, record: Mapping[str, Any], algorithm: Algorithm, step: int,
                          total: int, per_epoch: int, classes: int, floor: float,
                          peak: float | None) -> float | None:
        """Raise :class:`TrainingDiverged` when the evaluation ``record`` shows a diverged
        run (the rule of the module docstring); return the updated peak easy_val."""
        val_loss = record.get("val_loss")
        if val_loss is not None and not math.isfinite(val_loss):
            raise self._diverged(algorithm.name, step, total,
                                 f"its outputs on easy val are not finite (val loss "
                                 f"{val_loss})")
        if not algorithm.selectable(step):
            return peak
        acc, chance = record["easy_val"], chance_level(classes)
        was_above = peak is not None and peak >= CLEARLY_ABOVE_CHANCE * chance
        armed = was_above or step >= max(per_epoch, MIN_JUDGED_STEPS)
        if armed and below_chance(acc, floor):
            before = f", down from {peak:.3f} at best," if was_above else ""
            raise self._diverged(
                algorithm.name, step, total,
                f"its easy-val accuracy is {acc:.3f}{before} below chance ({chance:.3f} for "
                f"{classes} classes; a trained run is stopped under "
                f"{(1 - CHANCE_MARGIN) * floor:.3f})")
        return acc if peak is None else max(peak, acc)

    def _diverged(self, method: str, step: int, total: int, what: str) -> TrainingDiverged:
        """Remove what a finished run would hold (model, metrics, checkpoint) and return
        the error that says what went wrong and what to try."""
        for name in (METRICS_FILE, models.registry.MODEL_FILE, models.registry.MODEL_META):
            (self.out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.out_dir / CHECKPOINT_DIR, ignore_errors=True)
        lr, clip = self.config.lr, self.config.grad_clip
        clipping = f"--set grad_clip={clip / 2:g} (now {clip:g})" if clip else \
            "--set grad_clip=1.0 (now off)"
        return TrainingDiverged(
            f"{method} diverged at step {step} of {total}: {what}. No model was written; "
            f"{self.out_dir} keeps config.json and log.jsonl. Try a lower learning rate "
            f"(now {lr:g}: --lr {lr / 10:g}, or --set lr={lr / 10:g} for an intervention) "
            f"or gradient clipping ({clipping}), and train again with --force"
        )

    def _evaluate(self, algorithm: Algorithm, train: TensorSplit, val: TensorSplit,
                  selector: _Selector, step: int, per_epoch: int, lr: float,
                  sums: Mapping[str, float], count: int, elapsed: float
                  ) -> tuple[dict[str, Any], dict[str, dict[str, float | None]]]:
        """Score the model on easy val (and on the whole training split when the selection
        rule needs it now); return the log record and the scores per split."""
        batch_size = self.config.eval_batch_size
        algorithm.eval()
        scores = _scored(predict_logits(algorithm.predict, val.images, batch_size), val)
        record: dict[str, Any] = {
            "step": step,
            "epoch": round(step / per_epoch, 4),
            "lr": lr,
            "easy_val": scores["acc"],
            "easy_val_aligned": scores["aligned"],
            "easy_val_conflicting": scores["conflicting"],
            "val_loss": scores["loss"],
            "elapsed_s": round(elapsed, 3),
        }
        for key, total in sums.items():
            record[f"train_{key}"] = total / max(count, 1)
        computed = {"val": scores}
        while selector.wants(record):
            train_scores = _scored(predict_logits(algorithm.predict, train.images, batch_size),
                                   train)
            computed["train"] = train_scores
            record["easy_train"] = train_scores["acc"]
            record["easy_train_aligned"] = train_scores["aligned"]
            record["easy_train_conflicting"] = train_scores["conflicting"]
        algorithm.train()
        return record, computed

    def _save_checkpoint(self, step: int, algorithm: Algorithm, generator: torch.Generator,
                         selector: _Selector, dense: bool, elapsed: float,
                         sums: Mapping[str, float], count: int, device: torch.device,
                         peak: float | None = None) -> None:
        state = {
            "step": step,
            "algorithm": algorithm.training_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "generator": generator.get_state(),
            "selection": selector.state(),
            "dense": dense,
            "elapsed": elapsed,
            "sums": dict(sums),
            "count": count,
            "peak_val": peak,
        }
        save_torch(self.out_dir / CHECKPOINT_DIR / CHECKPOINT_FILE, state)

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint a resumed run continues from."""
        path = self.out_dir / LOG_FILE
        if not path.is_file():
            return
        import json

        kept = [record for record in read_jsonl(path) if record["step"] <= step]
        text = "".join(json.dumps(record, sort_keys=True) + "\n" for record in kept)
        write_bytes(path, text.encode())

    def _final_metrics(self, algorithm: Algorithm, train: TensorSplit, val: TensorSplit,
                       device: torch.device,
                       known: Mapping[str, dict[str, float | None]]) -> dict[str, Any]:
        """Score the selected model on every split (reusing the scores computed for it
        during training: same weights, same data, same numbers)."""
        algorithm.eval()
        layout = self.config.channels_last
        details: dict[str, dict[str, float | None]] = {}
        predicted: dict[str, np.ndarray] = {}
        for split in METRIC_NAMES:
            scores = dict(known[split]) if split in known else None
            if scores is None or not isinstance(scores.get(PREDICTIONS_KEY), torch.Tensor):
                data = {"train": train, "val": val}.get(split) or \
                    load_tensor_split(self.data_dir, split, device, layout)
                scores = _scored(predict_logits(algorithm.predict, data.images,
                                                self.config.eval_batch_size), data)
            predicted[split] = scores.pop(PREDICTIONS_KEY).numpy()
            details[split] = scores
        metrics: dict[str, Any] = {METRIC_NAMES[split]: scores["acc"]
                                   for split, scores in details.items()}
        metrics["color_following_rate"] = details["test_hard"]["color_following"]
        metrics["splits"] = details
        metrics["predictions"] = {
            "file": PREDICTIONS_FILE,
            "sha256": save_npz(self.out_dir / PREDICTIONS_FILE, **predicted),
            "model_sha256": read_json(self.out_dir / models.registry.MODEL_META)["sha256"],
            "dataset_id": load_meta(self.data_dir).get("dataset_id"),
        }
        return metrics


def train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: TrainConfig, *,
          seed: int = 0, algorithm: type[Algorithm] | str | None = None,
          hparams: Mapping[str, Any] | None = None, preset: str | None = None,
          resume: bool = False, force: bool = False,
          on_eval: EvalCallback | None = None) -> dict[str, Any]:
    """Train one run from a :class:`TrainConfig`; returns the ``metrics.json`` content."""
    return Trainer(data_dir, out_dir, config, seed=seed, algorithm=algorithm, hparams=hparams,
                   preset=preset, resume=resume, force=force, on_eval=on_eval).run()
