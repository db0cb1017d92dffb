"""CLI subcommands of this stage (registered by ``shortcutlab.cli``)."""

from __future__ import annotations

import argparse

from shortcutlab.arguments import (
    add_runtime_arguments,
    non_negative_int,
    output_dir,
    positive_float,
    positive_int,
    seed_value,
    unit_float,
)

DESCRIPTION = """\
Targeted adversarial attack on every image of one class (Task 5): for each image, the
smallest L-inf epsilon at which PGD makes the model say TARGET with at least CONFIDENCE
(bisected to --precision), the success rate at the budget --eps, and the same when only
the background or only the digit may change. With --compare, both models are attacked
on the same images and compared pairwise (ratio of medians, Wilcoxon signed-rank test).

Writes attack.json, min_eps.npz (per-image minimal epsilons), examples_at_eps.png,
examples_min_eps.png and min_eps.png into --out; --save-examples adds examples.npz.
"""

EPILOG = """\
example:
  shortcutlab attack runs/lazy --compare runs/tea --data data/cmnist \\
      --source 7 --target 3 --confidence 0.9 --eps 0.05 --out results/attack

cost: about (1 + log2(max_eps / precision)) batched attacks of --steps steps per region
and model (all 1028 test 7s, two cnn3 models, three regions: about 14 CPU-minutes);
--limit N attacks only the first N images of the class (for a quick look).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands; heavy imports happen inside the handlers."""
    parser = subparsers.add_parser(
        "attack", help="targeted attacks: minimal epsilon per image, lazy vs robust",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", metavar="RUN", help="a model or run directory to attack")
    parser.add_argument("--compare", metavar="RUN2",
                        help="a second model attacked on the same images (the ratio is RUN2/RUN)")
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset directory")
    parser.add_argument("--split", default="test_hard",
                        help="split whose images of --source are attacked (default: test_hard)")
    parser.add_argument("--source", type=non_negative_int, default=7,
                        help="class to attack (default: 7)")
    parser.add_argument("--target", type=non_negative_int, default=3,
                        help="class the model must be made to say (default: 3)")
    parser.add_argument("--confidence", type=unit_float, default=0.9,
                        help="softmax probability of --target to reach, in (0, 1) "
                             "(default: 0.9)")
    parser.add_argument("--eps", type=positive_float, default=0.05,
                        help="L-inf budget for the success rate, pixels in [0, 1] "
                             "(default: 0.05)")
    parser.add_argument("--out", type=output_dir, required=True, metavar="DIR",
                        help="output directory")
    parser.add_argument("--save-examples", action="store_true",
                        help="also write examples.npz (original, adversarial, target_prob)")
    tuning = parser.add_argument_group("attack settings")
    tuning.add_argument("--attack", default="pgd",
                        choices=("pgd", "fgsm", "pgd-l2", "apgd-ce", "apgd-dlr", "color-shift",
                                 "fmn", "ensemble"),
                        help="attack (default: pgd, L-inf with random start); apgd-ce and "
                             "apgd-dlr: Auto-PGD with cross-entropy or the DLR loss; fmn: the "
                             "fast minimum-norm attack alone (its norm rounded up onto the "
                             "grid); "
                             "ensemble: per image the smallest epsilon of pgd, fmn (the "
                             "fast minimum-norm attack), apgd-ce and apgd-dlr (about 3x "
                             "pgd's cost); color-shift: one RGB shift of the pixels a "
                             "region allows (with --regions background: the background's "
                             "color); with pgd-l2 the epsilons are L2 radii")
    tuning.add_argument("--masked-attack", default="",
                        choices=("", "pgd", "fgsm", "pgd-l2", "apgd-ce", "apgd-dlr",
                                 "color-shift", "fmn", "ensemble"),
                        help="attack of the background-only and digit-only searches "
                             "(default: the same as --attack); for example --attack "
                             "ensemble --masked-attack pgd puts the expensive worst case on "
                             "the whole image only")
    tuning.add_argument("--steps", type=positive_int, default=20,
                        help="steps per attack (default: 20)")
    tuning.add_argument("--rel-step-size", type=positive_float, default=2.5,
                        help="step size as a multiple of eps/steps (default: 2.5)")
    tuning.add_argument("--restarts", type=positive_int, default=1,
                        help="random restarts for images not yet fooled (default: 1)")
    tuning.add_argument("--seed", type=seed_value, default=0, help="seed of the random starts")
    tuning.add_argument("--max-eps", type=positive_float, default=1.0,
                        help="top of the minimal-epsilon search (default: 1.0)")
    tuning.add_argument("--precision", type=positive_float, default=1e-3,
                        help="grid of the minimal-epsilon search (default: 0.001)")
    tuning.add_argument("--regions", default="all,background,digit",
                        help="where perturbations may go, comma-separated subset of "
                             "all,background,digit (default: all three)")
    tuning.add_argument("--limit", type=positive_int, default=None,
                        help="attack only the first N images of --source (default: all)")
    tuning.add_argument("--universal", action="store_true",
                        help="also fit one background perturbation for all images at --eps "
                             "(on half of them; the rate on the other half) and draw it")
    tuning.add_argument("--checks", action="store_true",
                        help="also check for gradient masking: failures at --max-eps, success "
                             "at eps/2, eps and 2 eps, and the gradient-free Square attack")
    tuning.add_argument("--color-shift", action="store_true",
                        help="also find each image's smallest uniform recoloring of the "
                             "background that makes the model say --target (color_shift in "
                             "attack.json): how cheap the color shortcut is")
    tuning.add_argument("--square-queries", type=positive_int, default=1000,
                        help="queries of the Square attack of --checks (default: 1000)")
    tuning.add_argument("--batch-size", type=positive_int, default=256,
                        help="images per batched attack call (default: 256)")
    add_runtime_arguments(tuning)
    parser.set_defaults(func=_attack)


def _attack(args: argparse.Namespace) -> int:
    from shortcutlab.attack.experiment import AttackSettings, run_attack
    from shortcutlab.runtime import set_threads

    set_threads(args.threads)
    settings = AttackSettings(
        source=args.source, target=args.target, confidence=args.confidence, eps=args.eps,
        attack=args.attack, masked_attack=args.masked_attack, steps=args.steps,
        rel_step_size=args.rel_step_size,
        restarts=args.restarts, seed=args.seed, max_eps=args.max_eps,
        precision=args.precision,
        regions=tuple(r.strip() for r in args.regions.split(",") if r.strip()),
        limit=args.limit, batch_size=args.batch_size, universal=args.universal,
        checks=args.checks, square_queries=args.square_queries, color_shift=args.color_shift)
    settings.validate()
    summary = run_attack(args.run, args.data, args.out, settings, compare=args.compare,
                         split=args.split, save_examples=args.save_examples,
                         device=args.device)
    print(format_summary(summary))
    print(f"wrote {args.out}/attack.json")
    return 0


def format_summary(summary: dict) -> str:
    """A few lines for the terminal: per model and region, success at eps and median."""
    settings = summary["settings"]
    lines = [f"{settings['source']} -> {settings['target']} at confidence "
             f"{settings['confidence']:g}, eps {settings['eps']:g}, {summary['split']}"]

    def fmt(value: float | None) -> str:
        # null statistics are infinite: images not fooled up to max_eps
        return f">{settings['max_eps']:g}" if value is None else f"{value:.3f}"

    for model in summary["models"]:
        rows = {model["region"]: model, **model["masked"]}
        for region, row in rows.items():
            stats = row["min_eps"]
            lines.append(f"  {model['name']:<16} {region:<10} n={model['n']:<5} "
                         f"fooled at eps {row['success_rate_at_eps']:6.1%}  min eps median "
                         f"{fmt(stats['median'])} [q1 {fmt(stats['q1'])}, q3 {fmt(stats['q3'])}]")
    comparison = summary.get("comparison")
    if comparison:
        for region in settings["regions"]:
            row = comparison[region]
            p_value = "n/a" if row["p_value"] is None else f"{row['p_value']:.2g}"
            ratio = "n/a" if row["median_ratio"] is None else f"{row['median_ratio']:.2f}"
            lines.append(f"  {comparison['compare']} / {comparison['run']} ({region}): median "
                         f"ratio {ratio}, Wilcoxon p={p_value}")
    return "\n".join(lines)
