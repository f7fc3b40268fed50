"""Evaluation of a task model, apart from loss validation: predictions over a whole split, gathered
across ranks (torchrun), then the task's official metric.

Each rank predicts its share of the split (the loader deals the items out; when they do not divide
evenly a few are predicted twice, and the copies are dropped by example id), every rank receives all
predictions, and every rank computes the same metrics, so a best-checkpoint decision agrees everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vlp.tasks.base import Prediction, Task
from vlp.tasks.model import TaskModel
from vlp.train.distributed import all_gather_lists
from vlp.train.precision import autocast


@dataclass
class Evaluation:
    metrics: dict[str, Any]  # the task's metrics (nested as the official evaluation reports them)
    predictions: dict[str | int, Prediction]  # by example id, every rank's
    seconds: float
    items_per_s: float


def predict_split(
    model: TaskModel, loader, device: torch.device, precision: str = "fp32", top_k: int = 5
) -> tuple[dict[str | int, Prediction], int]:
    """Every item's prediction (all ranks'), and how many items this rank predicted."""
    was_training = model.training
    model.eval()
    local: list[Prediction] = []
    try:
        with torch.no_grad(), autocast(device, precision):
            for batch in loader:
                local.extend(model.predict(batch.to(device), top_k=top_k))
    finally:
        model.train(was_training)
    predictions: dict[str | int, Prediction] = {}
    for prediction in all_gather_lists(local):
        predictions.setdefault(prediction.uid, prediction)
    return predictions, len(local)


def evaluate(
    model: TaskModel,
    loader,
    records: Sequence,
    device: torch.device,
    precision: str = "fp32",
    top_k: int = 5,
) -> Evaluation:
    started = time.perf_counter()
    predictions, _ = predict_split(model, loader, device, precision, top_k)
    seconds = time.perf_counter() - started
    metrics = model.task.score(predictions, records)
    return Evaluation(metrics, predictions, seconds, len(predictions) / max(seconds, 1e-9))


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"perAnswerType": {"yes/no": 80.0}}`` -> ``{"perAnswerType/yes/no": 80.0}`` (numbers only)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = float(value)
    return flat


class TaskEvaluator:
    """What the trainer calls every ``train.val_every`` steps: the task metric on the val split.

    ``metric`` names the number (higher is better) that selects the best checkpoint.
    """

    def __init__(self, task: Task, loader, records: Sequence, device: torch.device, precision: str) -> None:
        self.task = task
        self.loader = loader
        self.records = list(records)
        self.device = device
        self.precision = precision
        self.metric = task.metric

    def __call__(self, model: TaskModel) -> dict[str, float]:
        result = evaluate(model, self.loader, self.records, self.device, self.precision)
        metrics = flatten(result.metrics)
        if self.metric not in metrics:
            raise ValueError(
                f"{self.task.name}: the val split has no labels, so '{self.metric}' cannot select the best "
                "checkpoint; choose a labelled split with --val-split"
            )
        metrics["items_per_s"] = result.items_per_s
        return metrics


class RetrievalEvaluator:
    """Retrieval metrics of the model on the val split (ITC top-k re-ranked by ITM; ranks share the
    queries and gather the scores); ``metric`` is ``rsum``."""

    metric = "rsum"

    def __init__(
        self, records: Sequence, collator, *, k: int, itc_weight: float, mode: str | None, dist
    ) -> None:
        self.records = list(records)
        self.collator = collator
        self.k = k
        self.itc_weight = itc_weight
        self.mode = mode
        self.dist = dist

    def __call__(self, model) -> dict[str, float]:
        from vlp.tasks import retrieval

        result = retrieval.evaluate_split(
            model, self.records, self.collator, k=self.k, mode=self.mode, device=self.dist.device,
            rank=self.dist.rank, world_size=self.dist.world_size, gather=all_gather_lists,
            itc_weight=self.itc_weight,
        )  # fmt: skip
        metrics = flatten(result.metrics)
        metrics["seconds"] = result.seconds
        return metrics
