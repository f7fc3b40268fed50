"""What VQA and GQA share: classification over an answer vocabulary learned from the training split.

The vocabulary (most frequent first) is the task state stored in a fine-tuned checkpoint, so evaluation,
prediction and the inference API need nothing else. The head is METER's two-layer MLP over the pooled
pair representation. Under a horizontal flip (``data.hflip``) the question's "left"/"right" are swapped
by the collator and the answer classes here (an answer whose mirror image is not in the vocabulary
loses its target for that example). Predicting (top-k over the vocabulary), the result file, the
contact-sheet lines ("Q: ..." and the question's image) and the majority baseline are
:class:`~vlp.tasks.base.Task`'s, read through the hooks here and in each task file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import nn

from vlp.data.examples import ImageRegistry
from vlp.data.images import swap_left_right
from vlp.models.heads import ClassifierMLP
from vlp.tasks.base import Task, TaskItem, pair_example


class AnswerTask(Task):
    """A task whose prediction is one answer of ``state["answers"]`` (its :attr:`~Task.answers`)."""

    def __init__(self, state: dict) -> None:
        super().__init__(state)
        answers = state.get("answers")
        if not isinstance(answers, list) or not answers:
            raise ValueError(f"{self.name}: the task state has no answer vocabulary ('answers')")
        self.answers: list[str] = list(answers)
        self.index = {answer: i for i, answer in enumerate(self.answers)}
        self.mirror = torch.arange(len(self.answers))
        self.mirror_known = torch.ones(len(self.answers), dtype=torch.bool)
        for i, answer in enumerate(self.answers):
            other = swap_left_right(answer)
            if other != answer:
                j = self.index.get(other)
                self.mirror_known[i] = j is not None
                self.mirror[i] = j if j is not None else i

    # ---- subclasses say what a record's question and image are (and uid, gold: see Task)

    def question(self, record) -> tuple[str, str, str]:
        """``(question, image path, image id)``."""
        raise NotImplementedError

    def item_target(self, record):
        """The target carried by the record's item (None without labels)."""
        raise NotImplementedError

    # ---- Task

    def text_line(self, record) -> str:
        return f"Q: {self.question(record)[0]}"

    def image_paths(self, record) -> list[str]:
        return [self.question(record)[1]]

    def items(self, records: Sequence, registry: ImageRegistry, train: bool = False) -> list[TaskItem]:
        items = []
        for record in records:
            target = self.item_target(record)
            if train and not self.trainable(target):
                continue
            question, path, image_id = self.question(record)
            pair = pair_example(registry, question, path, image_id)
            items.append(TaskItem(self.uid(record), [pair], target))
        return items

    def trainable(self, target) -> bool:
        """Whether an item with ``target`` teaches anything (its answer is in the vocabulary)."""
        return target is not None

    def build_head(self, pooled_size: int) -> nn.Module:
        return ClassifierMLP(pooled_size, 2 * pooled_size, len(self.answers))


def vocabulary(answers: Sequence[str], min_count: int) -> list[str]:
    """Answers occurring at least ``min_count`` times, most frequent first (ties in string order)."""
    if min_count < 1:
        raise ValueError(f"task.min_answer_count: expected an integer >= 1, got {min_count}")
    counts = Counter(a for a in answers if a)
    kept = sorted((a for a, c in counts.items() if c >= min_count), key=lambda a: (-counts[a], a))
    if not kept:
        raise ValueError(
            f"no answer occurs task.min_answer_count={min_count} times in the training split "
            f"({len(counts)} distinct answers); lower task.min_answer_count"
        )
    return kept
