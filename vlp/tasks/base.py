"""What every downstream task provides, and the typed things that cross the task border.

A task file (``vqa.py``, ``gqa.py``, ...) holds one :class:`Task` subclass with everything about its task
in one place: reading the split files as released, the task state learned from the training split (an
answer vocabulary), the targets a batch needs, the head, the loss and the official metric. What is the
same for every task that picks one of its :attr:`Task.answers` lives once in :class:`Task`, driven by a
few per-task hooks (:meth:`~Task.uid`, :meth:`~Task.gold`, :meth:`~Task.text_line`,
:meth:`~Task.image_paths`, :meth:`~Task.is_right`, :attr:`~Task.RESULT_KEYS`,
:attr:`~Task.probability`): the typed predictions carrying example ids, the writer of the official
result file, the contact-sheet description of a record and the majority baseline.

Data flows one way: split files -> records -> :class:`TaskItem` s (one per question / statement, each
with one or more image-text :class:`~vlp.data.examples.Example` s) -> :class:`TaskBatch` (a
:class:`~vlp.data.batch.Batch` plus the task's targets) -> logits -> :class:`Prediction` s -> metric and
result file. Nothing here imports the training code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vlp.config import TaskConfig
from vlp.data.batch import Batch
from vlp.data.examples import Example, ImageRegistry, image_key


class TaskDataError(ValueError):
    """A task's data directory lacks a file or a split (the message names it and lists what is there)."""


@dataclass
class TaskItem:
    """One unit the task predicts for: its id, its image-text pairs, and its target (None: no label)."""

    uid: str | int
    examples: list[Example]
    target: Any = None


@dataclass
class TaskBatch:
    """The image-text pairs of a batch of items (``batch``: item ``i`` owns rows ``i * pairs .. + pairs``)
    and the task's targets for them (None when the split has no labels)."""

    batch: Batch
    uids: list[str | int]
    targets: Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.uids)

    def to(self, device: torch.device | str) -> TaskBatch:
        targets = self.targets.to(device) if self.targets is not None else None
        return TaskBatch(self.batch.to(device), list(self.uids), targets)


@dataclass
class Prediction:
    """The task's answer for one item: its label, its probability, and the best ``top`` alternatives."""

    uid: str | int
    answer: str
    score: float
    top: list[tuple[str, float]] = field(default_factory=list)


def pair_example(
    registry: ImageRegistry, text: str, image_path: str, image_id: str, image: bytes | None = None
) -> Example:
    """An image-text :class:`Example` (the image by path, or encoded bytes)."""
    key = image_key(image_id, image_path, image is not None)
    return Example(
        text=text,
        image_key=key,
        image_group=registry.group(key),
        image_path=image_path,
        image_bytes=image,
        image_id=image_id,
    )


def require_file(path: Path, what: str, option: str) -> Path:
    """``path`` when it is a file; else a :class:`TaskDataError` naming it, the option and what is there."""
    if path.is_file():
        return path
    folder = path.parent
    present = sorted(p.name for p in folder.iterdir())[:12] if folder.is_dir() else []
    found = f"; {folder} holds: {', '.join(present)}" if present else f"; {folder} does not exist"
    raise TaskDataError(f"{what} not found: {path} (from {option}){found}")


def require_images(images: Path, option: str = "--images") -> Path:
    """``images`` when it is a directory; else a :class:`TaskDataError` naming it and the option."""
    if not images.is_dir():
        raise TaskDataError(f"image directory not found: {images} (from {option}; default DATA/images)")
    return images


def splits_in(root: Path, pattern: str) -> list[str]:
    """The split names of the files in ``root`` named by ``pattern`` (e.g. ``"{split}.json"``)."""
    prefix, suffix = pattern.split("{split}")
    names = (p.name for p in Path(root).glob(pattern.format(split="*")))
    return sorted(name[len(prefix) : len(name) - len(suffix)] for name in names)


def split_file(root: Path, pattern: str, split: str) -> Path:
    """``root / pattern`` for ``split``; a :class:`TaskDataError` listing the splits found otherwise."""
    root = Path(root)
    found = splits_in(root, pattern)
    if split not in found:
        listed = ", ".join(found) if found else "none"
        raise TaskDataError(
            f"split {split!r} not found in {root} (expected {pattern.format(split=split)}); "
            f"splits found: {listed}"
        )
    return root / pattern.format(split=split)


