"""Task items -> :class:`~vlp.tasks.base.TaskBatch` es, with the same collator as pre-training.

Training, evaluation and the inference API all batch through :class:`TaskCollator` (evaluation and the
API with the eval transforms), so a question is preprocessed one way wherever it is asked.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import Dataset

from vlp.config import DataConfig
from vlp.data.collate import Collated, Collator
from vlp.data.loader import PretrainLoader
from vlp.tasks.base import Task, TaskBatch, TaskItem


class ItemDataset(Dataset):
    def __init__(self, items: Sequence[TaskItem]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> TaskItem:
        return self.items[index]


class TaskCollator:
    """Items -> a :class:`TaskBatch`: the items' image-text pairs through the pre-training collator (no
    MLM masking), then the task's targets. An item loses all its pairs when any of its images is
    unreadable (the skip counts say so)."""

    def __init__(self, task: Task, tokenizer, data_cfg: DataConfig, train: bool) -> None:
        self.task = task
        self.collator = Collator(tokenizer, data_cfg, train=train, mlm=False)

    def __call__(self, items: Sequence[TaskItem]) -> TaskBatch | None:
        return self.collate(items).batch

    def collate(self, items: Sequence[TaskItem], seed: int | None = None) -> Collated:
        items = list(items)
        collated = self.collator.collate([ex for item in items for ex in item.examples], seed=seed)
        owner = [i for i, item in enumerate(items) for _ in item.examples]
        rows_of: dict[int, list[int]] = {}
        for row, example_index in enumerate(collated.rows):
            rows_of.setdefault(owner[example_index], []).append(row)
        complete = [i for i, item in enumerate(items) if len(rows_of.get(i, ())) == len(item.examples)]
        stats = collated.stats
        if len(complete) < len(rows_of):  # an item kept only part of its pairs: collate the whole ones
            again = self.collate([items[i] for i in complete], seed=seed)
            rows = [complete[i] for i in again.rows]
            return Collated(again.batch, stats, rows, again.flipped)  # the first pass counted the skips
        if collated.batch is None or not complete:
            return Collated(None, stats)
        kept = [items[i] for i in complete]
        flipped = [collated.flipped[rows_of[i][0]] for i in complete]
        batch = TaskBatch(collated.batch, [item.uid for item in kept], self.task.targets(kept, flipped))
        return Collated(batch, stats, complete, flipped)


def task_loader(
    task: Task,
    items: Sequence[TaskItem],
    tokenizer,
    data_cfg: DataConfig,
    *,
    train: bool,
    seed: int,
    batch_size: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    name: str = "train",
) -> PretrainLoader:
    """A resumable, rank-sharded loader of task batches: shuffled with full batches for training; in
    order, every item once (the last batch short; under several ranks a few items twice) otherwise."""
    return PretrainLoader(
        ItemDataset(items),
        TaskCollator(task, tokenizer, data_cfg, train=train),
        batch_size=batch_size or data_cfg.batch_size,
        seed=seed,
        shuffle=train,
        drop_last=train,
        advance_epoch=train,
        rank=rank,
        world_size=world_size,
        num_workers=data_cfg.num_workers,
        max_bad_fraction=data_cfg.max_bad_fraction,
        name=name,
    )
