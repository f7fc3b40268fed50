"""Head warm-up before fine-tuning (``task.head_warmup_epochs``): the "linear probe, then fine-tune" recipe
(LP-FT, Kumar et al., ICLR 2022), with the task's own head in place of the linear probe.

A fresh head on a pre-trained backbone sends random gradients into the backbone until it has learnt
something, and a small model can spend the whole budget there: SemVLP-tiny's NLVR2 loss stayed at ln 2
for about 400 steps, although an MLP on its frozen pair representations reaches 59.7 on dev
(docs/decisions.md). So, before the first fine-tuning step:

1. one pass of the backbone over the training items, in eval mode and without gradients, caches each
   item's pair representations (``TaskModel.pair_representation``, concatenated per item) and targets;
2. the head alone trains on that cache for ``head_warmup_epochs`` epochs of ``head_warmup_batch_size``
   items with the task's loss: AdamW at the head's fine-tuning rate (``train.lr x train.lr_mult_heads``),
   ``train.betas`` and ``train.weight_decay``, constant, in fp32, the order drawn from ``train.seed``.

Fine-tuning then starts from that head (with fresh optimizer state). The backbone is not touched. Costs
one forward pass over the training set plus the head's epochs on a ``[items, pairs x pooled]`` tensor
held in memory (seconds on the shapes world). Every process of a distributed run computes the same
warm-up on all the items, so the heads agree before training starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch

from vlp.config import TrainConfig
from vlp.tasks.base import TaskItem
from vlp.tasks.data import TaskCollator
from vlp.tasks.model import TaskModel
from vlp.train.precision import autocast

log = logging.getLogger(__name__)


@torch.no_grad()
def frozen_features(
    model: TaskModel, items: Sequence[TaskItem], collator: TaskCollator, batch_size: int,
    device: torch.device, precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The head's inputs ``[items, pairs x pooled]`` (fp32) and targets of ``items`` (those the collator
    keeps), the backbone in eval mode."""
    was_training = model.training
    model.eval()
    features, targets = [], []
    try:
        for start in range(0, len(items), batch_size):
            batch = collator(items[start : start + batch_size])
            if batch is None:
                continue
            batch = batch.to(device)
            with autocast(device, precision):
                features.append(model.head_input(batch).float())
            targets.append(batch.targets)
    finally:
        model.train(was_training)
    if not features:
        raise ValueError(f"{model.task.name} head warm-up: no training item could be read")
    return torch.cat(features), torch.cat(targets)


def warm_up_head(
    model: TaskModel, items: Sequence[TaskItem], collator: TaskCollator, train: TrainConfig,
    epochs: int, batch_size: int, device: torch.device, feature_batch_size: int,
) -> dict[str, float]:  # fmt: skip
    """Train ``model.head`` on the backbone's frozen features of ``items`` (see the module docstring);
    returns the warm-up's figures (first and last epoch's mean loss, its task metrics, seconds)."""
    start = time.perf_counter()
    features, targets = frozen_features(model, items, collator, feature_batch_size, device, train.precision)
    head, task = model.head, model.task
    optimizer = torch.optim.AdamW(
        head.parameters(), lr=train.lr * train.lr_mult_heads, betas=tuple(train.betas),
        weight_decay=train.weight_decay,
    )  # fmt: skip
    order = torch.Generator().manual_seed(train.seed)
    figures: dict[str, float] = {}
    for epoch in range(epochs):
        sums: dict[str, float] = {}
        batches = 0
        for index in torch.randperm(len(features), generator=order).split(batch_size):
            index = index.to(features.device)
            loss, metrics = task.loss(head(features[index]), targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            batches += 1
            for name, value in {"loss": loss.item(), **metrics}.items():
                sums[name] = sums.get(name, 0.0) + value
        if epoch in (0, epochs - 1):
            when = "first" if epoch == 0 else "last"
            figures.update({f"head_warmup/{when}_{k}": round(v / batches, 4) for k, v in sums.items()})
    optimizer.zero_grad(set_to_none=True)
    figures["head_warmup/seconds"] = round(time.perf_counter() - start, 1)
    first, last = (figures.get(f"head_warmup/{when}_loss", float("nan")) for when in ("first", "last"))
    log.info(
        "head warm-up: %d items, %d epochs: loss %.4f -> %.4f (%.0f s)",
        len(features), epochs, first, last, figures["head_warmup/seconds"],
    )  # fmt: skip
    return figures
