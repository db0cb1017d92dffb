"""CLI: ``shortcutlab probe RUN --out DIR`` (feature visualization and unit selectivity)."""

from __future__ import annotations

import argparse

from shortcutlab.arguments import (
    add_runtime_arguments,
    apply_runtime,
    non_negative_float,
    output_dir,
    positive_float,
    positive_int,
    seed_value,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands; heavy imports happen inside the handlers."""
    parser = subparsers.add_parser(
        "probe",
        help="see what the model's units detect: visualizations, exemplars, color selectivity",
        description=(
            "Task 2. For each layer: optimize an image per unit (Fourier basis, jitter/scale/"
            "rotation, TV), find its top exemplars, measure how much it reads color versus "
            "the digit, and rank the units; for the output: visualize each class logit and "
            "check its dominant color and whether a grayscale classifier of the source sees "
            "the class. "
            "Writes probe.json, probe.npz and PNG figures into --out."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run", metavar="RUN", help="a trained model's run directory")
    parser.add_argument("--out", type=output_dir, required=True, help="output directory")
    parser.add_argument("--data", default=None,
                        help="dataset directory (default: the one recorded in RUN/config.json)")
    parser.add_argument("--layers", default=None,
                        help="comma-separated layer names "
                        "(default: every conv and hidden FC layer)")
    parser.add_argument("--objective", action="append", default=[],
                        help="also visualize a custom objective, e.g. 'features.conv3:5 - "
                        "features.conv3:9', 'logit:3', 'features.conv2:7@3,4' (repeatable)")
    parser.add_argument("--max-units", type=positive_int, default=64,
                        help="units visualized per layer (the most variable); all are measured")
    parser.add_argument("--param", choices=("fourier", "pixel"), default="fourier",
                        help="image parametrization")
    parser.add_argument("--steps", type=positive_int, default=256, help="optimization steps")
    parser.add_argument("--lr", type=positive_float, default=0.05, help="Adam learning rate")
    parser.add_argument("--tv", type=non_negative_float, default=0.05,
                        help="total-variation weight")
    parser.add_argument("--l2", type=non_negative_float, default=0.0,
                        help="L2 (distance from gray) weight")
    parser.add_argument("--no-transforms", action="store_true",
                        help="optimize without jitter, scale and rotation")
    parser.add_argument("--facets", type=positive_int, default=4,
                        help="images per polysemantic unit, pushed apart by the diversity term")
    parser.add_argument("--diversity", type=non_negative_float, default=1.0,
                        help="diversity weight")
    parser.add_argument("--facet-units", type=positive_int, default=4,
                        help="most polysemantic units per layer shown with facets")
    parser.add_argument("--logit-samples", type=positive_int, default=4,
                        help="visualizations per class logit")
    parser.add_argument("--split", default="val",
                        help="split whose digits make the color grid and the exemplar set")
    parser.add_argument("--per-digit", type=positive_int, default=10,
                        help="color grid: digits per class, each rendered in all 10 colors")
    parser.add_argument("--exemplars", type=positive_int, default=8, help="exemplars per unit")
    parser.add_argument("--exemplar-source", choices=("balanced", "split"), default="balanced",
                        help="balanced: the split's digits re-rendered in random colors (tells "
                        "color units from digit units); split: the split as it is")
    parser.add_argument("--exemplar-images", type=positive_int, default=3000,
                        help="images the exemplars are drawn from")
    parser.add_argument("--no-judge", action="store_true",
                        help="skip the grayscale judge (trained once on the dataset's "
                             "grayscale source, then cached)")
    parser.add_argument("--batch-units", type=positive_int, default=64,
                        help="units optimized together")
    parser.add_argument("--seed", type=seed_value, default=0)
    add_runtime_arguments(parser)
    parser.set_defaults(func=_probe)


def _probe(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from shortcutlab.probe.run import ProbeConfig, run_probe
    from shortcutlab.probe.transforms import DEFAULT_TRANSFORMS
    from shortcutlab.probe.visualize import VisConfig
    device = apply_runtime(args)
    vis = VisConfig(param=args.param, steps=args.steps, lr=args.lr, tv=args.tv, l2=args.l2,
                    transforms=() if args.no_transforms else DEFAULT_TRANSFORMS,
                    batch_units=args.batch_units, seed=args.seed)
    layers = tuple(n.strip() for n in args.layers.split(",") if n.strip()) if args.layers else None
    config = ProbeConfig(layers=layers, max_units=args.max_units, vis=vis,
                         facet_units=args.facet_units, facets=args.facets,
                         diversity=args.diversity, logit_samples=args.logit_samples,
                         split=args.split, per_digit=args.per_digit, exemplars=args.exemplars,
                         exemplar_source=args.exemplar_source,
                         exemplar_images=args.exemplar_images,
                         judge=not args.no_judge, seed=args.seed, objectives=tuple(args.objective))
    result = run_probe(args.run, args.out, args.data, config, device)
    checks = result["class_logits"]
    summary = {"dominant_color_match": checks["dominant_color_match"],
               "gray_judge_match": checks.get("gray_judge_match")}
    for layer, table in result["layers"].items():
        summary[layer] = {key: table[key] for key in
                          ("units", "color_units", "digit_units", "shape_units",
                                    "mixed_units", "dead")}
    print(json.dumps(summary, indent=2))
    print(f"wrote {Path(args.out) / 'probe.json'} and {len(result['figures'])} figures")
    return 0
