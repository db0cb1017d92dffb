"""``shortcutlab intervene``: list, train one method, or run the whole table."""

from __future__ import annotations

import argparse

from shortcutlab.arguments import (
    add_runtime_arguments,
    key_value,
    output_dir,
    positive_int,
    seed_value,
)

EPILOG = """\
examples:
  shortcutlab intervene --list
  shortcutlab intervene --show tea
  shortcutlab intervene --method teacher --data data --out runs/teacher
  shortcutlab intervene --method tea --data data --teacher runs/teacher --out runs/tea
  shortcutlab intervene --method rrr --data data --out runs/rrr --set penalty=30
  shortcutlab intervene --all --seeds 0,1,2 --data data --out runs/intervene --workers 2
"""


def method_names(text: str) -> list[str]:
    """argparse type of ``--methods``: comma-separated names of registered methods (the
    registry is imported only when the option is given)."""
    from shortcutlab.intervene.registry import list_methods

    known = list_methods()
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or repr(text)} is not a method; choose from "
            f"{', '.join(known)}")
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "intervene", help="cure the lazy model: debiasing methods, each next to its control",
        description="Retrain the lazy model's architecture (cnn3) on the same 95%%-biased "
                    "training set with a debiasing method, one fixed epoch budget and "
                    "model selection on easy validation data only. Every method is paired "
                    "with an erm-control: plain cross-entropy with exactly its optimizer, "
                    "learning rate, batch size and epochs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--list", action="store_true",
                      help="list the methods with the extra information each uses")
    mode.add_argument("--show", metavar="NAME",
                      help="print a method's hypothesis and hyperparameters (defaults, ranges)")
    mode.add_argument("--method", metavar="NAME",
                      help="train one method (`teacher` trains TEA's shape teacher; "
                           "`erm-control` a control)")
    mode.add_argument("--all", action="store_true",
                      help="train every method and its control for each seed and write "
                           "table.md, table.csv, table.json, table.png and "
                           "convergence/METHOD.png into --out")
    parser.add_argument("--data", help="dataset directory (from `shortcutlab data build`)")
    parser.add_argument("--out", type=output_dir,
                        help="run directory (--method) or table directory (--all)")
    parser.add_argument("--seed", type=seed_value, default=0,
                        help="seed of a single run (default 0)")
    parser.add_argument("--seeds", default="0,1,2",
                        help="comma-separated seeds for --all (default 0,1,2)")
    parser.add_argument("--methods", type=method_names,
                        help="comma-separated subset of methods for --all")
    parser.add_argument("--teacher", metavar="RUN",
                        help="a trained shape teacher for tea (with --all: shared by every "
                             "seed instead of training one per seed)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a hyperparameter (repeatable); with --all write "
                             "METHOD.KEY=VALUE")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted single run from its checkpoints")
    parser.add_argument("--table-only", action="store_true",
                        help="--all: write the table from the runs already finished in --out, "
                             "training nothing (rows count their seeds)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="--all: training processes in parallel, one thread each")
    parser.add_argument("--storage",
                        help="--all: sweep storage URL (default: OUT/sweep.db); a "
                             "postgresql://... URL shared by several machines running the "
                             "same command on a shared OUT spreads the runs over them")
    parser.add_argument("--model", default=None, metavar="NAME",
                        help="architecture to train (default cnn3): a registered name or "
                             "package.module:factory for your own network")
    parser.add_argument("--model-arg", action="append", type=key_value, default=[],
                        metavar="KEY=VALUE", help="argument of the model's factory "
                        "(repeatable)")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_intervene)


