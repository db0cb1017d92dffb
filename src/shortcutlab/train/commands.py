"""CLI subcommands of this stage: ``shortcutlab train`` and ``shortcutlab evaluate``."""

from __future__ import annotations

import argparse
from typing import Any

from shortcutlab.arguments import (
    add_runtime_arguments,
    key_value,
    output_dir,
    positive_int,
    seed_value,
)
from shortcutlab.settings import SETTINGS

TRAIN_EPILOG = """\
presets:
  lazy       Adam, stopped at the first checkpoint whose accuracy on easy val and on the
             easy training split reaches what color alone scores plus one standard error
             (0.952 at 95% bias and 10k validation images): a cheater that scores >95% on
             easy data and <20% on the hard set (the default)
  standard   Adam, 3 epochs, cosine decay, best easy-val checkpoint (for comparison)
  none       the plain trainer defaults

selection rules (--select): last | best-val | first:COND[,COND...], where COND is
METRIC>=VALUE (or <=, >, <) on a logged metric: easy_val, easy_val_aligned,
easy_val_conflicting, val_loss, train_loss, or easy_train (the whole training split,
evaluated only once the conditions before it hold). The first evaluated checkpoint where
every condition holds is kept. The test splits are never used for selection.

examples:
  shortcutlab train --data data/cmnist --out runs/lazy
  shortcutlab train --data data/cmnist --out runs/std --preset standard --seed 1
  shortcutlab train --data data/cmnist --out runs/r18 --model resnet18 --lr 0.05 --epochs 2
  shortcutlab train --data data/cmnist --out runs/lazy --resume     # after an interruption
"""

EVALUATE_EPILOG = """\
writes evaluate.json (accuracy per split, per class, on color-aligned and color-conflicting
images, confusion matrices, the color-swap matrix, color_following_rate) and figures:
confusion_random.png, confusion_inverted.png, color_swap.png, per_class.png.

example:
  shortcutlab evaluate runs/lazy --data data/cmnist --out runs/lazy/evaluate
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands; heavy imports happen inside the handlers."""
    parser = subparsers.add_parser(
        "train", help="train a model on a dataset (Task 1: the cheater)",
        description="Train a model on the easy training split, evaluate it on the easy "
                    "validation split as it goes, keep the checkpoint the selection rule "
                    "picks, and write a run directory (model, config.json, log.jsonl, "
                    "metrics.json).",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset directory")
    parser.add_argument("--out", type=output_dir, required=True, metavar="RUN",
                        help="run directory to write")
    parser.add_argument("--preset", default="lazy", metavar="NAME",
                        help="recipe: lazy (default), standard or none")
    parser.add_argument("--seed", type=seed_value, default=0, help="seed for init and data order")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in RUN (same settings)")
    parser.add_argument("--force", action="store_true", help="overwrite a run already in RUN")
    group = parser.add_argument_group("overrides (default: the preset's value)")
    for name, setting in SETTINGS.items():  # one flag per declared setting, same checks
        if setting.flag:
            group.add_argument(f"--{name.replace('_', '-')}", dest=name,
                               type=None if setting.kinds == (str,) else setting.parse,
                               choices=setting.choices, metavar=name.upper()
                               if setting.choices is None else None, help=setting.help)
    group.add_argument("--model-arg", action="append", type=key_value, default=[],
                       metavar="KEY=VALUE", help="model constructor argument, e.g. width=16 "
                       "(repeatable)")
    group.add_argument("--no-early-stop", action="store_true",
                       help="keep training after a first: rule fires (for the log)")
    group.add_argument("--set", action="append", type=key_value, default=[],
                       metavar="KEY=VALUE", help="any other trainer setting, e.g. "
                       "eval_dense_every=5 (repeatable)")
    runtime = parser.add_argument_group("runtime")
    add_runtime_arguments(runtime, device_default=None, default_help="auto")
    parser.set_defaults(func=run_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="accuracy per split and class, confusion matrices, color-swap test",
        description="Evaluate a trained run: accuracy on every split, per class, on "
                    "color-aligned vs color-conflicting images; confusion matrices on the "
                    "hard set with random and inverted colors; and the color-swap test "
                    "(every test digit rendered in every color).",
        epilog=EVALUATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.add_argument("run", metavar="RUN", help="run (or model) directory")
    evaluate.add_argument("--data", required=True, metavar="DIR", help="dataset directory")
    evaluate.add_argument("--out", type=output_dir, metavar="DIR",
                          help="output directory (default RUN/evaluate)")
    evaluate.add_argument("--swap-images", type=positive_int, default=1000, metavar="N",
                          help="test digits used in the color-swap test (default 1000)")
    add_runtime_arguments(evaluate)
    evaluate.set_defaults(func=run_evaluate)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name in ("model", "optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs",
                 "steps", "schedule", "warmup_steps", "eval_every", "select", "device",
                 "threads"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.epochs is not None and args.steps is None:
        overrides["steps"] = None  # an explicit epoch count replaces the preset's step budget
    if args.model_arg:
        overrides["model_kwargs"] = dict(args.model_arg)
    if args.no_early_stop:
        overrides["early_stop"] = False
    overrides.update(dict(args.set))
    return overrides


def run_train(args: argparse.Namespace) -> int:
    from shortcutlab.train.api import train_run

    preset = None if args.preset == "none" else args.preset
    metrics = train_run(args.data, args.out, preset=preset, seed=args.seed, resume=args.resume,
                        force=args.force, **_overrides(args))
    print(format_metrics(metrics))
    print(f"run written to {args.out}")
    return 0


def format_metrics(metrics: dict[str, Any]) -> str:
    names = ("easy_train", "easy_val", "test_easy", "hard", "unbiased", "color_following_rate")
    lines = [f"  {name:<22}{metrics[name]:.4f}" for name in names if name in metrics]
    if metrics.get("selected_step") is not None:
        lines.append(f"  {'selected_step':<22}{metrics['selected_step']}"
                     + ("" if metrics.get("selection_met", True) else "  (rule never fired)"))
    if "train_seconds" in metrics:
        lines.append(f"  {'train_seconds':<22}{metrics['train_seconds']:.1f}")
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from shortcutlab.train.evaluate import evaluate_run

    out = Path(args.out) if args.out else Path(args.run) / "evaluate"
    report = evaluate_run(args.run, args.data, out, swap_images=args.swap_images,
                          device=args.device, threads=args.threads)
    print(format_metrics(report["metrics"]))
    if "color_swap_follows_color" in report["metrics"]:
        print(f"  {'color_swap (off-diag.)':<22}{report['metrics']['color_swap_follows_color']:.4f}"
              "  share of digits predicted as the class owning the color they are rendered in")
    print(f"evaluation written to {out}")
    return 0
