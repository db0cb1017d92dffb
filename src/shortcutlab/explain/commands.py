"""``shortcutlab explain``: heatmaps, background share and pointing game, figures."""

from __future__ import annotations

import argparse

from shortcutlab.arguments import (
    add_runtime_arguments,
    non_negative_float,
    non_negative_int,
    output_dir,
    positive_int,
    seed_value,
)

METHOD_CHOICES = ("gradcam", "gradcampp", "lrp", "ixg", "ig", "occlusion", "smoothgrad")
RULE_CHOICES = ("epsilon", "zplus", "epsilon-plus", "epsilon-plus-flat", "epsilon-gamma-box",
                "epsilon-alpha2-beta1", "epsilon-alpha2-beta1-flat")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands; heavy imports happen inside the handlers."""
    parser = subparsers.add_parser(
        "explain",
        help="where does a trained model look? heatmaps, background share, figures",
        description=(
            "Explain a trained model's decisions on a dataset: attribution maps (Grad-CAM, "
            "Grad-CAM++, LRP, input x gradient, integrated gradients), the share of positive "
            "attribution that falls on the background instead of the digit, the pointing "
            "game, the model-randomization sanity check, and figures. Writes explain.json "
            "and PNG figures into --out."
        ),
        epilog=(
            "example: shortcutlab explain runs/lazy --data data/cmnist --method gradcam "
            "--compare runs/standard --out out/explain-gradcam"
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run", metavar="RUN", help="run (or model) directory of a trained model")
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset directory")
    parser.add_argument("--out", type=output_dir, required=True, metavar="DIR",
                        help="where explain.json and the figures go")
    parser.add_argument("--method", default="gradcam", choices=METHOD_CHOICES,
                        help="attribution method: gradcam, gradcampp (Grad-CAM++), lrp, "
                             "ixg (input x gradient), ig (integrated gradients), occlusion "
                             "(a sliding gray patch, no gradients), smoothgrad (--base "
                             "averaged over noisy copies)")
    parser.add_argument("--compare", metavar="RUN2", default=None,
                        help="a second trained model, explained and scored side by side")
    parser.add_argument("--label", default=None,
                        help="name of RUN in figures (default: its directory name)")
    parser.add_argument("--compare-label", default=None,
                        help="name of RUN2 in figures (default: its directory name)")
    parser.add_argument("--splits", nargs="+", default=["test_easy", "test_hard", "test_unbiased"],
                        metavar="SPLIT", help="splits to score")
    parser.add_argument("--limit", type=non_negative_int, default=2000,
                        help="images per split (a fixed random subset); 0 means all")
    parser.add_argument("--target", default="predicted", choices=("predicted", "label"),
                        help="explain each model's predicted class or the true label")
    parser.add_argument("--layer", default=None,
                        help="Grad-CAM layer name (default: the last Conv2d)")
    parser.add_argument("--rule", default="epsilon", choices=RULE_CHOICES,
                        help="LRP rule or composite")
    parser.add_argument("--epsilon", type=non_negative_float, default=0.01,
                        help="LRP epsilon (the epsilon rule's; near 0 it is gradient x input)")
    parser.add_argument("--steps", type=positive_int, default=32,
                        help="integrated-gradients steps")
    parser.add_argument("--base", default="ixg", choices=METHOD_CHOICES[:-1],
                        help="smoothgrad: the method averaged over noisy copies (default: ixg)")
    parser.add_argument("--samples", type=positive_int, default=16,
                        help="smoothgrad: noisy copies per image (default: 16)")
    parser.add_argument("--noise", type=non_negative_float, default=0.15,
                        help="smoothgrad: noise standard deviation, pixels in [0, 1] "
                             "(default: 0.15)")
    parser.add_argument("--window", type=positive_int, default=4,
                        help="occlusion: side of the gray patch in pixels (default: 4)")
    parser.add_argument("--stride", type=positive_int, default=2,
                        help="occlusion: step of the patch (default: 2)")
    parser.add_argument("--tolerance", type=non_negative_int, default=0,
                        help="pointing game: pixels by which the digit mask is grown")
    parser.add_argument("--sanity-images", type=non_negative_int, default=32,
                        help="images for the randomization sanity check (0 skips it)")
    parser.add_argument("--examples", type=non_negative_int, default=8,
                        help="example images per split in examples.png (0 skips it)")
    parser.add_argument("--faithfulness", type=non_negative_int, default=200, metavar="N",
                        help="deletion curves on N images of --faithfulness-split: pixels "
                             "removed in the map's order, at random, background first and "
                             "digit first (0 skips them; default: 200)")
    parser.add_argument("--faithfulness-split", default="test_hard",
                        help="split of the deletion curves (default: test_hard)")
    parser.add_argument("--fill", default="mean", choices=("mean", "road"),
                        help="what a removed pixel becomes: each channel's mean color, or "
                             "ROAD's noisy linear imputation from its neighbours (about 4x "
                             "slower)")
    parser.add_argument("--removal-steps", type=positive_int, default=20,
                        help="points of each deletion curve after the clean one (default: 20)")
    parser.add_argument("--no-figures", dest="figures", action="store_false",
                        help="write explain.json only")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--seed", type=seed_value, default=0,
                        help="seed of the image subset and of the sanity check's re-initialization")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from shortcutlab.explain.run import ExplainConfig, explain_run
    from shortcutlab.runtime import set_threads

    set_threads(args.threads)
    config = ExplainConfig(
        method=args.method, splits=tuple(args.splits), limit=args.limit or None,
        target=args.target, batch_size=args.batch_size, layer=args.layer, rule=args.rule,
        epsilon=args.epsilon, steps=args.steps, tolerance=args.tolerance, base=args.base,
        samples=args.samples, noise=args.noise, window=args.window, stride=args.stride,
        sanity_images=args.sanity_images, examples=args.examples, seed=args.seed,
        device=args.device, figures=args.figures, faithfulness=args.faithfulness,
        faithfulness_split=args.faithfulness_split, fill=args.fill,
        removal_steps=args.removal_steps,
    )
    summary = explain_run(args.run, args.data, args.out, config, compare_dir=args.compare,
                          label=args.label, compare_label=args.compare_label)
    _print_summary(summary)
    print(f"wrote {args.out}/explain.json" + (
        "".join(f", {name}" for key, name in summary["figures"].items() if key != "aha_images")))
    return 0


def _print_summary(summary: dict) -> None:
    print(f"{summary['method']}: share of positive attribution outside the digit "
          "(mean +- std), pointing game")
    for entry in summary["models"].values():
        for split, metrics in entry["splits"].items():
            share = metrics["background_share"]
            mean = "n/a" if share["mean"] is None else f"{share['mean']:.3f} +- {share['std']:.3f}"
            empty = f", {share['undefined']} empty maps left out" if share["undefined"] else ""
            print(f"  {entry['label']:>16s} {split:14s} acc {metrics['accuracy']:.3f}  "
                  f"background share {mean} (uniform {metrics['background_area']:.3f}{empty})  "
                  f"pointing {metrics['pointing_game']:.3f}")
