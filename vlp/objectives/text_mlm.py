"""MLM of the text-only path (text encoder + its own MLM head) on the batch's masked captions.

Two uses: the text-only MLM stage (``objectives.text_only``: the ``mlm`` loss), and during multimodal
pre-training the ``text_mlm`` loss and the ``gen_nll`` / ``gen_acc`` metrics. The latter keep ViLTA's
generator of synthesized negatives (the current language encoder with that head) a working language model
and show how well it predicts masked words: no multimodal loss reaches the text-only MLM head.
"""

from __future__ import annotations

from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.data.masking import IGNORE_INDEX
from vlp.metrics import accuracy
from vlp.models.outputs import TextFeatures
from vlp.objectives.base import ObjectiveOutput
from vlp.objectives.mlm import mlm_loss


def text_mlm(model: nn.Module, batch: Batch, encoded: TextFeatures | None = None) -> tuple[Tensor, float]:
    """Cross-entropy of ``model.text_mlm_logits`` on ``batch.mlm_input_ids`` at the masked positions, and
    the accuracy there. ``encoded``: ``model.embed_text`` of those masked captions, when the caller has it
    (ViLTA reads the logits off it instead of encoding the captions again)."""
    if batch.mlm_labels is None or batch.mlm_input_ids is None:
        raise ValueError("text-only MLM needs batch.mlm_input_ids and batch.mlm_labels (MLM masking is off?)")
    positions = batch.mlm_labels != IGNORE_INDEX
    logits = model.text_mlm_logits_of(encoded, positions) if encoded is not None else None
    if logits is None:
        logits = model.text_mlm_logits(batch.mlm_input_ids, batch.attention_mask, positions)
    labels = batch.mlm_labels[positions]
    return mlm_loss(logits, labels), accuracy(logits, labels)


def text_mlm_objective(model: nn.Module, batch: Batch) -> ObjectiveOutput:
    """The text-only MLM stage: the ``mlm`` loss of the text path alone."""
    loss, acc = text_mlm(model, batch)
    return ObjectiveOutput(losses={"mlm": loss}, metrics={"mlm_acc": acc})


def generator_objective(
    model: nn.Module, batch: Batch, train: bool, encoded: TextFeatures | None = None
) -> ObjectiveOutput:
    """The generator's masked-token NLL and accuracy (``gen_nll``, ``gen_acc``); with ``train`` also the
    ``text_mlm`` loss that keeps it a language model. ``encoded``: as in :func:`text_mlm`."""
    loss, acc = text_mlm(model, batch, encoded)
    metrics = {"gen_nll": loss.item(), "gen_acc": acc}
    return ObjectiveOutput(losses={"text_mlm": loss} if train else {}, metrics=metrics)
