"""Question answering as a pre-training objective (SemVLP), on the samples that carry a question.

The answer head scores every answer of the vocabulary independently: binary cross-entropy with logits
against the soft VQA scores (``min(1, annotators / 3)``), averaged over elements and multiplied by the
number of answers, i.e. summed over answers and averaged over questions, as is common for VQA heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.metrics import mean_vqa_soft_score
from vlp.objectives.base import ObjectiveOutput, zero_loss


def qa_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """``BCEWithLogits(logits, targets).mean() * num_answers``; a graph-connected 0 for no question."""
    if logits.shape != targets.shape:
        raise ValueError(
            f"QA head predicts {tuple(logits.shape)} but batch.answer_targets is {tuple(targets.shape)}: "
            "model.num_answers must equal the answer vocabulary size"
        )
    if logits.shape[0] == 0:
        return zero_loss(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float()) * logits.shape[1]


def qa_objective(model: nn.Module, pooled: Tensor, batch: Batch) -> ObjectiveOutput:
    """QA on the rows of ``pooled`` [B, P] (clean pairs) whose ``batch.has_answer`` is set."""
    if batch.has_answer is None or batch.answer_targets is None:
        raise ValueError(
            "the qa objective needs batch.has_answer and batch.answer_targets (data.vqa is unset?)"
        )
    rows = batch.has_answer.bool()
    logits = model.heads.qa(pooled[rows])
    targets = batch.answer_targets[rows].to(logits.device)
    with torch.no_grad():
        metrics = {"qa_score": mean_vqa_soft_score(logits, targets), "qa_questions": float(rows.sum().item())}
    return ObjectiveOutput(losses={"qa": qa_loss(logits, targets)}, metrics=metrics)
