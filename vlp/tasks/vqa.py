"""VQAv2: open-ended questions about COCO images, scored with the official VQA accuracy.

Data (``--data ROOT``, as released): ``v2_OpenEnded_mscoco_<split>_questions.json`` and, except for the
test splits, ``v2_mscoco_<split>_annotations.json``; images ``IMAGES/<subtype>/COCO_<subtype>_<id>.jpg``
(``--images``, default ``ROOT/images``). Splits as released: train2014, val2014, test-dev2015, test2015.

* Answer vocabulary: the normalised chosen answers of the training questions occurring at least
  ``task.min_answer_count`` times (:func:`vlp.data.formats.vqa.build_answer_vocab`).
* Targets: soft scores from annotator agreement (0, .3, .6, .9, 1 for 0..4+ annotators); loss: binary
  cross-entropy over the vocabulary times its size (the usual VQA head). Training leaves out questions
  with no answer in the vocabulary; evaluation keeps every question (those score 0).
* Metric: the official accuracy (:func:`vlp.metrics.vqa_accuracy`), in percent, overall and per answer
  type, as the evaluation server reports it.
* Result file: ``[{"question_id": int, "answer": str}, ...]``, one entry per question of the split.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from vlp.config import TaskConfig
from vlp.data.formats.vqa import answer_targets, build_answer_vocab, read_vqa
from vlp.data.records import VQARecord
from vlp.metrics import mean_vqa_soft_score, vqa_accuracy
from vlp.objectives.qa import qa_loss
from vlp.tasks.answering import AnswerTask
from vlp.tasks.base import TaskItem, split_file

QUESTIONS = "v2_OpenEnded_mscoco_{split}_questions.json"
ANNOTATIONS = "v2_mscoco_{split}_annotations.json"
ANSWER_TYPES = ("yes/no", "number", "other")


class VQATask(AnswerTask):
    name = "vqa"
    metric = "overall"
    train_split = "train2014"
    val_split = "val2014"
    split_pattern = QUESTIONS
    probability = "sigmoid"
    RESULT_KEYS = ("question_id", "answer")

    # ---- data

    @classmethod
    def read(cls, root: Path, images: Path, split: str) -> list[VQARecord]:
        questions = split_file(root, QUESTIONS, split)
        annotations = Path(root) / ANNOTATIONS.format(split=split)
        return read_vqa(questions, annotations if annotations.is_file() else None, images)

    @classmethod
    def build(cls, train_records: Sequence[VQARecord], cfg: TaskConfig) -> VQATask:
        if cfg.min_answer_count < 1:
            raise ValueError(f"task.min_answer_count: expected an integer >= 1, got {cfg.min_answer_count}")
        answers = build_answer_vocab(train_records, min_count=cfg.min_answer_count)
        if not answers:
            raise ValueError(
                f"no VQA answer is chosen for task.min_answer_count={cfg.min_answer_count} training "
                "questions; lower task.min_answer_count"
            )
        return cls({"answers": answers})

    def uid(self, record: VQARecord) -> int:
        return record.question_id

    def question(self, record: VQARecord) -> tuple[str, str, str]:
        return record.question, record.image_path, str(record.image_id)

    def gold(self, record: VQARecord) -> str:
        return record.multiple_choice_answer

    def item_target(self, record: VQARecord) -> dict[int, float] | None:
        return answer_targets(record, self.index) if record.answers else None

    def trainable(self, target) -> bool:
        return bool(target)

    def targets(self, items: Sequence[TaskItem], flipped: Sequence[bool]) -> Tensor | None:
        if any(item.target is None for item in items):
            return None
        scores = torch.zeros(len(items), len(self.answers))
        for row, (item, mirrored) in enumerate(zip(items, flipped, strict=True)):
            for answer, score in item.target.items():
                if mirrored:
                    if not self.mirror_known[answer]:
                        continue
                    answer = int(self.mirror[answer])
                scores[row, answer] = score
        return scores

    # ---- model

    def loss(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, float]]:
        with torch.no_grad():
            score = mean_vqa_soft_score(logits, targets)
        return qa_loss(logits, targets), {"vqa_score": score}

    # ---- evaluation

    def is_right(self, answer: str, record: VQARecord) -> bool:
        """Full credit: at least three annotators gave the answer (official accuracy 0.9 or more)."""
        return vqa_accuracy(answer, record.answers) >= 0.9

    def score(self, predictions: dict, records: Sequence[VQARecord]) -> dict:
        per_type: dict[str, list[float]] = defaultdict(list)
        scores, missing = [], 0
        for record in records:
            if not record.answers:
                continue
            prediction = predictions.get(record.question_id)
            missing += prediction is None
            accuracy = vqa_accuracy(prediction.answer, record.answers) if prediction else 0.0
            scores.append(accuracy)
            per_type[record.answer_type].append(accuracy)
        if not scores:
            return {}
        result = {
            "overall": round(100 * sum(scores) / len(scores), 2),
            "perAnswerType": {
                kind: round(100 * sum(values) / len(values), 2) for kind, values in sorted(per_type.items())
            },
            "questions": len(scores),
        }
        if missing:
            result["unanswered"] = missing
        return result
