"""CLI: ``shortcutlab sae train|label|intervene`` (sparse autoencoders on hidden states)."""

from __future__ import annotations

import argparse

from shortcutlab.arguments import (
    add_runtime_arguments,
    apply_runtime,
    non_negative_float,
    non_negative_int,
    output_dir,
    positive_float,
    positive_int,
    seed_value,
    unit_float,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands; heavy imports happen inside the handlers."""
    parser = subparsers.add_parser(
        "sae",
        help="decompose a layer with a sparse autoencoder, label its features, dial them",
        description=(
            "Task 6. `train` fits an overcomplete sparse autoencoder to one layer's "
            "activations and reports r2, L0, dead features and the model's accuracy with the "
            "layer replaced by the reconstruction; `label` names each feature by its color "
            "and digit selectivity and draws feature cards; `intervene` ablates the color "
            "features and boosts one color's features on other digits."
        ),
    )
    commands = parser.add_subparsers(dest="sae_command", metavar="SUBCOMMAND")
    commands.required = True
    formatter = argparse.ArgumentDefaultsHelpFormatter

    train = commands.add_parser(
        "train", help="train an SAE on one layer of a trained model", formatter_class=formatter,
        description="Train a sparse autoencoder on a layer's activations (train split images) "
        "and evaluate it on validation activations; writes sae.pt, sae.json and a figure.")
    train.add_argument("run", metavar="RUN", help="a trained model's run directory")
    train.add_argument("--out", type=output_dir, required=True, help="SAE directory to write")
    train.add_argument("--data", default=None,
                       help="dataset directory (default: the one recorded in RUN/config.json)")
    train.add_argument("--layer", default=None, help="layer name (default: the last conv layer)")
    train.add_argument("--mode", default="auto", choices=("auto", "flat", "pooled", "position"),
                       help="conv layers: per position or spatially pooled; FC layers: flat")
    train.add_argument("--expansion", type=positive_int, default=8,
                       help="features per input dimension")
    train.add_argument("--activation", choices=("relu", "topk", "batchtopk", "jumprelu"),
                       default="relu",
                       help="relu (L1 penalty), topk (k features per input), batchtopk (k per "
                            "input on average over a batch) or jumprelu (learned thresholds, "
                            "L0 penalty)")
    train.add_argument("--k", type=positive_int, default=16,
                       help="TopK and BatchTopK: features on per input")
    train.add_argument("--l1", type=non_negative_float, default=3e-3,
                       help="ReLU: L1 sparsity weight; JumpReLU: L0 weight")
    train.add_argument("--aux", type=non_negative_float, default=1 / 32,
                       help="TopK and BatchTopK: weight of the auxiliary loss that revives "
                            "dead features (default: 1/32)")
    train.add_argument("--steps", type=positive_int, default=4000)
    train.add_argument("--batch-size", type=positive_int, default=512)
    train.add_argument("--lr", type=positive_float, default=1e-3)
    train.add_argument("--resample-every", type=non_negative_int, default=1000,
                       help="resample dead features this often (0: never)")
    train.add_argument("--images", type=positive_int, default=5000,
                       help="training-split images whose activations train the SAE")
    train.add_argument("--split-images", type=non_negative_int, default=0, metavar="N",
                       help="accuracy with the layer reconstructed: the first N images of "
                            "val, test_easy and test_hard (0: the whole split)")
    train.add_argument("--seed", type=seed_value, default=0)
    add_runtime_arguments(train)
    train.set_defaults(func=_train)

    label = commands.add_parser(
        "label", help="label features by color and digit selectivity", formatter_class=formatter,
        description="Measure every feature on validation digits rendered in all 10 colors, "
        "name it color:NAME, digit:D, mixed or dead, and draw feature cards (exemplars and "
        "activation profiles). Writes labels.json and figures into the SAE directory.")
    label.add_argument("sae_dir", metavar="SAE_DIR", help="directory written by `sae train`")
    label.add_argument("--out", type=output_dir, default=None,
                       help="output directory (default: SAE_DIR)")
    label.add_argument("--per-digit", type=positive_int, default=10,
                       help="digits per class in the color grid")
    label.add_argument("--cards", type=positive_int, default=16, help="feature cards to draw")
    label.add_argument("--seed", type=seed_value, default=0)
    add_runtime_arguments(label)
    label.set_defaults(func=_label)

    intervene = commands.add_parser(
        "intervene", help="ablate or boost features while the model runs",
        formatter_class=formatter,
        description="Headline experiments: accuracy with every color feature ablated, and "
        "how often boosting one color's features on images of other digits flips the "
        "prediction to that color's class. Labels the features first if needed. Writes "
        "intervene.json and interventions.png.")
    intervene.add_argument("sae_dir", metavar="SAE_DIR", help="directory written by `sae train`")
    intervene.add_argument("--out", type=output_dir, default=None,
                           help="output directory (default: SAE_DIR)")
    intervene.add_argument("--strengths", default="1,2,4",
                           help="boost strengths, in units of the feature's mean activation "
                           "on images of its color")
    intervene.add_argument("--edit", action="append", default=[],
                           help="also measure a custom edit: F=SCALE (0 ablates, k boosts) "
                           "or F+AMOUNT (repeatable)")
    intervene.add_argument("--split", default="test_hard", help="split for the custom edits")
    intervene.add_argument("--boost-images", type=positive_int, default=1000,
                           help="test_easy images of other digits per boosted color")
    intervene.add_argument("--split-images", type=non_negative_int, default=0, metavar="N",
                           help="ablate and boost on the first N images of val, test_easy "
                                "and test_hard (0: the whole split)")
    intervene.add_argument("--seed", type=seed_value, default=0)
    add_runtime_arguments(intervene)
    intervene.set_defaults(func=_intervene)

    browse = commands.add_parser(
        "browse", help="an HTML page with one card per feature",
        formatter_class=formatter,
        description="One card per live feature of a labelled SAE (run `sae label` first): "
        "label, density, mean activation by color and by digit, top exemplars, and the "
        "decoder direction visualized by the probe. Writes SAE_DIR/features.html.")
    browse.add_argument("sae_dir", metavar="SAE_DIR", help="directory written by `sae train`")
    browse.add_argument("--features", type=non_negative_int, default=64,
                        help="how many features (color ones first; 0: every live one)")
    browse.add_argument("--steps", type=positive_int, default=64,
                        help="optimization steps of each direction's picture")
    browse.add_argument("--out", default=None, metavar="FILE",
                        help="where to write the page (default: SAE_DIR/features.html)")
    add_runtime_arguments(browse)
    browse.set_defaults(func=_browse)

    stable = commands.add_parser(
        "stability", help="do the features come back with another SAE seed?",
        formatter_class=formatter,
        description="Match the features of SAEs trained on the same layer with different "
        "seeds (Hungarian matching on decoder cosine) against the first one, whose "
        "labels.json names them; report the share of each kind (color, digit, ...) that "
        "recurs above --threshold in every other SAE. Writes stability.json into --out.")
    stable.add_argument("sae_dirs", metavar="SAE_DIR", nargs="+",
                        help="SAE directories of one layer; the first is the reference")
    stable.add_argument("--threshold", type=unit_float, default=0.9,
                        help="decoder cosine above which a feature recurs (default: 0.9)")
    stable.add_argument("--out", type=output_dir, required=True, metavar="DIR")
    stable.set_defaults(func=_stability)


    _add_accentuate(subparsers)


def _train(args: argparse.Namespace) -> int:
    from shortcutlab.decompose.run import train_on_run
    from shortcutlab.decompose.sae import SAEConfig

    device = apply_runtime(args)
    config = SAEConfig(expansion=args.expansion, activation=args.activation, k=args.k,
                       l1=args.l1, aux=args.aux, steps=args.steps,
                       batch_size=args.batch_size, lr=args.lr,
                       resample_every=args.resample_every, seed=args.seed)
    meta = train_on_run(args.run, args.out, args.data, args.layer, args.mode, config,
                        images=args.images, split_images=args.split_images, device=device)
    val = meta["accuracy"]["val"]
    print(f"SAE on {meta['layer']} ({meta['mode']}, {meta['sae']['d_hidden']} features): "
          f"r2 {meta['r2']:.3f}, L0 {meta['l0']:.1f}, dead {meta['dead_fraction']:.1%}, "
          f"dense {meta['dense_fraction']:.1%}, fidelity {meta['fidelity']['score']:.3f}, "
          f"val accuracy {val['original']:.3f} -> {val['reconstructed']:.3f} reconstructed")
    return 0


def _label(args: argparse.Namespace) -> int:
    from shortcutlab.decompose.run import label_features

    device = apply_runtime(args)
    result = label_features(args.sae_dir, args.out, per_digit=args.per_digit, cards=args.cards,
                            seed=args.seed, device=device)
    print(f"features: {result['summary']}; colors with a feature: "
          f"{result['colors_with_a_feature']}/10")
    return 0


def _intervene(args: argparse.Namespace) -> int:
    import json

    from shortcutlab.decompose.run import intervene, parse_edit
    from shortcutlab.errors import ShortcutlabError

    device = apply_runtime(args)
    try:
        strengths = [float(v) for v in args.strengths.split(",") if v.strip()]
    except ValueError:
        raise ShortcutlabError(f"--strengths must be numbers separated by commas, "
                               f"got {args.strengths!r}") from None
    edits = [parse_edit(text) for text in args.edit]
    result = intervene(args.sae_dir, args.out, strengths, edits, args.split,
                       boost_images=args.boost_images, split_images=args.split_images,
                       seed=args.seed, device=device)
    ablation = result["ablate_color_features"]["splits"]
    summary = {split: {"before": v["accuracy_before"], "after": v["accuracy_after"]}
               for split, v in ablation.items()}
    print("accuracy with the color features ablated:", json.dumps(summary))
    if "mean_flip_rate" in result["boost_color_features"]:
        print("mean flip rate to the boosted color's class:",
              result["boost_color_features"]["mean_flip_rate"])
    if "custom" in result:
        print("custom edits:", json.dumps(result["custom"]))
    return 0


def _stability(args: argparse.Namespace) -> int:
    from pathlib import Path

    from shortcutlab.artifacts import write_json
    from shortcutlab.decompose.stability import stability

    result = stability(args.sae_dirs, args.threshold)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "stability.json", result)
    for kind, row in result["by_kind"].items():
        share = "n/a" if row["share"] is None else f"{row['share']:.0%}"
        print(f"{kind:6s} {row['recurring']:4d} of {row['n']:4d} recur ({share})")
    print(f"wrote {out / 'stability.json'}")
    return 0


def _browse(args: argparse.Namespace) -> int:
    from shortcutlab.decompose.browser import feature_browser

    device = apply_runtime(args)
    path = feature_browser(args.sae_dir, args.out, features=args.features, steps=args.steps,
                           device=device)
    print(f"wrote {path}")
    return 0


ACCENTUATE_EPILOG = """\
directions:
  color:NAME         validation images in that color minus the others (color:yellow)
  class:A-B          class A's validation images minus class B's (class:3-7)
  feature:SAE:F      feature F's decoder row of the SAE in directory SAE (one model only)

writes accentuate.json (per model: objective before/after, share of the change off the
digit against the background's share of the pixels, p(--target) before/after) and
accentuate.png.

example (the 7s of the hard set pushed toward "yellow", lazy vs cured):
  shortcutlab accentuate runs/lazy --compare runs/cured --data data/cmnist \\
      --direction color:yellow --out results/accentuate
"""


def _add_accentuate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "accentuate", help="push real images along a direction of a layer (Task 2/6)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Feature accentuation: start from real images of --source and push "
                    "them along a direction of a layer's activations (a color, a class "
                    "difference or an SAE feature), close to where they started; see what "
                    "changes and where (on the digit or off it).",
        epilog=ACCENTUATE_EPILOG)
    parser.add_argument("run", metavar="RUN", help="run (or model) directory")
    parser.add_argument("--compare", metavar="RUN2", help="a second model, its own direction")
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset directory")
    parser.add_argument("--out", type=output_dir, required=True, metavar="DIR",
                        help="where accentuate.json and accentuate.png go")
    parser.add_argument("--direction", default="color:yellow",
                        help="color:NAME, class:A-B or feature:SAE_DIR:F (default color:yellow)")
    parser.add_argument("--layer", help="layer of color: and class: directions (default: the "
                                        "last Conv2d)")
    parser.add_argument("--split", default="test_hard", help="split of the images (default "
                                                             "test_hard)")
    parser.add_argument("--source", type=int, default=7, help="class of the images (default 7)")
    parser.add_argument("--target", type=int, default=3,
                        help="class whose probability is reported (default 3)")
    parser.add_argument("--images", type=positive_int, default=64,
                        help="the first N images of --source (default 64)")
    parser.add_argument("--steps", type=positive_int, default=200, help="Adam steps (200)")
    parser.add_argument("--lr", type=positive_float, default=0.02, help="step size (0.02)")
    parser.add_argument("--closeness", type=non_negative_float, default=0.01,
                        help="weight of the squared distance to the start (0.01)")
    parser.add_argument("--seed", type=seed_value, default=0)
    add_runtime_arguments(parser)
    parser.set_defaults(func=_accentuate)


def _accentuate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from shortcutlab.decompose.accentuation import AccentuateSettings, accentuate_run

    device = apply_runtime(args)
    settings = AccentuateSettings(direction=args.direction, layer=args.layer, split=args.split,
                                  source=args.source, target=args.target, images=args.images,
                                  steps=args.steps, lr=args.lr, closeness=args.closeness,
                                  seed=args.seed)
    runs = {Path(args.run).name: args.run}
    if args.compare:
        name = Path(args.compare).name
        runs[name if name not in runs else f"{name} (compare)"] = args.compare
    result = accentuate_run(runs, args.data, args.out, settings, device=str(device))
    for label, entry in result["models"].items():
        target = (f", p({settings.target}) {entry['target_before']:.2f} -> "
                  f"{entry['target_after']:.2f}" if "target_before" in entry else "")
        print(f"{label}: {entry['direction']} ({entry['layer']}): objective "
              f"{entry['objective_before']:.2f} -> {entry['objective_after']:.2f}; "
              f"{entry['background_share_of_change']:.1%} of the change off the digit "
              f"(background {entry['background_share_of_pixels']:.1%} of the pixels){target}")
    print(f"wrote {Path(args.out) / 'accentuate.json'} and accentuate.png")
    return 0
