"""``shortcutlab explore``: the interactive explorer on a study's models, or on any runs.

The study wing finds a study's dataset, its lazy and cured runs and their SAEs from the
study's ``summary.json``; the explorer itself (:mod:`shortcutlab.explore`) knows nothing
of studies and takes run directories, a dataset and SAE directories.
"""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from shortcutlab.arguments import add_runtime_arguments
from shortcutlab.errors import ShortcutlabError

DEFAULT_PORT = 8765
STUDY_MODELS = ("lazy", "cured")


@dataclass
class ExplorerInputs:
    data_dir: Path | None = None
    runs: dict[str, Path] = field(default_factory=dict)
    saes: dict[str, Path] = field(default_factory=dict)


def study_inputs(study_dir: str | Path) -> ExplorerInputs:
    """The dataset, the lazy and cured runs and their SAEs of a finished study."""
    from shortcutlab.study.report.frame import StudyArtifacts

    root = Path(study_dir)
    study = StudyArtifacts(root)
    data = study.stage("data")
    if not data:
        raise ShortcutlabError(f"{root} has no data stage yet; run `shortcutlab study --out "
                               f"{root}` first")
    inputs = ExplorerInputs(root / "data" / data["dataset"])
    sae = (study.stage("sae") or {}).get("models", {})
    for name in STUDY_MODELS:
        stage = study.stage(name)
        if not stage or not isinstance(stage.get("run"), str):
            continue
        method = stage.get("method")
        label = f"{name} ({method})" if method else name
        inputs.runs[label] = root / name / stage["run"]
        if name in sae:
            inputs.saes[label] = root / "sae" / name
    if not inputs.runs:
        raise ShortcutlabError(f"{root} has no trained models yet; run `shortcutlab study "
                               f"--out {root}` first")
    return inputs


def explorer_link(split: str, index: int, port: int = DEFAULT_PORT, **extra: int) -> str:
    """The explorer's address for one dataset image (the report links its figures here)."""
    parts = [f"split={split}", f"index={index}", *(f"{k}={v}" for k, v in extra.items())]
    return f"http://127.0.0.1:{port}/#" + "&".join(parts)


def _pair(text: str) -> tuple[str, str]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=DIR, got {text!r}")
    return label, path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explore", help="an interactive explorer in the browser: recolor a digit, watch "
                        "the models answer",
        description="Start a local web app on a study's lazy and cured models (or on any "
                    "runs given with --run and --data): pick or draw an image, change its "
                    "color and background, and see every model's probabilities, Grad-CAM "
                    "and LRP maps, its most active SAE features (with sliders to ablate or "
                    "boost them) and a targeted attack. Prints the address to open.")
    parser.add_argument("study", nargs="?", help="a study directory (shortcutlab study --out)")
    parser.add_argument("--run", action="append", type=_pair, default=[],
                        metavar="LABEL=DIR", help="a run directory to show (repeatable; with a "
                                                  "study, added to its models)")
    parser.add_argument("--data", help="the dataset directory (default: the study's, or the "
                                       "one the first run was trained on)")
    parser.add_argument("--sae", action="append", type=_pair, default=[], metavar="LABEL=DIR",
                        help="an SAE directory of the run called LABEL (repeatable)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"the port (default: {DEFAULT_PORT})")
    parser.add_argument("--check", action="store_true",
                        help="load everything, answer one request per endpoint, and exit")
    parser.add_argument("--screenshot", metavar="FILE",
                        help="open the page in headless Chromium, save a PNG of it, and exit")
    parser.add_argument("--at", default="split=test_hard&index=0", metavar="FRAGMENT",
                        help="with --screenshot: the page's state, as in its address after "
                             "'#' (default: split=test_hard&index=0; also color=, style=, "
                             "target=, attack=)")
    add_runtime_arguments(parser)
    parser.set_defaults(func=_explore)


def resolve_inputs(args: argparse.Namespace) -> ExplorerInputs:
    from shortcutlab.probe.inputs import resolve_data_dir

    inputs = study_inputs(args.study) if args.study else ExplorerInputs()
    for label, path in args.run:
        inputs.runs[label] = Path(path)
    for label, path in args.sae:
        if label not in inputs.runs:
            raise ShortcutlabError(f"--sae {label}=...: no run is called {label!r}; the runs "
                                   f"are {', '.join(inputs.runs) or 'none'}")
        inputs.saes[label] = Path(path)
    if not inputs.runs:
        raise ShortcutlabError("give a study directory or at least one --run LABEL=DIR")
    if args.data:
        inputs.data_dir = Path(args.data)
    if inputs.data_dir is None:
        first = next(iter(inputs.runs.values()))
        inputs.data_dir = Path(resolve_data_dir(first, None))
    return inputs


def _explore(args: argparse.Namespace) -> int:
    from shortcutlab.explore.app import create_app
    from shortcutlab.explore.session import Explorer
    from shortcutlab.runtime import resolve_device, set_threads

    if not 0 <= args.port <= 65535:
        raise ShortcutlabError(f"--port must be between 0 and 65535, got {args.port}")
    set_threads(args.threads)
    device = resolve_device(args.device)
    inputs = resolve_inputs(args)
    explorer = Explorer(inputs.data_dir, inputs.runs, inputs.saes, device=device)
    app = create_app(explorer)
    if args.check:
        return _self_check(app)
    if args.screenshot:
        return _screenshot(app, Path(args.screenshot), args.at)
    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can "
              "use the explorer")
    import uvicorn

    print(f"explorer: http://{args.host}:{args.port}/  (models: {', '.join(explorer.models)}; "
          "Ctrl-C stops it)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _self_check(app) -> int:
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        info = client.get("/api/info").json()
        split = next(name for name, size in info["splits"].items() if size)
        image = {"split": split, "index": 0}
        for path, body in (("/api/analyze", {"image": image}),
                           ("/api/attack", {"image": image, "model": info["models"][0]["label"],
                                            "target": 0, "eps": 0.05})):
            response = client.post(path, json=body)
            if response.status_code != 200:
                raise ShortcutlabError(f"{path} answered {response.status_code}: "
                                       f"{response.json().get('error')}")
    print(f"explorer check: the page and its API answer ({len(info['models'])} models)")
    return 0


def _screenshot(app, path: Path, fragment: str) -> int:
    from shortcutlab.explore.app import BackgroundServer
    from shortcutlab.study.report.browser import chromium_page

    with BackgroundServer(app) as running, chromium_page(1300, 1000) as (page, errors):
        page.goto(f"{running.url}#{fragment.lstrip('#')}")
        page.wait_for_function("document.body.dataset.attacked !== undefined", timeout=60_000)
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
    if errors:
        raise ShortcutlabError(f"the page reported errors: {'; '.join(errors)}")
    print(f"screenshot: {path}")
    return 0
