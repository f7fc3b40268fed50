"""The text-only MLM stage (``objectives.text_only``): the language encoder and its MLM head alone."""

from __future__ import annotations

from torch import nn

from vlp.data.batch import Batch
from vlp.objectives.base import IGNORE_INDEX, ObjectiveOutput, accuracy
from vlp.objectives.mlm import mlm_loss


def text_mlm_objective(model: nn.Module, batch: Batch) -> ObjectiveOutput:
    """Cross-entropy of ``model.text_mlm_logits`` on ``batch.mlm_input_ids`` at the masked positions."""
    if batch.mlm_labels is None or batch.mlm_input_ids is None:
        raise ValueError("the text-only MLM stage needs batch.mlm_input_ids and batch.mlm_labels")
    positions = batch.mlm_labels != IGNORE_INDEX
    logits = model.text_mlm_logits(batch.mlm_input_ids, batch.attention_mask, positions)
    labels = batch.mlm_labels[positions]
    return ObjectiveOutput(
        losses={"mlm": mlm_loss(logits, labels)}, metrics={"mlm_acc": accuracy(logits, labels)}
    )
