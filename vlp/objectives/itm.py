"""Image-text matching: a 2-way classifier on the fused pair, over positives and sourced negatives.

The loss is cross-entropy over every row (positives labelled 1, negatives 0), class-balanced by default
(``objectives.itm.balance_classes``): matches and non-matches each make up half of the loss whatever the
``1 : random + hard + synthesized`` ratio of positives to negatives. With ``balance_classes`` off it is the
plain mean over rows, so that ratio weights the two classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.objectives.base import ObjectiveOutput, zero_loss
from vlp.objectives.negatives import SOURCES, NegativePairs


def pair_rows(
    num_texts: int, image_index: Tensor, negatives: NegativePairs
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """All ITM rows, positives first: ``(text_rows, image_index, labels, sources)``, each [B + K]."""
    device = image_index.device
    positives = torch.arange(num_texts, device=device)
    text_rows = torch.cat([positives, negatives.text_rows])
    images = torch.cat([image_index, negatives.image_index])
    labels = torch.cat([torch.ones_like(positives), torch.zeros_like(negatives.text_rows)])
    sources = torch.cat([torch.zeros_like(positives), negatives.source])
    return text_rows, images, labels, sources


def itm_loss(
    logits: Tensor, labels: Tensor, sources: Tensor, balance_classes: bool = False
) -> tuple[Tensor, dict[str, float]]:
    """Cross-entropy of ``logits`` [R, 2] against ``labels`` [R] (1 = match); with ``balance_classes`` the
    matches and the non-matches each make up half of the loss. Accuracy overall and per
    source (``itm_acc_positive``, ``itm_acc_random``, ...; only the sources present) and the mean of the
    accuracies on matches and on non-matches (``itm_acc_balanced``)."""
    if labels.numel() == 0:
        return zero_loss(logits), {}
    weight = None
    if balance_classes:
        counts = torch.bincount(labels, minlength=2).float()
        weight = torch.where(counts > 0, counts.sum() / (2 * counts.clamp(min=1)), counts.new_zeros(()))
    loss = F.cross_entropy(logits.float(), labels, weight=weight)
    with torch.no_grad():
        correct = (logits.argmax(1) == labels).float()
        metrics = {"itm_acc": correct.mean().item()}
        if (labels == 1).any() and (labels == 0).any():
            # chance is 0.5 whatever the number of negatives per positive
            metrics["itm_acc_balanced"] = 0.5 * (
                correct[labels == 1].mean().item() + correct[labels == 0].mean().item()
            )
        for code, name in enumerate(SOURCES):
            rows = sources == code
            if rows.any():
                metrics[f"itm_acc_{name}"] = correct[rows].mean().item()
    return loss, metrics


def itm_objective(
    model: nn.Module, pooled: Tensor, labels: Tensor, sources: Tensor, balance_classes: bool = False
) -> ObjectiveOutput:
    """ITM on the pooled fused pairs [R, P] (the rows of :func:`pair_rows`)."""
    loss, metrics = itm_loss(model.heads.itm(pooled), labels, sources, balance_classes)
    metrics["itm_negatives"] = float((labels == 0).sum().item())
    return ObjectiveOutput(losses={"itm": loss}, metrics=metrics)