def _intervene(args: argparse.Namespace) -> int:
    from shortcutlab.errors import ShortcutlabError

    if args.list:
        print(list_text())
        return 0
    if args.show:
        print(show_text(args.show))
        return 0
    missing = [flag for flag, value in (("--data", args.data), ("--out", args.out)) if not value]
    if missing:
        raise ShortcutlabError(f"{' and '.join(missing)} required with "
                               f"{'--all' if args.all else '--method'}")
    from shortcutlab.intervene.hparams import parse_overrides
    from shortcutlab.runtime import set_threads

    set_threads(args.threads)
    trainer_options: dict = {"device": args.device}
    if args.model is not None or args.model_arg:
        from shortcutlab.intervene.run import MODEL
        from shortcutlab.models import create

        trainer_options.update(model=args.model or MODEL, model_kwargs=dict(args.model_arg))
        create(trainer_options["model"], **trainer_options["model_kwargs"])  # fail before work
    if args.all:
        return _all(args, trainer_options)
    import sys
    import warnings

    from shortcutlab.intervene.convergence import UndertrainedWarning, warning_text
    from shortcutlab.intervene.run import intervene_run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndertrainedWarning)  # said below, in one line
        metrics = intervene_run(args.data, args.out, args.method, seed=args.seed,
                                teacher_dir=args.teacher, overrides=parse_overrides(args.set),
                                resume=args.resume, **trainer_options)
    inverted = metrics["hard_inverted"]
    inverted_text = "n/a" if inverted is None else f"{inverted:.3f}"
    print(f"{args.method} (uses {', '.join(metrics['uses'])}): easy val "
          f"{metrics['easy_val']:.3f}, hard {metrics['hard']:.3f}, hard inverted "
          f"{inverted_text}, unbiased {metrics['unbiased']:.3f}")
    print(f"run: {args.out} (learning curves: {args.out}/convergence.png)")
    if metrics.get("undertrained"):
        print(f"shortcutlab: warning: {warning_text(args.method, metrics['convergence'])}",
              file=sys.stderr)
    return 0


def _all(args: argparse.Namespace, trainer_options: dict) -> int:
    from shortcutlab.errors import ShortcutlabError
    from shortcutlab.intervene.hparams import parse_overrides
    from shortcutlab.intervene.table import run_all

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ShortcutlabError(f"--seeds expects integers like 0,1,2, got {args.seeds!r}") from None
    overrides: dict[str, dict] = {}
    for key, value in parse_overrides(args.set).items():
        method, dot, name = key.partition(".")
        if not dot:
            raise ShortcutlabError(f"with --all, --set takes METHOD.KEY=VALUE, got {key}={value}")
        overrides.setdefault(method, {})[name] = value
    methods = args.methods or None
    run_all(args.data, args.out, seeds=seeds, methods=methods, overrides=overrides,
            teacher_dir=args.teacher, workers=args.workers, train=not args.table_only,
            storage=args.storage,
            **trainer_options)
    with open(f"{args.out}/table.md") as handle:
        print(handle.read(), end="")
    return 0


def list_text() -> str:
    from shortcutlab.intervene.registry import USES, get_method, list_methods, summary

    lines = []
    for role, title in (("method", "methods"), ("control", "control"),
                        ("teacher", "helpers")):
        lines.append(f"{title}:")
        for name in list_methods(roles=(role,)):
            cls = get_method(name)
            lines.append(f"  {name:<18} uses: {', '.join(cls.uses)}")
            lines.append(f"  {'':<18} {summary(cls)}")
    lines.append("")
    lines.append("extra information:")
    lines += [f"  {key:<18} {text}" for key, text in USES.items()]
    return "\n".join(lines)


def show_text(name: str) -> str:
    import textwrap

    from shortcutlab.intervene.hparams import hparam_space
    from shortcutlab.intervene.registry import get_method, hypothesis, summary

    cls = get_method(name)
    lines = [f"{name} ({cls.role}; uses {', '.join(cls.uses)})", summary(cls), ""]
    lines += textwrap.wrap(hypothesis(cls), width=88)
    lines += ["", "hyperparameters (--set KEY=VALUE):"]
    for key, spec in hparam_space(name).items():
        lines.append(f"  {key:<20} {spec.default!s:<8} {spec.describe():<22} {spec.help}")
    return "\n".join(lines)
