"""Where RUBi's gradient goes, and where its mistakes go (docs/results.md#intervene).

Without --runs: trains RUBi in process (the registered settings, seed 0, 400 steps of
batch 128) and prints, at steps 50, 200 and 400 on 2048 training images: the color-only
branch's sigmoid on the true class and on the classes that are neither the label nor the
color's, the size of the fused loss's gradient to the model's true-class logit
(mask * (1 - p)) and to those other logits (sum of mask * p), split by color-aligned and
conflicting images, and the model's own accuracy on the conflicting ones.

With --runs RUN ...: for each trained run (a method or its control), its hard-set accuracy
and where its mistakes go: to the class of the image's color (reading color), or to a
third class (neither the digit nor the color).

    python scripts/diagnose_rubi.py DATA
    python scripts/diagnose_rubi.py DATA --runs RUBI_RUN CONTROL_RUN \
        [--names rubi control] [--figure FILE]
"""

from __future__ import annotations

import argparse

import torch
from torch.nn import functional as F

from shortcutlab import models
from shortcutlab.intervene.hparams import resolve_hparams
from shortcutlab.intervene.methods.rubi import ReducingUnimodalBias
from shortcutlab.train.algorithm import TrainContext
from shortcutlab.train.data import load_tensor_split

STEPS, REPORT_AT, BATCH, PROBE = 400, (50, 200, 400), 128, 2048


def main(data: str) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train = load_tensor_split(data, "train", channels_last=True)
    algorithm = ReducingUnimodalBias(models.create("cnn3"), resolve_hparams("rubi", {}))
    algorithm.setup(TrainContext(num_train=len(train), total_steps=STEPS,
                                 device=torch.device("cpu"), train=train.as_dict(),
                                 generator=torch.Generator().manual_seed(0)))
    draws = torch.Generator().manual_seed(1)
    for step in range(1, STEPS + 1):
        algorithm.update(train.batch(torch.randint(0, len(train), (BATCH,), generator=draws)),
                         step - 1)
        if step not in REPORT_AT:
            continue
        batch = train.batch(torch.randint(0, len(train), (PROBE,), generator=draws))
        with torch.no_grad():
            logits = algorithm.model(batch.images)
            mask = torch.sigmoid(algorithm.bias_branch(batch.images))
        truth = batch.labels[:, None]
        true_mask = mask.gather(1, truth).squeeze(1)
        probabilities = F.softmax(logits * mask, 1)
        p_true = probabilities.gather(1, truth).squeeze(1)
        gradient = true_mask * (1 - p_true)  # |d CE(fused) / d true-class logit|
        others = torch.ones_like(mask, dtype=torch.bool)
        others.scatter_(1, truth, False)
        others.scatter_(1, batch.colors[:, None], False)
        other_mask = (mask * others).sum(1) / others.sum(1)
        other_gradient = (mask * probabilities * others).sum(1)  # d CE / d other logits
        aligned = batch.colors == batch.labels
        correct = (logits.argmax(1) == batch.labels)[~aligned].float().mean()
        print(f"step {step}: mask on the true class aligned {true_mask[aligned].mean():.3f}, "
              f"conflicting {true_mask[~aligned].mean():.3f}, on the other classes "
              f"{other_mask.mean():.4f}; gradient to the true logit aligned "
              f"{gradient[aligned].mean():.4f}, conflicting {gradient[~aligned].mean():.4f}, "
              f"to the other logits {other_gradient.mean():.5f}; the model alone on "
              f"conflicting images {correct:.3f}", flush=True)


def error_kinds(data: str, run: str) -> dict[str, float]:
    """Hard-set accuracy of a trained run and where its mistakes go."""
    model = models.load(run).eval()
    hard = load_tensor_split(data, "test_hard", channels_last=True)
    predicted = models.batched_forward(model, hard.images, 1000,
                                       fn=lambda net, chunk: net(chunk).argmax(1))
    wrong = predicted != hard.labels
    to_color = (predicted == hard.colors) & wrong
    print(f"{run}: hard {1 - wrong.float().mean():.3f}; of its {int(wrong.sum())} mistakes "
          f"{to_color.sum() / wrong.sum():.1%} name the color's class, "
          f"{(wrong & ~to_color).sum() / wrong.sum():.1%} a third class", flush=True)
    return {"hard": float(1 - wrong.float().mean()),
            "to_color": float(to_color.float().mean()),
            "to_third": float((wrong & ~to_color).float().mean())}


def draw(kinds: dict[str, dict[str, float]], path: str) -> None:
    """Stacked bars: each run's hard-set mistakes, to the color's class and to a third."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shortcutlab.figures import save_figure

    names = list(kinds)
    color = [100 * kinds[name]["to_color"] for name in names]
    third = [100 * kinds[name]["to_third"] for name in names]
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    rows = range(len(names))
    axes.barh(rows, color, color="#d62728", label="names the color's class")
    axes.barh(rows, third, left=color, color="#7f7f7f", label="names a third class")
    axes.set_yticks(list(rows), names)
    axes.invert_yaxis()
    axes.set_xlabel("hard-set images misclassified (%)")
    axes.legend(loc="lower right", fontsize=8)
    axes.set_title("Where the mistakes go on the hard set", fontsize=10)
    save_figure(figure, path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="dataset directory")
    parser.add_argument("--runs", nargs="+", help="trained run directories to inspect")
    parser.add_argument("--names", nargs="+", help="a label per run for the figure")
    parser.add_argument("--figure", help="with --runs: draw the mistakes as bars into FILE")
    args = parser.parse_args()
    if args.runs:
        names = args.names or args.runs
        kinds = {name: error_kinds(args.data, run_dir)
                 for name, run_dir in zip(names, args.runs, strict=True)}
        if args.figure:
            draw(kinds, args.figure)
    else:
        main(args.data)
