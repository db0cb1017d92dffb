"""How much of RUBi's gradient reaches the true class's logit, aligned vs conflicting.

Trains RUBi in process (the registered settings, seed 0, 400 steps of batch 128) and
prints, at steps 50, 200 and 400 on 2048 training images: the color-only branch's sigmoid
on the true class, the size of the fused loss's gradient to the model's true-class logit
(mask * (1 - p)), each split by color-aligned and conflicting images, and the model's own
accuracy on the conflicting ones (docs/results.md#intervene).

    python scripts/diagnose_rubi.py DATA
"""

from __future__ import annotations

import sys

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
        p_true = F.softmax(logits * mask, 1).gather(1, truth).squeeze(1)
        gradient = true_mask * (1 - p_true)  # |d CE(fused) / d true-class logit|
        aligned = batch.colors == batch.labels
        correct = (logits.argmax(1) == batch.labels)[~aligned].float().mean()
        print(f"step {step}: mask on the true class aligned {true_mask[aligned].mean():.3f}, "
              f"conflicting {true_mask[~aligned].mean():.3f}; gradient to the true logit "
              f"aligned {gradient[aligned].mean():.4f}, conflicting "
              f"{gradient[~aligned].mean():.4f}; the model alone on conflicting images "
              f"{correct:.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
