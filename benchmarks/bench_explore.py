"""The explorer's latency, over real HTTP on 127.0.0.1, against a bare forward pass.

Three interactions, each repeated (default 50 times) on different images and settings,
medians reported next to the median of one bare forward pass of one image through one
model, measured in the same run:

* an image change (``/api/analyze``: both models' predictions, Grad-CAM and LRP for both,
  the SAE features): target at most 150 ms;
* an SAE slider (``/api/predict`` with one feature scaled): at most 100 ms;
* an attack at one epsilon (``/api/attack``, PGD, 20 steps): at most 1 s.

    python benchmarks/bench_explore.py [--study DIR] [--interactions 50] [--threads 1]

With ``--study`` it measures a study's own models and SAEs; without, two default-size
cnn3 models (untrained: latency does not depend on the weights) on a small synthetic
dataset, with an SAE of the study's width trained briefly on the first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SHORTCUTLAB_PROGRESS", "0")
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

TARGETS_MS = {"image change": 150.0, "SAE slider": 100.0, "attack at one epsilon": 1000.0}


def synthetic_inputs(root: Path) -> tuple[Path, dict[str, Path], dict[str, Path]]:
    from shortcutlab import models
    from shortcutlab.data import BuildConfig, build_dataset, load_source
    from shortcutlab.decompose.run import train_on_run
    from shortcutlab.decompose.sae import SAEConfig

    data = root / "data"
    build_dataset(BuildConfig(source="synthetic", limit=600), data,
                  load_source("synthetic", limit=600))
    runs = {}
    for seed, label in enumerate(("lazy", "cured")):
        torch.manual_seed(seed)
        run = root / label
        models.save(models.create("cnn3"), run)
        (run / "config.json").write_text(json.dumps({"data_dir": str(data)}))
        runs[label] = run
    train_on_run(runs["lazy"], root / "sae", config=SAEConfig(steps=50), images=600,
                 eval_images=200, show_progress=False)
    return data, runs, {"lazy": root / "sae"}


def median_ms(call, count: int) -> float:
    call(0)  # warm-up
    times = []
    for i in range(count):
        start = time.perf_counter()
        call(i + 1)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", help="a study directory (default: synthetic stand-ins)")
    parser.add_argument("--interactions", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import http.client

    from shortcutlab.explore.app import BackgroundServer, create_app
    from shortcutlab.explore.session import Explorer

    with tempfile.TemporaryDirectory() as scratch:
        if args.study:
            from shortcutlab.study.explore import study_inputs

            inputs = study_inputs(args.study)
            data, runs, saes = inputs.data_dir, inputs.runs, inputs.saes
        else:
            data, runs, saes = synthetic_inputs(Path(scratch))
        explorer = Explorer(data, runs, saes)
        with BackgroundServer(create_app(explorer)) as running:
            connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=60)

            def call(method: str, path: str, body: dict | None = None) -> dict:
                payload = None if body is None else json.dumps(body)
                connection.request(method, path, payload,
                                   {"Content-Type": "application/json"} if payload else {})
                response = connection.getresponse()
                data = response.read()
                if response.status != 200:
                    raise SystemExit(f"{path}: {response.status} {data[:300]!r}")
                return json.loads(data)

            info = call("GET", "/api/info")
            size = info["splits"]["test_hard"]
            classes, colors = info["classes"], len(info["palette"])
            with_sae = next((m["label"] for m in info["models"] if m["sae"]), None)
            first = next(iter(explorer.models.values()))
            x = torch.rand(1, 3, 28, 28)

            def image(i: int) -> dict:
                return {"split": "test_hard", "index": (37 * i) % size, "color": i % colors}

            def forward(_: int) -> None:
                with torch.no_grad():
                    first.model(x)

            def post(path: str, body: dict) -> None:
                call("POST", path, body)

            def change(i: int) -> None:
                post("/api/analyze", {"image": image(i)})

            def slider(i: int) -> None:
                edits = {with_sae: [{"feature": i % 8, "scale": (i % 11) / 2}]} if with_sae else {}
                post("/api/predict", {"image": image(0), "edits": edits})

            def attack(i: int) -> None:
                post("/api/attack", {"image": image(i), "model": first.label,
                                     "target": (i + 3) % classes, "eps": 0.05})

            reference = median_ms(forward, args.interactions)
            results = {"image change": median_ms(change, args.interactions),
                       "SAE slider": median_ms(slider, args.interactions),
                       "attack at one epsilon": median_ms(attack, args.interactions)}
            connection.close()

    print(f"shortcutlab explorer latency: {'study ' + args.study if args.study else 'synthetic'}"
          f", models {', '.join(explorer.models)}, {args.interactions} interactions each, "
          f"{args.threads} thread(s), torch {torch.__version__}, {platform.machine()}")
    print(f"\nbare forward pass of one image: {reference:.2f} ms (median)")
    print(f"\n{'interaction':24s} {'median':>9s} {'x forward':>10s} {'target':>8s}")
    for name, value in results.items():
        verdict = "met" if value <= TARGETS_MS[name] else "MISSED"
        print(f"{name:24s} {value:7.1f}ms {value / reference:9.0f}x "
              f"{TARGETS_MS[name]:6.0f}ms  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
