"""NLVR2: is a statement true of a pair of images? Scored by accuracy and consistency.

Data (``--data ROOT``, as released): ``train.json``, ``dev.json``, ``test1.json`` (JSON lines; ``test1``
may come without labels); images as :func:`vlp.data.formats.nlvr2.read_nlvr2` finds them from the
identifier, under ``IMAGES/train/<directory>/`` and ``IMAGES/<split>/`` (``--images``, default
``ROOT/images``, which is also where ``vlp data synth`` puts them).

* Item: the statement paired with the left image and with the right image (two pairs, in that order),
  fused in one pass; the head (METER's "pair" head) is an MLP over ``[pooled_left ; pooled_right]``.
* Loss: cross-entropy over {False, True}. No task state.
* Horizontal flip: "left" and "right" in a statement name the images, not directions inside one, and the
  collator would flip (and swap the text of) each image on its own, so the fine-tune presets keep
  ``data.hflip`` off; the label does not depend on ``flipped``.
* Metrics, in percent: ``accuracy`` and ``consistency`` as the official ``nlvr2/eval/metrics.py``
  (lil-lab/nlvr) computes it: examples are grouped into sentences by the identifier
  ``split-set-pair-sentence`` with its pair id blanked, and a sentence counts when every one of its
  examples is right. An example without a prediction counts as wrong.
* Result file: ``[{"identifier": str, "prediction": "True" | "False"}, ...]``, one entry per example in
  file order ("" for an example without a prediction). Our choice of layout: the leaderboard takes a
  CSV of ``identifier,prediction`` lines, which is these entries one per line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.data.examples import ImageRegistry
from vlp.data.formats.nlvr2 import read_nlvr2
from vlp.data.records import NLVR2Record
from vlp.models.heads import ClassifierMLP
from vlp.tasks.base import Task, TaskItem, pair_example, split_file

SPLIT_FILE = "{split}.json"
ANSWERS = ("False", "True")  # class index = int(label)


def answer(label: bool) -> str:
    return ANSWERS[int(label)]


def sentence_key(identifier: str) -> str:
    """The sentence an example belongs to: its identifier with the pair id blanked (``dev-850--0``)."""
    parts = identifier.split("-")
    if len(parts) > 2:
        parts[2] = ""
    return "-".join(parts)


class NLVR2Task(Task):
    name = "nlvr2"
    metric = "accuracy"
    train_split = "train"
    val_split = "dev"
    split_pattern = SPLIT_FILE
    pairs_per_item = 2
    flip_safe = False
    answers = ANSWERS
    RESULT_KEYS = ("identifier", "prediction")

    # ---- data

    @classmethod
    def read(cls, root: Path, images: Path, split: str) -> list[NLVR2Record]:
        return read_nlvr2(split_file(root, SPLIT_FILE, split), images)

    def uid(self, record: NLVR2Record) -> str:
        return record.identifier

    def gold(self, record: NLVR2Record) -> str:
        return "" if record.label is None else answer(record.label)

    def text_line(self, record: NLVR2Record) -> str:
        return f"S: {record.sentence}"

    def image_paths(self, record: NLVR2Record) -> list[str]:
        return [record.left_image_path, record.right_image_path]

    def items(
        self, records: Sequence[NLVR2Record], registry: ImageRegistry, train: bool = False
    ) -> list[TaskItem]:
        items = []
        for record in records:
            if train and record.label is None:
                continue
            pairs = [
                pair_example(registry, record.sentence, path, Path(path).stem)
                for path in (record.left_image_path, record.right_image_path)
            ]
            target = None if record.label is None else int(record.label)
            items.append(TaskItem(record.identifier, pairs, target))
        return items

    def targets(self, items: Sequence[TaskItem], flipped: Sequence[bool]) -> Tensor | None:
        if any(item.target is None for item in items):
            return None
        return torch.tensor([item.target for item in items], dtype=torch.long)

    # ---- model

    def build_head(self, pooled_size: int) -> nn.Module:
        # pooled_size is already 2P (both pairs); hidden P, as METER's NLVR2 head
        return ClassifierMLP(pooled_size, pooled_size // 2, len(ANSWERS))

    def loss(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, float]]:
        logits = logits.float()
        loss = F.cross_entropy(logits, targets)
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == targets).float().mean().item()
        return loss, {"nlvr2_acc": accuracy}

    # ---- evaluation

    def score(self, predictions: dict, records: Sequence[NLVR2Record]) -> dict:
        right: list[bool] = []
        sentences: dict[str, bool] = {}
        missing = 0
        for record in records:
            if record.label is None:
                continue
            prediction = predictions.get(record.identifier)
            missing += prediction is None
            correct = prediction is not None and prediction.answer == answer(record.label)
            right.append(correct)
            key = sentence_key(record.identifier)
            sentences[key] = sentences.get(key, True) and correct
        if not right:
            return {}
        result = {
            "accuracy": round(100 * sum(right) / len(right), 2),
            "consistency": round(100 * sum(sentences.values()) / len(sentences), 2),
            "examples": len(right),
        }
        if missing:
            result["unanswered"] = missing
        return result
