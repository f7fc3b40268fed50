"""Masked visual modelling (SemVLP): predict what is under masked visual tokens from the fused pair.

A share (``objectives.mvm.mask_ratio``) of each image's real visual tokens is replaced by the model's mask
embedding (``model.embed_image(visual, visual_mask)``). At the masked tokens of every fused pair:

- feature regression against ``model.visual_targets(visual)`` (detached): smooth-L1 (default, beta 1, as
  in LXMERT's feature regression) or MSE, averaged over elements;
- where region labels exist (``visual.region_labels`` / ``region_attributes`` != -100, the model has the
  head and ``objectives.mvm.classify_labels`` is on): the detector's object and attribute labels,
  cross-entropy each, as LXMERT predicts both.

The ``mvm`` loss is the sum of the parts; the metrics report each (``mvm_label_acc``, ``mvm_attr_acc``).
Labels the batch carries but nothing predicts are a warning, once.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.config import MVMConfig
from vlp.data.batch import Batch
from vlp.data.masking import IGNORE_INDEX
from vlp.metrics import accuracy
from vlp.models.outputs import FusedFeatures
from vlp.objectives.base import (
    ObjectiveOutput,
    sample_positions,
    warn_once,
    zero_loss,
)

log = logging.getLogger(__name__)

REGRESSION_LOSSES = ("smooth_l1", "mse")


def choose_visual_mask(maskable: Tensor, ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """Bool [I, N]: ``max(1, round(ratio * n))`` of each image's n maskable tokens, uniformly at random."""
    return sample_positions(maskable.bool(), ratio, generator, "objectives.mvm.mask_ratio")


def regression_loss(prediction: Tensor, target: Tensor, kind: str = "smooth_l1") -> Tensor:
    """Mean smooth-L1 (beta 1) or MSE between [M, Dt] tensors; a graph-connected 0 for M = 0."""
    if kind not in REGRESSION_LOSSES:
        raise ValueError(f"objectives.mvm.loss must be one of {REGRESSION_LOSSES}, got {kind!r}")
    if prediction.shape != target.shape:
        raise ValueError(
            f"MVM head predicts {tuple(prediction.shape)} but the visual targets are {tuple(target.shape)}"
        )
    if prediction.shape[0] == 0:
        return zero_loss(prediction)
    if kind == "mse":
        return F.mse_loss(prediction.float(), target.float())
    return F.smooth_l1_loss(prediction.float(), target.float(), beta=1.0)


def aligned_region_labels(labels: Tensor, num_tokens: int) -> Tensor:
    """Region labels [I, R] as [I, N] over the visual tokens: unchanged when N = R, with a -100 column
    in front when N = R + 1 (a leading CLS token)."""
    extra = num_tokens - labels.shape[1]
    if extra == 0:
        return labels
    if extra == 1:
        return torch.cat([labels.new_full((labels.shape[0], 1), IGNORE_INDEX), labels], dim=1)
    raise ValueError(
        f"batch.visual.region_labels has {labels.shape[1]} regions per image but the model has "
        f"{num_tokens} visual tokens"
    )


def label_loss(
    hidden: Tensor, labels: Tensor | None, rows: Tensor, image_index: Tensor, head
) -> tuple[Tensor, float]:
    """Cross-entropy and accuracy of ``head`` on the fused image states ``hidden`` [M, D] (the ``rows``
    [B, N] tokens) against region ``labels`` [I, R] (-100 = none)."""
    labels = aligned_region_labels(labels, rows.shape[1]).to(rows.device)[image_index][rows]
    valid = labels != IGNORE_INDEX
    logits = head(hidden[valid])
    loss = F.cross_entropy(logits.float(), labels[valid]) if valid.any() else zero_loss(logits)
    return loss, accuracy(logits, labels[valid])


# (VisualInput field, head of Heads, model.config field, metric prefix)
LABEL_KINDS = (
    ("region_labels", "mvm_classify", "num_region_labels", "mvm_label"),
    ("region_attributes", "mvm_attributes", "num_region_attributes", "mvm_attr"),
)


def mvm_objective(
    model: nn.Module,
    fused: FusedFeatures,
    batch: Batch,
    visual_mask: Tensor,
    targets: Tensor,
    cfg: MVMConfig,
) -> ObjectiveOutput:
    """MVM on ``fused`` (pairs fused from images embedded with ``visual_mask`` [I, N]); ``targets``
    [I, N, Dt] are ``model.visual_targets(batch.visual)``."""
    rows = visual_mask[batch.image_index]  # [B, N]: the masked tokens of each pair's image
    if rows.shape != fused.image.shape[:2]:
        raise ValueError(
            f"visual mask {tuple(visual_mask.shape)} does not match the fused image tokens "
            f"{tuple(fused.image.shape[:2])}"
        )
    hidden = fused.image[rows]
    target = targets.detach().index_select(0, batch.image_index)[rows]
    regress = regression_loss(model.heads.mvm_regress(hidden), target, cfg.loss)
    metrics = {"mvm_regress": regress.item()}
    loss = regress
    for field, head, size, metric in LABEL_KINDS:
        labels = getattr(batch.visual, field)
        if labels is None or not (labels != IGNORE_INDEX).any():
            continue
        if not cfg.classify_labels or getattr(model.config, size) <= 0:
            why = "objectives.mvm.classify_labels is off" if not cfg.classify_labels else f"model.{size} is 0"
            warn_once(log, f"the batches carry region {field} but {why}: MVM does not predict them")
            continue
        part, acc = label_loss(hidden, labels, rows, batch.image_index, getattr(model.heads, head))
        loss = loss + part
        metrics[f"{metric}_loss"] = part.item()
        metrics[f"{metric}_acc"] = acc
    return ObjectiveOutput(losses={"mvm": loss}, metrics=metrics)
