"""CLI: ``shortcutlab sweep SPEC.yaml`` runs a sweep, ``shortcutlab sweep export`` reads one."""

from __future__ import annotations

import argparse

from shortcutlab.arguments import output_dir, positive_int, thread_count

RUN_USAGE = "shortcutlab sweep SPEC.yaml [--storage URL] [--workers N] [--out DIR] [...]"
EXPORT_USAGE = ("shortcutlab sweep export [SPEC.yaml] [--storage URL --study NAME] --out DIR "
                "[--x AXIS --y AXIS] [--metric NAME]")

DESCRIPTION = """\
Run a grid or a search over dataset and training parameters on Optuna, or export one.

  shortcutlab sweep SPEC.yaml [--storage URL] [--workers N]
      Run every trial of the spec that is not done yet (re-running continues a sweep).
      Storage defaults to a SQLite file in the sweep's output directory; give
      postgresql://USER@HOST:PORT/DB to share one study between workers on many machines
      (start `shortcutlab sweep SPEC --storage URL` on each). No grid point runs twice.

  shortcutlab sweep export [SPEC.yaml | --storage URL --study NAME] --out DIR
      Write trials.csv (one row per trial), phase diagrams (a metric as a heatmap over
      two axes, averaged over the others), main_effects.png and summary.md.

The spec format is documented in `python -c "import shortcutlab.sweep; help(shortcutlab.sweep)"`
and in the README; sweeps/smoke.yaml and sweeps/lazy-phase.yaml are examples.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands; heavy imports happen inside the handlers."""
    parser = subparsers.add_parser(
        "sweep", help="run a hyperparameter sweep (grid or search) on Optuna, or export one",
        description=DESCRIPTION, usage=f"\n  {RUN_USAGE}\n  {EXPORT_USAGE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", metavar="SPEC.yaml|export",
                        help="the sweep spec to run, or `export`")
    parser.add_argument("export_spec", nargs="?", metavar="SPEC.yaml",
                        help="(export) read storage and study name from this spec")
    parser.add_argument("--storage", metavar="URL",
                        help="sqlite:///PATH.db or postgresql://USER@HOST:PORT/DB "
                             "(default: the spec's, else OUT/sweep.db)")
    parser.add_argument("--out", type=output_dir, metavar="DIR",
                        help="run: the sweep's output directory (trial runs, datasets, default "
                             "storage; default: the spec's `output`, else runs/sweeps/STUDY); "
                             "export: where the table and figures go (default: OUTPUT/export)")
    run = parser.add_argument_group("running a sweep")
    run.add_argument("--workers", type=positive_int, default=1, metavar="N",
                     help="local worker processes (default 1)")
    run.add_argument("--datasets", metavar="DIR",
                     help="dataset cache shared by trials (default: OUT/datasets)")
    run.add_argument("--max-trials", type=positive_int, metavar="N",
                     help="stop each worker after N trials (the rest stay for a later run)")
    run.add_argument("--threads", type=thread_count, metavar="N",
                     help="torch threads per worker (default: cores / workers)")
    run.add_argument("--dry-run", action="store_true",
                     help="validate the spec and list the trials without running them")
    export = parser.add_argument_group("exporting (shortcutlab sweep export)")
    export.add_argument("--study", metavar="NAME", help="the study to export")
    export.add_argument("--x", metavar="AXIS",
                        help="phase diagram x axis (full name like train.lr, or just lr); "
                             "default: every pair of varied axes")
    export.add_argument("--y", metavar="AXIS", help="phase diagram y axis")
    export.add_argument("--metric", action="append", metavar="NAME",
                        help="metric to plot (repeatable; default: hard, and cheats when the "
                             "trials have easy_train, easy_val and hard)")
    export.add_argument("--where", action="append", default=[], metavar="COND",
                        help="plot only trials meeting COND, e.g. bias=0.95 or "
                             "easy_val>=0.9 (repeatable; the CSV keeps every trial)")
    parser.set_defaults(func=_dispatch, parser=parser)


