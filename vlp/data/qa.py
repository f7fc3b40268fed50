"""Question-answer examples for the pre-training QA objective: the dataset, and the collation hook that
turns their answers into soft answer-score targets.

An example's ``answers`` maps answer classes (indices into the answer vocabulary) to scores. When the
collator mirrors an image, "left" and "right" in the question swap, and so must the answers: a batch's
image is flipped only when every answer of its questions has a swapped counterpart among the classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from vlp.data.batch import Batch
from vlp.data.examples import Example, ImageRegistry, image_key
from vlp.data.formats.vqa import answer_targets
from vlp.data.images import swap_left_right
from vlp.data.records import VQARecord


class QADataset(Dataset):
    """Map-style: VQA questions as (image, question) examples carrying soft answer targets.

    Questions with no answer in ``answer_vocab`` are left out (they would teach only "none of these").
    """

    def __init__(
        self,
        records: Sequence[VQARecord],
        answer_vocab: Sequence[str],
        *,
        registry: ImageRegistry | None = None,
        exclude_images: set[str] | None = None,
    ) -> None:
        self.answer_vocab = list(answer_vocab)
        vocab_index = {answer: i for i, answer in enumerate(self.answer_vocab)}
        self.registry = registry if registry is not None else ImageRegistry()
        self.examples: list[Example] = []
        for record in records:
            targets = answer_targets(record, vocab_index)
            key = image_key(str(record.image_id), record.image_path, False)
            if not targets or (exclude_images and key in exclude_images):
                continue
            self.examples.append(
                Example(
                    text=record.question,
                    image_key=key,
                    image_group=self.registry.group(key),
                    image_path=record.image_path,
                    image_id=str(record.image_id),
                    answers=targets,
                )
            )

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]


class AnswerTargets:
    """The collation hook of QA examples: ``has_answer`` and ``answer_targets`` ([B, classes] soft scores)
    of a batch, and whether mirroring an image keeps its questions' answers meaningful."""

    def __init__(self, answer_vocab: Sequence[str]) -> None:
        self.answer_vocab = list(answer_vocab)
        index = {answer: i for i, answer in enumerate(self.answer_vocab)}
        # class -> its left/right-swapped class (None: the swapped answer is not a class)
        self._swap: dict[int, int | None] = {}
        for i, answer in enumerate(self.answer_vocab):
            other = swap_left_right(answer)
            if other != answer:
                self._swap[i] = index.get(other)

    def can_flip(self, examples: Sequence[Example]) -> bool:
        """Whether every answer of ``examples`` (which share one image) survives mirroring that image."""
        return all(self._swap.get(a, a) is not None for ex in examples if ex.answers for a in ex.answers)

    def fill(self, batch: Batch, examples: Sequence[Example], flipped: set[str]) -> None:
        """Set the answer fields of ``batch``, whose row ``b`` is ``examples[b]``; answers of examples
        whose image key is in ``flipped`` are swapped left/right."""
        targets = torch.zeros(len(examples), len(self.answer_vocab))
        has_answer = torch.zeros(len(examples), dtype=torch.bool)
        for row, example in enumerate(examples):
            if example.answers is None:
                continue
            has_answer[row] = True
            for answer, score in example.answers.items():
                if example.image_key in flipped:
                    answer = self._swap.get(answer, answer)
                targets[row, answer] = score
        batch.has_answer = has_answer
        batch.answer_targets = targets
