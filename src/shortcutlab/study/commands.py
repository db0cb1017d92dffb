"""``shortcutlab study``: the whole study in one command."""

from __future__ import annotations

import argparse

from shortcutlab.arguments import add_runtime_arguments, output_dir, seed_value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "study", help="run the whole study (data to report), resumably",
        description="Run every stage in order: data (Task 0), lazy and standard models "
                    "(Task 1), cured (Task 4: the interventions), probe (Task 2), explain "
                    "(Task 3), attack (Task 5), sae (Task 6), then the HTML report. Each stage "
                    "is keyed by its config and inputs: re-running skips what is done, a "
                    "changed config re-runs exactly the affected stages, and an interrupted "
                    "study resumes. Every option is in one TOML file: see --print-config.",
    )
    parser.add_argument("--out", type=output_dir, default="study",
                        help="study directory (default: study)")
    parser.add_argument("--config", help="a TOML file overriding the defaults "
                                         "(see --print-config)")
    parser.add_argument("--quick", action="store_true",
                        help="a small, fast study for demos and tests (about 3 minutes)")
    parser.add_argument("--force", action="append", default=[], metavar="STAGE",
                        help="re-run STAGE and everything downstream (repeatable)")
    parser.add_argument("--only", action="append", metavar="STAGE",
                        help="run only STAGE and what it needs (repeatable)")
    parser.add_argument("--seed", type=seed_value, metavar="N",
                        help="the study seed, which every stage's seed defaults to: replicate "
                             "the whole study on seed N (default: [study] seed, 0)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective configuration (the documented defaults, "
                             "with --config, --quick and --seed applied, every stage's "
                             "seed resolved) as TOML, and exit")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="stages run side by side in N processes, the CPU threads shared "
                             "among them (default: [study] workers, 0: one per two cores on "
                             "the CPU, at most 4; 1 on a GPU); a runtime setting: changing it "
                             "re-runs nothing")
    add_runtime_arguments(parser, device_default=None,
                          default_help="[study] device, auto; a runtime setting: changing it "
                                       "re-runs nothing")
    parser.set_defaults(func=_study)


def _study(args: argparse.Namespace) -> int:
    runtime = {"device": args.device, "threads": args.threads, "workers": args.workers}
    if args.print_config:
        from shortcutlab.study.config import load_config, render_config

        config = load_config(args.config, quick=args.quick, seed=args.seed, runtime=runtime)
        print(render_config(config, quick=args.quick), end="")
        return 0
    from shortcutlab.study import run_study

    report = run_study(args.out, args.config, quick=args.quick, force=tuple(args.force),
                       only=tuple(args.only) if args.only else None, seed=args.seed,
                       runtime=runtime)
    print(f"ran: {', '.join(report.ran) or 'nothing'}; "
          f"up to date: {', '.join(report.skipped) or 'nothing'}")
    print(f"summary: {args.out}/summary.json")
    return 0