class Task:
    """The interface of a task; see the module docstring. Subclasses set the class attributes."""

    name: ClassVar[str]
    # The metric (a key of :meth:`score`'s result; higher is better) that selects the best checkpoint.
    metric: ClassVar[str]
    train_split: ClassVar[str]
    val_split: ClassVar[str]
    # Image-text pairs per item (NLVR2: 2, one per image).
    pairs_per_item: ClassVar[int] = 1
    # Whether training may mirror images (``data.hflip``; the text's "left"/"right" are swapped with
    # them). NLVR2 may not: its two images would be mirrored independently of the one statement.
    flip_safe: ClassVar[bool] = True
    # The answers a prediction picks from, in the head's class order (VQA, GQA: the vocabulary learned
    # from the training split; NLVR2: "False", "True"; SNLI-VE: its three labels). Empty: the task
    # predicts no answer (retrieval ranks pairs).
    answers: Sequence[str] = ()
    # How a logit becomes the probability reported with an answer: "softmax" (one class per item) or
    # "sigmoid" (one-vs-rest BCE heads, VQA).
    probability: ClassVar[str] = "softmax"
    # The keys of a result file entry: ``{RESULT_KEYS[0]: uid, RESULT_KEYS[1]: answer}``, in that order.
    RESULT_KEYS: ClassVar[tuple[str, str]]

    def __init__(self, state: dict) -> None:
        self.state = state

    # ---- data

    # The file of a split in ROOT, e.g. "{split}.json" (see :func:`splits_in`).
    split_pattern: ClassVar[str]

    @classmethod
    def splits(cls, root: Path) -> list[str]:
        """The splits present in ``root``."""
        return splits_in(root, cls.split_pattern)

    @classmethod
    def read(cls, root: Path, images: Path, split: str) -> list:
        """The records of ``split`` (a :class:`TaskDataError` naming the split and listing the others)."""
        raise NotImplementedError

    @classmethod
    def build(cls, train_records: Sequence, cfg: TaskConfig) -> Task:
        """The task with its state (e.g. the answer vocabulary) learned from the training records."""
        return cls({})

    def items(self, records: Sequence, registry: ImageRegistry, train: bool = False) -> list[TaskItem]:
        """One item per record; ``train``: leave out items that teach nothing (e.g. no known answer)."""
        raise NotImplementedError

    def targets(self, items: Sequence[TaskItem], flipped: Sequence[bool]) -> Tensor | None:
        """The targets of a batch of items; ``flipped[i]``: item ``i``'s image was mirrored (so "left" and
        "right" in its text were swapped). None when the items carry no labels."""
        raise NotImplementedError

    # ---- what a record is (the hooks the shared methods below read)

    def uid(self, record: Any) -> str | int:
        """The record's id (its item's and its prediction's ``uid``; the result file's first key)."""
        raise NotImplementedError

    def gold(self, record: Any) -> str:
        """The record's reference answer, spelled as a prediction would be ("" when unlabelled)."""
        raise NotImplementedError

    def text_line(self, record: Any) -> str:
        """The record's text as a contact sheet shows it (e.g. ``"Q: what colour is it?"``)."""
        raise NotImplementedError

    def image_paths(self, record: Any) -> list[str]:
        """The record's image files, in the order of its image-text pairs."""
        raise NotImplementedError

    def is_right(self, answer: str, record: Any) -> bool:
        """Whether ``answer`` is right for the (labelled) record: by default, it is the gold answer."""
        return answer == self.gold(record)

    # ---- model

    def build_head(self, pooled_size: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The training loss of a batch and its metrics (plain floats)."""
        raise NotImplementedError

    def predict(self, logits: Tensor, uids: Sequence[str | int], top_k: int = 5) -> list[Prediction]:
        """One prediction per row of ``logits`` (a column per :attr:`answers`): the ``top_k`` (at least
        one) most probable answers under :attr:`probability`, best first, ties in class order."""
        logits = logits.float()
        probs = torch.sigmoid(logits) if self.probability == "sigmoid" else torch.softmax(logits, dim=-1)
        k = max(1, min(top_k, probs.shape[-1]))
        values, indices = probs.sort(dim=-1, descending=True, stable=True)
        out = []
        for uid, row_values, row_indices in zip(
            uids, values[..., :k].tolist(), indices[..., :k].tolist(), strict=True
        ):
            top = [(self.answers[i], p) for i, p in zip(row_indices, row_values, strict=True)]
            out.append(Prediction(uid=uid, answer=top[0][0], score=top[0][1], top=top))
        return out

    # ---- evaluation

    def score(self, predictions: dict, records: Sequence) -> dict[str, Any]:
        """The official metrics of ``predictions`` (by uid) on ``records``; every labelled record counts
        (a record without a prediction scores 0). Empty when the records carry no labels."""
        raise NotImplementedError

    def result_file(self, predictions: dict, records: Sequence) -> list[dict]:
        """The official result file's entries: one per record, in record order, each
        ``{RESULT_KEYS[0]: uid, RESULT_KEYS[1]: answer}`` ("" for a record without a prediction)."""
        id_key, answer_key = self.RESULT_KEYS
        out = []
        for record in records:
            uid = self.uid(record)
            prediction: Prediction | None = predictions.get(uid)
            out.append({id_key: uid, answer_key: prediction.answer if prediction is not None else ""})
        return out

    def describe(
        self, record: Any, prediction: Prediction | None
    ) -> tuple[list[str], list[str], bool | None]:
        """For a contact sheet: the record's image paths, text lines (its text, the prediction and, when
        labelled, the truth), and whether the prediction is right (None: unlabelled)."""
        lines = [self.text_line(record)]
        if prediction is None:
            lines.append("pred: (none: image unreadable)")
        else:
            lines.append(f"pred: {prediction.answer} ({prediction.score:.2f})")
        gold = self.gold(record)
        right = None
        if gold:
            lines.append(f"truth: {gold}")
            right = prediction is not None and self.is_right(prediction.answer, record)
        return self.image_paths(record), lines, right

    def baselines(self, train_records: Sequence, records: Sequence) -> dict[str, float]:
        """Scores of trivial predictors on ``records``, under :attr:`metric`: the majority gold answer of
        the training split (ties: the first seen), given for every record. Empty for a task without
        :attr:`answers`, without training labels, or when ``records`` carry no labels."""
        if not self.answers:
            return {}
        counts = Counter(gold for gold in map(self.gold, train_records) if gold)
        if not counts:
            return {}
        majority = counts.most_common(1)[0][0]
        predictions = {self.uid(r): Prediction(self.uid(r), majority, 1.0) for r in records}
        scores = self.score(predictions, records)
        return {"majority": scores[self.metric]} if self.metric in scores else {}
