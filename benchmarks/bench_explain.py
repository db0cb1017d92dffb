"""Throughput of our attribution methods against the reference libraries, in one run.

Same model (cnn3, default size, eval mode), same batch of images, same targets. Methods
are timed in interleaved rounds (A, B, C, A, B, C, ...) so that load changes on a shared
machine hit every method alike; each reports its median round. Prints images per second
and our speed as a ratio of each peer's, against the targets of the explain stage:

* grad_cam >= 1.0x Captum's LayerGradCam, >= 1.5x pytorch-grad-cam's GradCAM;
* lrp >= 1.0x zennit with the matching composite;
* SmoothGrad (of input x gradient) >= 1.0x Captum's NoiseTunnel, occlusion >= 1.0x Captum's
  Occlusion, on a smaller batch (--perturbation-batch);
* and the cost of a TEA step: lrp(create_graph=True) + backward on a batch of 128 with
  a per-sample epsilon, relative to a plain cross-entropy training step.

    python benchmarks/bench_explain.py [--batch 1024] [--rounds 5] [--threads 1] \
        [--parts maps,perturbation,tea]

With one thread (the default) times are this process's CPU time, steady on a shared
machine; with more threads they are wall time.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
try:
    import torchvision  # noqa: F401
except ImportError:  # the reference libraries import torchvision; a stub is enough for them
    sys.path.insert(0, str(ROOT / "tests" / "stubs"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from shortcutlab import models  # noqa: E402
from shortcutlab.explain import grad_cam, lrp  # noqa: E402


def timed_rounds(methods: dict[str, Callable[[], object]], rounds: int,
                 clock: Callable[[], float]) -> dict[str, float]:
    """Median seconds per call of each method, over interleaved rounds after a warm-up."""
    for fn in methods.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024, help="images per call")
    parser.add_argument("--tea-batch", type=int, default=128, help="batch of a TEA step")
    parser.add_argument("--perturbation-batch", type=int, default=64,
                        help="images per SmoothGrad and occlusion call")
    parser.add_argument("--parts", default="maps,perturbation,tea",
                        help="comma-separated: maps (Grad-CAM, LRP), perturbation "
                             "(SmoothGrad, occlusion), tea")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: steadier on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # One thread: this process's CPU time, which other jobs on a shared machine do not
    # inflate as they do wall time. Several threads: wall time.
    clock = time.process_time if args.threads == 1 else time.perf_counter

    from captum.attr import LayerGradCam
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from zennit.attribution import Gradient
    from zennit.composites import LayerMapComposite
    from zennit.rules import Epsilon, Pass
    from zennit.types import Activation, Convolution, Linear

    torch.manual_seed(0)
    model = models.create("cnn3").eval()
    layer = model.features.conv3
    x = torch.rand(args.batch, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    target = torch.randint(0, 10, (args.batch,), generator=torch.Generator().manual_seed(2))
    onehot = nn.functional.one_hot(target, 10).float()

    captum = LayerGradCam(model, layer)
    library_targets = [ClassifierOutputTarget(int(t)) for t in target]

    def library_grad_cam() -> object:
        # pytorch-grad-cam keeps hooks on the model while its object lives: one per call
        cam = GradCAM(model, target_layers=[layer])
        try:
            return cam(input_tensor=x, targets=library_targets)
        finally:
            cam.activations_and_grads.release()

    def zennit(composite: object) -> Callable[[], object]:
        def run() -> object:
            with Gradient(model=model, composite=composite) as attributor:
                return attributor(x.clone(), lambda out: out * onehot)[1]
        return run

    epsilon_composite = LayerMapComposite(
        [(Activation, Pass()), (Convolution, Epsilon(0.01)), (Linear, Epsilon(0.01))])

    parts = set(args.parts.split(","))
    print(f"shortcutlab explain benchmark: cnn3, batch {args.batch}, {args.rounds} rounds, "
          f"{args.threads} thread(s) ({'CPU' if args.threads == 1 else 'wall'} time), "
          f"torch {torch.__version__}, {platform.machine()}")
    if "maps" in parts:
        bench_maps(args, clock, model, layer, x, target, captum, library_grad_cam, zennit,
                   epsilon_composite)
    if "perturbation" in parts:
        bench_perturbation(args, clock, model, x, target)
    if "tea" in parts:
        bench_tea(args, clock, model, x, target, onehot, epsilon_composite)
    return 0


def report(seconds: dict[str, float], batch: int,
           pairs: list[tuple[str, str, str, float]]) -> None:
    print(f"\n{'method':34s} {'images/s':>10s}")
    for name, value in seconds.items():
        print(f"{name:34s} {batch / value:10.0f}")
    print(f"\n{'speed ratio (ours / peer)':34s} {'ratio':>7s} {'target':>7s}")
    for label, ours, peer, goal in pairs:
        ratio = seconds[peer] / seconds[ours]
        verdict = "met" if ratio >= goal else "MISSED"
        print(f"{label:34s} {ratio:6.2f}x {goal:6.1f}x  {verdict}")


def bench_perturbation(args, clock, model, x, target) -> None:
    from captum.attr import InputXGradient, NoiseTunnel, Occlusion

    from shortcutlab.explain.gradients import input_x_gradient
    from shortcutlab.explain.occlusion import occlusion
    from shortcutlab.explain.smoothgrad import smooth_grad

    images, classes = x[:args.perturbation_batch], target[:args.perturbation_batch]
    tunnel = NoiseTunnel(InputXGradient(model))
    occluder = Occlusion(model)
    seconds = timed_rounds({
        "smoothgrad ixg, 16 samples (ours)": lambda: smooth_grad(
            model, images, classes, input_x_gradient, samples=16, noise=0.15),
        "Captum NoiseTunnel(InputXGradient)": lambda: tunnel.attribute(
            images, nt_type="smoothgrad", nt_samples=16, stdevs=0.15, target=classes),
        "occlusion 4x4, stride 2 (ours)": lambda: occlusion(model, images, classes),
        "Captum Occlusion": lambda: occluder.attribute(
            images, sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2), baselines=0.0,
            target=classes, perturbations_per_eval=64),
    }, args.rounds, clock)
    report(seconds, len(images), [
        ("smoothgrad vs Captum NoiseTunnel", "smoothgrad ixg, 16 samples (ours)",
         "Captum NoiseTunnel(InputXGradient)", 1.0),
        ("occlusion vs Captum Occlusion", "occlusion 4x4, stride 2 (ours)", "Captum Occlusion",
         1.0)])


def bench_maps(args, clock, model, layer, x, target, captum, library_grad_cam, zennit,
               epsilon_composite) -> None:
    from zennit.composites import EpsilonPlusFlat

    seconds = timed_rounds({
        "grad_cam (ours, h x w)": lambda: grad_cam(model, x, target, upsample=False),
        "Captum LayerGradCam": lambda: captum.attribute(x, target=target,
                                                        relu_attributions=True),
        "grad_cam (ours, upsampled)": lambda: grad_cam(model, x, target),
        "pytorch-grad-cam GradCAM": library_grad_cam,
        "lrp epsilon (ours)": lambda: lrp(model, x, target, epsilon=0.01),
        "zennit Epsilon composite": zennit(epsilon_composite),
        "lrp epsilon-plus-flat (ours)": lambda: lrp(model, x, target, rule="epsilon-plus-flat",
                                                    epsilon=0.01),
        "zennit EpsilonPlusFlat": zennit(EpsilonPlusFlat(epsilon=0.01)),
    }, args.rounds, clock)
    report(seconds, args.batch, [
        ("grad_cam vs Captum LayerGradCam", "grad_cam (ours, h x w)", "Captum LayerGradCam",
         1.0),
        ("grad_cam vs pytorch-grad-cam", "grad_cam (ours, upsampled)",
         "pytorch-grad-cam GradCAM", 1.5),
        ("lrp epsilon vs zennit", "lrp epsilon (ours)", "zennit Epsilon composite", 1.0),
        ("lrp epsilon-plus-flat vs zennit", "lrp epsilon-plus-flat (ours)",
         "zennit EpsilonPlusFlat", 1.0),
    ])


def bench_tea(args, clock, model, x, target, onehot, epsilon_composite) -> None:
    from zennit.attribution import Gradient

    tea_x, tea_target = x[:args.tea_batch], target[:args.tea_batch]
    tea_epsilon = torch.exp(torch.empty(args.tea_batch).uniform_(
        float(torch.log(torch.tensor(0.01))), float(torch.log(torch.tensor(0.1)))))

    def train_step() -> None:
        model.zero_grad()
        nn.functional.cross_entropy(model(tea_x), tea_target).backward()

    def tea_step() -> None:
        model.zero_grad()
        heatmap = lrp(model, tea_x, tea_target, epsilon=tea_epsilon, create_graph=True)
        heatmap.abs().mean().backward()

    tea_onehot = onehot[:args.tea_batch]

    def zennit_tea_step() -> None:
        model.zero_grad()
        with Gradient(model=model, composite=epsilon_composite, create_graph=True) as attributor:
            _, heatmap = attributor(tea_x.clone(), lambda out: out * tea_onehot)
        heatmap.abs().mean().backward()

    tea = timed_rounds({"training step (forward + backward)": train_step,
                        "lrp create_graph=True + backward": tea_step,
                        "zennit create_graph=True + backward": zennit_tea_step},
                       args.rounds, clock)
    # how far zennit's parameter gradients are from the exact ones (ours; the tests check
    # them against finite differences), same composite, same epsilon for every image
    exact, approximate = [], []
    for step, store in ((lambda: lrp(model, tea_x, tea_target, epsilon=0.01,
                                     create_graph=True).abs().mean().backward(), exact),
                        (zennit_tea_step, approximate)):
        model.zero_grad()
        step()
        store.extend(p.grad.clone() for p in model.parameters())
    errors = [float((a - e).norm() / e.norm()) for a, e in zip(approximate, exact, strict=True)]

    step, tea_cost = tea["training step (forward + backward)"], \
        tea["lrp create_graph=True + backward"]
    zennit_cost = tea["zennit create_graph=True + backward"]
    print(f"\nTEA cost, batch {args.tea_batch}: lrp(create_graph=True) + backward "
          f"{tea_cost * 1000:.0f} ms = {tea_cost / step:.2f}x a training step "
          f"({step * 1000:.0f} ms); {args.tea_batch / tea_cost:.0f} images/s")
    print(f"zennit, same step: {zennit_cost * 1000:.0f} ms (ours is {zennit_cost / tea_cost:.2f}x "
          f"as fast), and its parameter gradients are off by {min(errors):.0%} to "
          f"{max(errors):.0%} (relative norm, per parameter)")


if __name__ == "__main__":
    raise SystemExit(main())
