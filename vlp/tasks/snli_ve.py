"""SNLI-VE: does a Flickr30k image entail, contradict or say nothing about a hypothesis? Accuracy.

Data (``--data ROOT``, as released): ``snli_ve_<split>.jsonl`` (train, dev, test; JSON lines), images
``IMAGES/<Flickr30K_ID>.jpg`` (``--images``, default ``ROOT/images``; the release and ``vlp data synth``
name that folder ``flickr30k_images``, so pass ``--images ROOT/flickr30k_images`` for them).

* Item: the hypothesis with the image (the image takes the premise's place; the premise caption is not
  read by the model). Head: METER's MLP over the pooled pair, classes :data:`LABELS` in that order.
* Loss: cross-entropy. No task state. A horizontal flip (``data.hflip``) swaps "left"/"right" in the
  hypothesis with the image, which keeps the label.
* Metrics, in percent: ``accuracy`` over every labelled example and ``perClass`` (accuracy over the
  examples of each gold label); an example without a prediction counts as wrong.
* Result file: ``[{"pairID": str, "prediction": label}, ...]``, one entry per example in file order
  ("" for an example without a prediction).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.data.examples import ImageRegistry
from vlp.data.formats.snli_ve import LABELS, read_snli_ve  # LABELS: entailment, neutral, contradiction
from vlp.data.records import SNLIVERecord
from vlp.models.heads import ClassifierMLP
from vlp.tasks.base import Task, TaskItem, pair_example, split_file

SPLIT_FILE = "snli_ve_{split}.jsonl"
INDEX = {label: i for i, label in enumerate(LABELS)}  # the class index of each label


class SNLIVETask(Task):
    name = "snli_ve"
    metric = "accuracy"
    train_split = "train"
    val_split = "dev"
    split_pattern = SPLIT_FILE
    answers = LABELS
    RESULT_KEYS = ("pairID", "prediction")

    # ---- data

    @classmethod
    def read(cls, root: Path, images: Path, split: str) -> list[SNLIVERecord]:
        return read_snli_ve(split_file(root, SPLIT_FILE, split), images)

    def uid(self, record: SNLIVERecord) -> str:
        return record.pair_id

    def gold(self, record: SNLIVERecord) -> str:
        return record.label if record.label in INDEX else ""

    def text_line(self, record: SNLIVERecord) -> str:
        return f"H: {record.hypothesis}"

    def image_paths(self, record: SNLIVERecord) -> list[str]:
        return [record.image_path]

    def items(
        self, records: Sequence[SNLIVERecord], registry: ImageRegistry, train: bool = False
    ) -> list[TaskItem]:
        items = []
        for record in records:
            target = INDEX.get(record.label)
            if train and target is None:
                continue
            pair = pair_example(registry, record.hypothesis, record.image_path, record.image_id)
            items.append(TaskItem(record.pair_id, [pair], target))
        return items

    def targets(self, items: Sequence[TaskItem], flipped: Sequence[bool]) -> Tensor | None:
        if any(item.target is None for item in items):
            return None
        return torch.tensor([item.target for item in items], dtype=torch.long)

    # ---- model

    def build_head(self, pooled_size: int) -> nn.Module:
        return ClassifierMLP(pooled_size, pooled_size, len(LABELS))

    def loss(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, float]]:
        logits = logits.float()
        loss = F.cross_entropy(logits, targets)
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == targets).float().mean().item()
        return loss, {"snli_ve_acc": accuracy}

    # ---- evaluation

    def score(self, predictions: dict, records: Sequence[SNLIVERecord]) -> dict:
        per_class: dict[str, list[bool]] = {label: [] for label in LABELS}
        missing = 0
        for record in records:
            if record.label not in INDEX:
                continue
            prediction = predictions.get(record.pair_id)
            missing += prediction is None
            per_class[record.label].append(prediction is not None and prediction.answer == record.label)
        right = [correct for values in per_class.values() for correct in values]
        if not right:
            return {}
        result = {
            "accuracy": round(100 * sum(right) / len(right), 2),
            "perClass": {label: round(100 * sum(v) / len(v), 2) for label, v in per_class.items() if v},
            "examples": len(right),
        }
        if missing:
            result["unanswered"] = missing
        return result
