"""GQA: compositional questions about scene graphs of real images, scored by exact-match accuracy.

Data (``--data ROOT``, as released): ``<split>_balanced_questions.json`` (train, val, testdev, ...; the
submission questions have no answers), images ``IMAGES/<imageId>.jpg`` (``--images``, default
``ROOT/images``).

* Answer vocabulary: the training answers occurring at least ``task.min_answer_count`` times.
* Loss: cross-entropy over the vocabulary (a question whose answer is outside it is left out of training,
  and counts as wrong at evaluation).
* Metric: accuracy in percent (the official evaluation compares the predicted string with the answer),
  also per structural type (query, verify, logical, choose, compare) when the file carries ``types``.
* Result file: ``[{"questionId": str, "prediction": str}, ...]``, one entry per question.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from vlp.config import TaskConfig
from vlp.data.formats.gqa import read_gqa
from vlp.data.masking import IGNORE_INDEX
from vlp.data.records import GQARecord
from vlp.tasks.answering import AnswerTask, vocabulary
from vlp.tasks.base import TaskItem, split_file

QUESTIONS = "{split}_balanced_questions.json"


class GQATask(AnswerTask):
    name = "gqa"
    metric = "accuracy"
    train_split = "train"
    val_split = "val"
    split_pattern = QUESTIONS
    RESULT_KEYS = ("questionId", "prediction")

    @classmethod
    def read(cls, root: Path, images: Path, split: str) -> list[GQARecord]:
        return read_gqa(split_file(root, QUESTIONS, split), images)

    @classmethod
    def build(cls, train_records: Sequence[GQARecord], cfg: TaskConfig) -> GQATask:
        return cls({"answers": vocabulary([r.answer for r in train_records], cfg.min_answer_count)})

    def uid(self, record: GQARecord) -> str:
        return record.question_id

    def question(self, record: GQARecord) -> tuple[str, str, str]:
        return record.question, record.image_path, record.image_id

    def gold(self, record: GQARecord) -> str:
        return record.answer

    def item_target(self, record: GQARecord) -> int | None:
        if not record.answer:
            return None
        return self.index.get(record.answer, IGNORE_INDEX)

    def trainable(self, target) -> bool:
        return target is not None and target != IGNORE_INDEX

    def targets(self, items: Sequence[TaskItem], flipped: Sequence[bool]) -> Tensor | None:
        if any(item.target is None for item in items):
            return None
        labels = []
        for item, mirrored in zip(items, flipped, strict=True):
            label = item.target
            if mirrored and label != IGNORE_INDEX:
                label = int(self.mirror[label]) if self.mirror_known[label] else IGNORE_INDEX
            labels.append(label)
        return torch.tensor(labels, dtype=torch.long)

    def loss(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, float]]:
        logits = logits.float()
        known = targets != IGNORE_INDEX
        if not bool(known.any()):
            return logits.sum() * 0.0, {"gqa_acc": 0.0}
        loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
        with torch.no_grad():
            accuracy = (logits.argmax(-1)[known] == targets[known]).float().mean().item()
        return loss, {"gqa_acc": accuracy}

    def score(self, predictions: dict, records: Sequence[GQARecord]) -> dict:
        right: list[bool] = []
        per_type: dict[str, list[bool]] = defaultdict(list)
        missing = 0
        for record in records:
            if not record.answer:
                continue
            prediction = predictions.get(record.question_id)
            missing += prediction is None
            correct = prediction is not None and prediction.answer == record.answer
            right.append(correct)
            if record.structural_type:
                per_type[record.structural_type].append(correct)
        if not right:
            return {}
        result = {"accuracy": round(100 * sum(right) / len(right), 2), "questions": len(right)}
        if per_type:
            result["perStructuralType"] = {
                kind: round(100 * sum(v) / len(v), 2) for kind, v in sorted(per_type.items())
            }
        if missing:
            result["unanswered"] = missing
        return result
