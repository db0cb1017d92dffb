"""Attack speed, each figure a ratio against a reference measured in the same run.

1. Targeted L-inf PGD, images per second: ours vs ``torchattacks.PGD`` on the same
   model, images, epsilon, steps and step size (target: ours >= 1.0x). Ours is timed
   twice: doing the same work (no early stopping) and as used (stopping each image once
   it reaches the target confidence).
2. Minimal epsilon: the batched bisection vs a loop calling it on one image at a time
   (target: >= 5x), with how well the two agree.
3. The worst-case ensemble (pgd, apgd-ce, apgd-dlr, fmn) against the single PGD search on
   the same images (target: <= 4x the time), and how much smaller its epsilons are.

Timings are the best of ``--repeats`` interleaved runs (the machine is shared and noisy).

    python benchmarks/bench_attack.py [--model RUN] [--images 64] [--threads 2] \
        [--device cuda]

On a GPU (``--device cuda``) the model and the images live on it and every timing waits
for the GPU (``torch.cuda.synchronize``); torchattacks runs on the same device.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "stubs"))  # torchattacks imports torchvision names
os.environ.setdefault("SHORTCUTLAB_PROGRESS", "0")

from shortcutlab import models  # noqa: E402
from shortcutlab.attack import create_attack, minimal_epsilon  # noqa: E402
from shortcutlab.attack.minimal import ensemble_minimal_epsilon  # noqa: E402
from shortcutlab.data import BuildConfig, build_dataset, load_source, load_split  # noqa: E402

SOURCE, TARGET, CONFIDENCE = 7, 3, 0.9


def train_quick(data_dir: Path, steps: int, width: int) -> torch.nn.Module:
    """A cnn3 trained briefly on synthetic data (enough to be fooled for real)."""
    split = load_split(data_dir, "train")
    x, y = split.image_tensor(), torch.from_numpy(split.labels)
    torch.manual_seed(0)
    model = models.create("cnn3", width=width, hidden=4 * width)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        index = torch.randint(0, len(y), (64,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def best_of(repeats: int, runs: dict) -> dict[str, float]:
    """Interleave the candidates ``repeats`` times; keep each one's fastest time."""
    times = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            _synchronize()
            start = time.perf_counter()
            run()
            _synchronize()
            times[name] = min(times[name], time.perf_counter() - start)
    return times


def fooled(model: torch.nn.Module, images: torch.Tensor) -> float:
    with torch.no_grad():
        probs = model(images).softmax(dim=1)
    return float(((probs.argmax(1) == TARGET) & (probs[:, TARGET] >= CONFIDENCE)).float().mean())


def bench_pgd(model, x, eps, steps, repeats) -> None:
    import torchattacks

    alpha = 2.5 * eps / steps
    target = torch.full((len(x),), TARGET, device=x.device)
    reference = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    reference.set_mode_targeted_by_label(quiet=True)
    same_work = create_attack("pgd", model, eps=eps, steps=steps, step_size=alpha,
                              confidence=CONFIDENCE, stop_early=False)
    as_used = create_attack("pgd", model, eps=eps, steps=steps, step_size=alpha,
                            confidence=CONFIDENCE)
    outputs = {}

    def run(name, fn):
        def call():
            outputs[name] = fn()
        return call

    times = best_of(repeats, {
        "torchattacks": run("torchattacks", lambda: reference(x, target)),
        "ours, same work": run("ours, same work", lambda: same_work(x, target).adversarial),
        "ours, early stopping": run("ours, early stopping", lambda: as_used(x, target).adversarial),
    })
    print(f"\n## targeted L-inf PGD: {len(x)} images, eps {eps}, {steps} steps, "
          f"step {alpha:.4g}, random start")
    base = len(x) / times["torchattacks"]
    for name, seconds in times.items():
        rate = len(x) / seconds
        print(f"  {name:<22} {rate:8.1f} images/s  {rate / base:5.2f}x  "
              f"fooled {fooled(model, outputs[name]):.3f}")


def kernel_ceiling(model, x, repeats) -> float:
    """Per-image cost of one forward + input-gradient pass at batch 1 over batch len(x)."""
    from shortcutlab.attack.base import _fast_layout

    def gradient(images):
        images = _fast_layout(images.clone()).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(images),
                                                 torch.full((len(images),), TARGET,
                                                            device=images.device),
                                                 reduction="sum")
        return torch.autograd.grad(loss, images)[0]

    times = best_of(repeats, {
        "one": lambda: [gradient(image[None]) for image in x],
        "batch": lambda: [gradient(x) for _ in range(1)],
    })
    return times["one"] / times["batch"]


