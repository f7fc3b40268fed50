"""Downstream tasks, one file each (see :mod:`vlp.tasks.base` for what a task provides).

``TASKS`` maps a task name (the ``vlp finetune TASK`` argument) to its class.
"""

from __future__ import annotations

from vlp.tasks.base import Prediction, Task, TaskBatch, TaskDataError, TaskItem
from vlp.tasks.gqa import GQATask
from vlp.tasks.nlvr2 import NLVR2Task
from vlp.tasks.retrieval import RetrievalTask
from vlp.tasks.snli_ve import SNLIVETask
from vlp.tasks.vqa import VQATask

TASKS: dict[str, type[Task]] = {
    "vqa": VQATask,
    "gqa": GQATask,
    "nlvr2": NLVR2Task,
    "snli_ve": SNLIVETask,
    "retrieval": RetrievalTask,
}


def get_task(name: str) -> type[Task]:
    """The task class called ``name``; an error listing the tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "Prediction", "Task", "TaskBatch", "TaskDataError", "TaskItem", "get_task"]
