"""What every downstream task provides, and the typed things that cross the task border.

A task file (``vqa.py``, ``gqa.py``, ...) holds one :class:`Task` subclass with everything about its task
in one place: reading the split files as released, the task state learned from the training split (an
answer vocabulary), the targets a batch needs, the head, the loss, typed predictions carrying example
ids, the official metric and the writer of the official result file.

Data flows one way: split files -> records -> :class:`TaskItem` s (one per question / statement, each
with one or more image-text :class:`~vlp.data.pipeline.Example` s) -> :class:`TaskBatch` (a
:class:`~vlp.data.batch.Batch` plus the task's targets) -> logits -> :class:`Prediction` s -> metric and
result file. Nothing here imports the training code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vlp.config import TaskConfig
from vlp.data.batch import Batch
from vlp.data.pipeline import Example, ImageRegistry, image_key


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


def require_split(split: str, found: Sequence[str], root: Path, pattern: str) -> None:
    if split not in found:
        listed = ", ".join(found) if found else "none"
        raise TaskDataError(
            f"split {split!r} not found in {root} (expected {pattern.format(split=split)}); "
            f"splits found: {listed}"
        )


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

    def __init__(self, state: dict) -> None:
        self.state = state

    # ---- data

    @classmethod
    def splits(cls, root: Path) -> list[str]:
        """The splits present in ``root``."""
        raise NotImplementedError

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

    # ---- model

    def build_head(self, pooled_size: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The training loss of a batch and its metrics (plain floats)."""
        raise NotImplementedError

    def predict(self, logits: Tensor, uids: Sequence[str | int], top_k: int = 5) -> list[Prediction]:
        raise NotImplementedError

    # ---- evaluation

    def score(self, predictions: dict, records: Sequence) -> dict[str, Any]:
        """The official metrics of ``predictions`` (by uid) on ``records``; every labelled record counts
        (a record without a prediction scores 0). Empty when the records carry no labels."""
        raise NotImplementedError

    def result_file(self, predictions: dict, records: Sequence) -> list[dict]:
        """The official result file's entries: one per record, in record order."""
        raise NotImplementedError

    def uid(self, record: Any) -> str | int:
        raise NotImplementedError

    def describe(
        self, record: Any, prediction: Prediction | None
    ) -> tuple[list[str], list[str], bool | None]:
        """For a contact sheet: the record's image paths, text lines, and whether the prediction is right."""
        raise NotImplementedError

    def baselines(self, train_records: Sequence, records: Sequence) -> dict[str, float]:
        """Scores of trivial predictors (e.g. the majority answer) on ``records``, under :attr:`metric`."""
        return {}


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """Write ``value`` as JSON atomically (a temp file beside it, then a rename); returns the path."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
