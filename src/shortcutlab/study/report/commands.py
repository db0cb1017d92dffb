"""``shortcutlab report``: rebuild the HTML report from a study's artifacts."""

from __future__ import annotations

import argparse

from shortcutlab.arguments import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="rebuild DIR/report.html from a study's artifacts (no retraining)",
        description="Rebuild the self-contained HTML report of a study directory from the "
                    "artifacts its stages wrote. Nothing is retrained.")
    parser.add_argument("study_dir", metavar="DIR", help="a directory made by `shortcutlab study`")
    parser.add_argument("--screenshot", metavar="PNG",
                        help="also open the report in headless Chromium, check that it loads "
                             "cleanly and save a full-page screenshot")
    parser.add_argument("--height", type=positive_int, metavar="PX",
                        help="screenshot only the top PX pixels of the page (default: all)")
    parser.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from shortcutlab.study import build_report

    path = build_report(args.study_dir)
    print(path)
    if args.screenshot:
        from shortcutlab.study.report.browser import inspect_page

        check = inspect_page(path, screenshot=args.screenshot, height=args.height)
        print(f"{check.images} images, {check.broken_images} broken, "
              f"{len(check.console_errors)} console errors; screenshot: {check.screenshot}")
        return 1 if check.broken_images or check.console_errors else 0
    return 0
