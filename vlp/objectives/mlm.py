"""Masked language modelling on the fused (image-conditioned) text, with ViLTA's cross-distilled soft labels.

At each masked position the loss is ``(1 - alpha) * CE(one-hot label) + alpha * CE(soft label)`` where the
soft label is a frozen text-only teacher's prediction for the same masked caption:
``soft = softmax(teacher_logits / temperature)``, optionally truncated to the teacher's ``top_k`` most likely
tokens and renormalised. Our choice (the paper leaves it open): the temperature applies to the teacher's
distribution only; the student's log-probabilities are taken at temperature 1. ``alpha`` grows linearly
from 0 to its configured value over ``warmup_steps``. ``temperature_squared`` multiplies the soft term by
``T**2`` (Hinton et al.); off by default, because with the student at temperature 1 the soft gradient
does not shrink as ``1 / T**2`` and needs no such compensation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.config import SoftLabelConfig
from vlp.data.batch import Batch
from vlp.data.masking import IGNORE_INDEX
from vlp.metrics import accuracy
from vlp.models.outputs import FusedFeatures
from vlp.objectives.base import ObjectiveOutput, zero_loss
from vlp.objectives.teacher import teacher_predict


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of ``logits`` [M, V] against ``labels`` [M] (a graph-connected 0 if M = 0)."""
    if labels.numel() == 0:
        return zero_loss(logits)
    return F.cross_entropy(logits.float(), labels)


def soft_targets(teacher_logits: Tensor, temperature: float = 1.0, top_k: int = 0) -> Tensor:
    """The teacher's distribution [M, V]: ``softmax(logits / temperature)``, then (``top_k`` > 0) only its
    ``top_k`` most likely tokens, renormalised to sum to 1."""
    if temperature <= 0:
        raise ValueError(f"objectives.soft_labels.temperature must be > 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"objectives.soft_labels.top_k must be >= 0, got {top_k}")
    probs = torch.softmax(teacher_logits.float() / temperature, dim=-1)
    if 0 < top_k < probs.shape[-1]:
        kept, index = probs.topk(top_k, dim=-1)
        probs = torch.zeros_like(probs).scatter_(-1, index, kept / kept.sum(-1, keepdim=True))
    return probs


def soft_label_mlm_loss(
    logits: Tensor, labels: Tensor, soft: Tensor, alpha: float, soft_scale: float = 1.0
) -> Tensor:
    """``(1 - alpha) * CE(one-hot labels) + alpha * soft_scale * CE(soft)``, averaged over the M masked
    positions (``soft_scale``: ``T**2`` with ``objectives.soft_labels.temperature_squared``)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"objectives.soft_labels.alpha must be in [0, 1], got {alpha}")
    if soft.shape != logits.shape:
        raise ValueError(
            f"teacher predicts {tuple(soft.shape)} but the model {tuple(logits.shape)}: "
            "the teacher must share the model's vocabulary (same tokenizer)"
        )
    if labels.numel() == 0:
        return zero_loss(logits)
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    hard = F.nll_loss(log_probs, labels)
    # 0 * log p is 0 even where log p is -inf (a token the student rules out entirely).
    soft_ce = -torch.where(soft > 0, soft * log_probs, torch.zeros_like(log_probs)).sum(-1).mean()
    return (1.0 - alpha) * hard + alpha * soft_scale * soft_ce


def alpha_at(step: int, alpha: float, warmup_steps: int) -> float:
    """The soft-label weight at optimiser ``step``: ``alpha * step / warmup_steps`` until the warm-up ends."""
    if warmup_steps <= 0:
        return alpha
    return alpha * min(1.0, max(step, 0) / warmup_steps)


class SoftLabels:
    """ViLTA cross-distillation: a frozen text-only teacher and the soft-label schedule.

    ``teacher`` is a language encoder with its MLM head: ``teacher(input_ids, attention_mask, positions)``
    returns logits [M, V] at the ``True`` positions (see :mod:`vlp.objectives.teacher`).
    """

    def __init__(self, cfg: SoftLabelConfig, teacher: nn.Module):
        if not 0.0 <= cfg.alpha <= 1.0:
            raise ValueError(f"objectives.soft_labels.alpha must be in [0, 1], got {cfg.alpha}")
        if cfg.temperature <= 0:
            raise ValueError(f"objectives.soft_labels.temperature must be > 0, got {cfg.temperature}")
        if cfg.top_k < 0 or cfg.warmup_steps < 0:
            raise ValueError("objectives.soft_labels.top_k and warmup_steps must be >= 0")
        self.cfg = cfg
        self.teacher = teacher

    def alpha_at(self, step: int) -> float:
        return alpha_at(step, self.cfg.alpha, self.cfg.warmup_steps)

    @property
    def soft_scale(self) -> float:
        """The factor on the soft-label term: ``temperature**2`` when ``temperature_squared``, else 1."""
        return self.cfg.temperature**2 if self.cfg.temperature_squared else 1.0

    @torch.no_grad()
    def targets(self, input_ids: Tensor, attention_mask: Tensor, positions: Tensor) -> Tensor:
        """Soft labels [M, V] at the ``True`` positions of the (already masked) captions."""
        logits = teacher_predict(self.teacher, input_ids, attention_mask, positions)
        return soft_targets(logits, self.cfg.temperature, self.cfg.top_k)


def mlm_objective(
    model: nn.Module,
    fused: FusedFeatures,
    batch: Batch,
    soft_labels: SoftLabels | None = None,
    step: int = 0,
) -> ObjectiveOutput:
    """MLM on ``fused`` (the pairs fused from ``batch.mlm_input_ids``) against ``batch.mlm_labels``."""
    if batch.mlm_labels is None or batch.mlm_input_ids is None:
        raise ValueError(
            "the mlm objective needs batch.mlm_input_ids and batch.mlm_labels (MLM masking is off?)"
        )
    positions = batch.mlm_labels != IGNORE_INDEX
    logits = model.mlm_logits(fused, positions)
    labels = batch.mlm_labels[positions]
    metrics = {"mlm_acc": accuracy(logits, labels)}
    alpha = soft_labels.alpha_at(step) if soft_labels is not None else 0.0
    if alpha > 0 and labels.numel() > 0:
        soft = soft_labels.targets(batch.mlm_input_ids, batch.attention_mask, positions)
        loss = soft_label_mlm_loss(logits, labels, soft.to(logits.device), alpha, soft_labels.soft_scale)
    else:
        loss = mlm_loss(logits, labels)
    if soft_labels is not None:
        metrics["mlm_soft_alpha"] = alpha
    return ObjectiveOutput(losses={"mlm": loss}, metrics=metrics)