def bench_minimal(model, x, steps, repeats) -> None:
    kwargs = {"steps": steps, "seed": 0}
    results = {}

    def batched():
        results["batched"] = minimal_epsilon(model, x, TARGET, CONFIDENCE, **kwargs).eps

    def loop():
        results["loop"] = np.array([minimal_epsilon(model, image[None], TARGET, CONFIDENCE,
                                                    **kwargs).eps[0] for image in x])

    times = best_of(repeats, {"per-image loop": loop, "batched": batched})
    ceiling = kernel_ceiling(model, x, repeats)
    a, b = results["batched"], results["loop"]
    both = np.isfinite(a) & np.isfinite(b)
    print(f"\n## minimal epsilon (precision 1e-3, max 1.0): {len(x)} images, {steps} steps")
    print(f"  per-image loop {times['per-image loop']:7.2f} s   batched {times['batched']:7.2f} s"
          f"   speedup {times['per-image loop'] / times['batched']:.2f}x")
    print(f"  ceiling: one gradient step costs {ceiling:.2f}x more per image at batch 1 than at "
          f"batch {len(x)} (no search can batch better than this on this machine)")
    print(f"  agreement: {np.mean(a == b):.0%} identical, median |diff| "
          f"{np.median(np.abs(a[both] - b[both])):.4f}, medians {np.median(a):.3f} (batched) vs "
          f"{np.median(b):.3f} (loop)")


def bench_ensemble(model, x, steps, repeats) -> None:
    kwargs = {"steps": steps, "seed": 0, "eps_budget": 0.05}
    results = {}

    def single():
        results["pgd"] = minimal_epsilon(model, x, TARGET, CONFIDENCE, **kwargs)

    def ensemble():
        results["ensemble"] = ensemble_minimal_epsilon(model, x, TARGET, CONFIDENCE, **kwargs)

    times = best_of(repeats, {"pgd": single, "ensemble": ensemble})
    pgd, worst = results["pgd"].eps, results["ensemble"].eps
    both = np.isfinite(pgd) & np.isfinite(worst)
    found_by = results["ensemble"].found_by
    print(f"\n## worst-case ensemble (pgd, fmn, apgd-ce, apgd-dlr) vs pgd: {len(x)} images, "
          f"{steps} steps, precision 1e-3")
    print(f"  pgd {times['pgd']:7.2f} s   ensemble {times['ensemble']:7.2f} s   "
          f"ratio {times['ensemble'] / times['pgd']:.2f}x (target <= 4x)")
    print(f"  median minimal epsilon: pgd {np.median(pgd):.4f}, ensemble {np.median(worst):.4f};"
          f" smaller on {int((worst < pgd).sum())} of {len(x)} images, never larger: "
          f"{bool((worst <= pgd).all())}; median ratio ensemble/pgd "
          f"{np.median(worst[both] / np.maximum(pgd[both], 1e-12)):.3f}")
    print("  smallest found by: " + ", ".join(
        f"{name} {sum(f == name for f in found_by)}"
        for name in ("pgd", "fmn", "apgd-ce", "apgd-dlr")))
    fmn = results["ensemble"].by_attack["fmn"]
    both = np.isfinite(fmn) & np.isfinite(pgd)
    print(f"  FMN above PGD's bisection by more than the grid: "
          f"{int((fmn[both] > pgd[both] + 1e-3 + 1e-9).sum())} of {int(both.sum())} images")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a saved model to attack (default: train a cnn3 "
                                        "briefly on synthetic data)")
    parser.add_argument("--data", help="dataset whose --split 7s are attacked "
                                       "(default: a synthetic one)")
    parser.add_argument("--split", default="test_hard")
    parser.add_argument("--images", type=int, default=64,
                        help="images for the PGD benchmark (0: skip it)")
    parser.add_argument("--search-images", type=int, default=32,
                        help="images for the minimal-epsilon benchmark (0: skip it)")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--search-steps", type=int, default=10)
    parser.add_argument("--ensemble-images", type=int, default=64,
                        help="images for the ensemble benchmark (0: skip it)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=150)
    parser.add_argument("--width", type=int, default=32,
                        help="width of the cnn3 trained when no --model is given (default 32, "
                             "the cnn3 default)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from shortcutlab.runtime import resolve_device

    device = resolve_device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "data"
        if not args.data:
            build_dataset(BuildConfig(source="synthetic", limit=3000), data,
                          load_source("synthetic", limit=3000))
        if args.model:
            model = models.load(args.model)
        else:
            model = train_quick(data, args.train_steps, args.width)
        model = model.to(device)
        split = load_split(data, args.split)
        index = np.flatnonzero(split.labels == SOURCE)
        x = split.subset(index[:max(args.images, args.ensemble_images)]).image_tensor(device)
        where = (torch.cuda.get_device_name(device) if device.type == "cuda"
                 else platform.processor() or platform.machine())
        print(f"# bench_attack: {where}, "
              f"{os.cpu_count()} CPUs, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, model "
              f"{args.model or f'cnn3 width {args.width} trained {args.train_steps} steps'}, "
              f"data {args.data or 'synthetic'}:{args.split}")
        if args.images:
            bench_pgd(model, x[:args.images], args.eps, args.steps, args.repeats)
        if args.search_images:
            bench_minimal(model, x[:args.search_images], args.search_steps, args.repeats)
        if args.ensemble_images:
            bench_ensemble(model, x[:args.ensemble_images], args.steps, args.repeats)


if __name__ == "__main__":
    main()
