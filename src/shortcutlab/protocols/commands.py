"""``shortcutlab benchmark``: reproduce a published protocol's table."""

from __future__ import annotations

import argparse
from typing import Any

from shortcutlab.arguments import add_runtime_arguments, output_dir, positive_float, positive_int

EPILOG = """\
examples:
  shortcutlab benchmark --list
  shortcutlab benchmark lff-cmnist --show
  shortcutlab benchmark lff-cmnist --methods erm --seeds 0,1,2 --workers 2 --out runs/bench/p1
  shortcutlab benchmark lff-cmnist --methods erm,lff --ratios 0.01 --scaling clean --out OUT
  shortcutlab benchmark rebias-biased-mnist --methods erm --ratios 0.01,0.003 --epochs 2 --out OUT
  shortcutlab benchmark lff-cmnist --table-only --out runs/bench/p1
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "benchmark", help="reproduce a published Colored-MNIST protocol, ours beside its table",
        description="Run a published protocol's grid (methods x conflicting ratios x seeds) "
                    "with its own dataset, model, recipe, metric and checkpoint rule, as "
                    "trials of a sweep (resumable; --storage postgresql://... spreads it over "
                    "machines), and write table.md/csv/json/png: ours as mean ± std beside "
                    "the published number.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("protocol", nargs="?", help="a protocol name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the protocols")
    parser.add_argument("--show", action="store_true",
                        help="print the protocol: dataset, recipe, published numbers")
    parser.add_argument("--methods", help="comma-separated methods (default: the protocol's)")
    parser.add_argument("--ratios", help="comma-separated conflicting ratios, e.g. 0.01,0.05 "
                                         "(default: all of the protocol's)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    parser.add_argument("--scaling", help="input scaling the protocol offers (see --show)")
    parser.add_argument("--epochs", type=positive_float,
                        help="another budget than the protocol's (stated in the table)")
    parser.add_argument("--out", type=output_dir,
                        help="output directory (default runs/benchmarks/PROTOCOL)")
    parser.add_argument("--storage", help="Optuna storage URL (default: OUT/sweep.db)")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                        help="a method setting instead of the protocol's (repeatable): a "
                             "deviation the table states, run as a study of its own")
    parser.add_argument("--workers", type=positive_int, default=1, help="training processes")
    parser.add_argument("--limit", type=positive_int,
                        help=argparse.SUPPRESS)  # tiny data, for tests
    parser.add_argument("--source", help=argparse.SUPPRESS)  # synthetic digits, for tests
    parser.add_argument("--table-only", action="store_true",
                        help="write the table from the trials already finished")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_benchmark)


def _numbers(text: str | None, kind: type, option: str) -> list | None:
    from shortcutlab.errors import ShortcutlabError

    if not text:
        return None
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ShortcutlabError(f"{option} expects comma-separated numbers, got {text!r}") from None


def _method_settings(pairs: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``METHOD.KEY=VALUE`` pairs as method -> key -> value, each key one the method has."""
    import json

    from shortcutlab.errors import ShortcutlabError
    from shortcutlab.train.algorithm import get_algorithm

    settings: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        target, equals, raw = pair.partition("=")
        method, dot, key = target.strip().partition(".")
        if not (equals and dot and key):
            raise ShortcutlabError(f"--set takes METHOD.KEY=VALUE, got {pair!r}")
        if method not in methods:
            raise ShortcutlabError(f"--set {pair}: {method} is not among the methods run "
                                   f"({', '.join(methods)})")
        known = get_algorithm(method).default_hparams
        if key not in known:
            raise ShortcutlabError(f"--set {pair}: {method} has no setting {key!r}; its "
                                   f"settings are: {', '.join(known) or 'none'}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        settings.setdefault(method, {})[key] = value
    return settings


def _benchmark(args: argparse.Namespace) -> int:
    from shortcutlab.errors import ShortcutlabError
    from shortcutlab.protocols import get_protocol, list_protocols

    if args.list:
        for name in list_protocols():
            protocol = get_protocol(name)
            print(f"{name:<22} {protocol.title}: {protocol.summary}")
        return 0
    if not args.protocol:
        raise ShortcutlabError("name a protocol (shortcutlab benchmark --list shows them)")
    protocol = get_protocol(args.protocol)
    if args.show:
        print(show_text(protocol))
        return 0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    ratios = _numbers(args.ratios, float, "--ratios")
    seeds = _numbers(args.seeds, int, "--seeds") or []
    settings = _method_settings(args.set, methods or list(protocol.methods))
    from shortcutlab.protocols import run_benchmark

    out = args.out or f"runs/benchmarks/{protocol.name}"
    table = run_benchmark(protocol, out, methods=methods, ratios=ratios, seeds=tuple(seeds),
                          scaling=args.scaling, epochs=args.epochs, workers=args.workers,
                          storage=args.storage, train=not args.table_only, limit=args.limit,
                          source=args.source,
                          threads=args.threads, settings=settings)
    from shortcutlab.protocols.table import render_markdown

    print(render_markdown(table), end="")
    print(f"table: {out}/table.md (figure {out}/table.png)")
    return 0


def show_text(protocol) -> str:
    lines = [f"{protocol.name}: {protocol.title}", f"  paper: {protocol.paper}",
             f"  code: {protocol.code}", f"  data: {protocol.summary}",
             f"  dataset: {protocol.dataset}",
             f"  conflicting ratios: {', '.join(f'{r:g}' for r in protocol.ratios)}",
             f"  model: {protocol.model} {protocol.model_kwargs}",
             f"  recipe: {protocol.trainer}",
             f"  metric: {protocol.metric_text}", f"  checkpoint: {protocol.selection_text}",
             "  input scalings:"]
    for name, scaling in protocol.scalings.items():
        default = " (default)" if name == protocol.default_scaling else ""
        lines.append(f"    {name}{default}: {scaling.text}")
    lines.append(f"  methods (default): {', '.join(protocol.methods)}")
    for name, why in protocol.unsupported.items():
        lines.append(f"  not run: {name}: {why}")
    lines.append("  published:")
    for row in protocol.published:
        lines.append(f"    {row.label}: {' / '.join(f'{v:g}' for v in row.values)} "
                     f"({row.source})")
    for text in protocol.deviations:
        lines.append(f"  deviation: {text}")
    return "\n".join(lines)