def _dispatch(args: argparse.Namespace) -> int:
    if args.target == "export":
        for flag in ("workers", "datasets", "max_trials", "threads", "dry_run"):
            if getattr(args, flag) not in (None, False, 1):
                args.parser.error(f"--{flag.replace('_', '-')} is for running a sweep, not export")
        return _export(args)
    for flag in ("study", "x", "y", "metric", "where"):
        if getattr(args, flag) not in (None, []):
            args.parser.error(f"--{flag} is for `shortcutlab sweep export`")
    if args.export_spec is not None:
        args.parser.error(f"unexpected argument {args.export_spec!r}")
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from shortcutlab.sweep.runner import resolve_paths, run_sweep
    from shortcutlab.sweep.spec import check_trials, load_spec
    from shortcutlab.sweep.storage import redact

    spec = load_spec(args.target)
    paths = resolve_paths(spec, args.out, args.storage, args.datasets)
    check_trials(spec)  # the same checks as a real run, before anything is written
    if args.dry_run:
        _print_plan(spec, paths)
        return 0
    print(f"sweep {spec.study}: {spec.mode}, {spec.planned_trials()} trials, "
          f"{args.workers} worker(s); storage {redact(paths.storage)}; output {paths.output}")
    summary = run_sweep(spec, output=paths.output, storage=paths.storage,
                        datasets=paths.datasets, workers=args.workers,
                        max_trials=args.max_trials, threads=args.threads)
    words = {"COMPLETE": "complete", "FAIL": "failed", "RUNNING": "running"}
    states = ", ".join(f"{n} {words.get(s, s.lower())}"
                       for s, n in sorted(summary["states"].items()))
    print(f"{summary['done']} of {summary['planned']} done ({states}) in {summary['elapsed_s']} s")
    if summary["best"]:
        best = summary["best"]
        params = ", ".join(f"{k}={v}" for k, v in best["params"].items())
        print(f"best: trial {best['number']}, {spec.metric} = {best['value']:.4f} ({params})")
    if summary["states"].get("FAIL"):
        print("failed trials keep their error; see them with `shortcutlab sweep export`")
        if not summary["states"].get("COMPLETE"):
            from shortcutlab.errors import ShortcutlabError

            raise ShortcutlabError(f"every trial of {spec.study} failed; their errors are in "
                                   "`shortcutlab sweep export`")
    print(f"export: shortcutlab sweep export {args.target}"
          + (f" --storage {redact(paths.storage)}" if args.storage else "")
          + (f" --out {paths.output / 'export'}"))
    return 0


def _print_plan(spec, paths) -> None:
    import itertools
    import math

    from shortcutlab.sweep.storage import redact

    print(f"study {spec.study} ({spec.mode}); objective: {spec.direction} {spec.metric}")
    print(f"storage {redact(paths.storage)}; output {paths.output}; datasets {paths.datasets}")
    print(f"fixed data: {dict(spec.fixed_data)}; fixed train: {dict(spec.fixed_train)}")
    for axis in spec.axes:
        shown = list(axis.values) if axis.values is not None else (
            f"[{axis.low}, {axis.high}]" + (" log" if axis.log else ""))
        print(f"  {axis.name}: {shown}")
    if spec.mode == "search":
        print(f"{spec.n_trials} trials chosen by TPE")
        return
    grid = spec.grid_space()
    data_axes = [a.name for a in spec.axes if a.section == "data"]
    datasets = math.prod(len(grid[name]) for name in data_axes)
    print(f"{spec.grid_size()} grid points on {datasets} dataset(s):")
    for index, values in enumerate(itertools.product(*grid.values())):
        if index == 10:
            print(f"  ... and {spec.grid_size() - 10} more")
            break
        print("  " + ", ".join(f"{k}={v}" for k, v in zip(grid, values, strict=True)))


def _export(args: argparse.Namespace) -> int:
    from shortcutlab.errors import ShortcutlabError
    from shortcutlab.sweep.export import export_study
    from shortcutlab.sweep.runner import resolve_paths

    storage, study, out = args.storage, args.study, args.out
    if args.export_spec is not None:
        from shortcutlab.sweep.spec import load_spec

        spec = load_spec(args.export_spec)
        paths = resolve_paths(spec, None, storage)
        storage = paths.storage
        study = study or spec.study
        out = out or str(paths.output / "export")
    if storage is None or study is None or out is None:
        raise ShortcutlabError(
            "sweep export needs the study: give SPEC.yaml, or --storage URL and --study NAME, "
            "and --out DIR"
        )
    result = export_study(storage, study, out, x=args.x, y=args.y, metrics=args.metric,
                          where=args.where)
    print(f"{result['trials']} trials -> {result['csv']}")
    print(f"{len(result['figures'])} figure(s) and {result['summary']}")
    return 0
