"""Losses and metrics of training and validation steps: read off a step's output, summed over a logging
window (saved in checkpoints for exact resumption), and split again after averaging over the processes."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor


def detached_losses(out: Any) -> dict[str, Tensor]:
    """A step output's losses by name plus ``total`` (the weighted sum), detached, as fp32 tensors."""
    values = {name: loss.detach().float() for name, loss in out.losses.items()}
    values["total"] = out.total.detach().float()
    return values


def host_values(detached: list[dict[str, Tensor]]) -> dict[str, list[float]]:
    """The values of several steps' :func:`detached_losses` as floats by name, in step order, read from
    the device in one transfer."""
    names = sorted({name for values in detached for name in values})
    flat = torch.stack([values[n] for values in detached for n in names if n in values]).tolist()
    per_name: dict[str, list[float]] = {}
    index = 0
    for values in detached:
        for n in names:
            if n in values:
                per_name.setdefault(n, []).append(flat[index])
                index += 1
    return per_name


def add_metrics(table: dict[str, list[float]], out: Any) -> None:
    """Append a step output's metric values to ``table`` (name -> values)."""
    for name, value in out.metrics.items():
        table.setdefault(name, []).append(float(value))


def split_reduced(reduced: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """``loss/<name>`` and ``metric/<name>`` entries of averaged values -> (losses, metrics) by name."""
    losses = {k[len("loss/") :]: v for k, v in reduced.items() if k.startswith("loss/")}
    metrics = {k[len("metric/") :]: v for k, v in reduced.items() if k.startswith("metric/")}
    return losses, metrics


class LogWindow:
    """Sums over the steps since the last train log event (saved in checkpoints for exact resumption)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.samples = 0
        self.losses: dict[str, list[float]] = {}  # name -> [sum, count]
        self.metrics: dict[str, list[float]] = {}
        self.grad_norm: Tensor | float = 0.0
        self.started = time.perf_counter()

    @staticmethod
    def _add(table: dict[str, list[float]], values: dict[str, float]) -> None:
        for name, value in values.items():
            entry = table.setdefault(name, [0.0, 0])
            entry[0] += value
            entry[1] += 1

    def add(self, losses: dict[str, float], metrics: dict[str, float], samples: int, grad_norm) -> None:
        self.steps += 1
        self.samples += samples
        self._add(self.losses, losses)
        self._add(self.metrics, metrics)
        if grad_norm is not None:
            self.grad_norm = self.grad_norm + grad_norm

    def means(self) -> dict[str, float]:
        """``loss/<name>`` and ``metric/<name>`` means over the window."""
        means = {f"loss/{n}": s / c for n, (s, c) in self.losses.items()}
        means.update({f"metric/{n}": s / c for n, (s, c) in self.metrics.items()})
        return means

    def state_dict(self) -> dict:
        grad_norm = self.grad_norm.item() if isinstance(self.grad_norm, Tensor) else float(self.grad_norm)
        return {
            "steps": self.steps,
            "samples": self.samples,
            "losses": self.losses,
            "metrics": self.metrics,
            "grad_norm": grad_norm,
        }

    def load_state_dict(self, state: dict) -> None:
        self.reset()
        self.steps = state["steps"]
        self.samples = state["samples"]
        self.losses = {k: list(v) for k, v in state["losses"].items()}
        self.metrics = {k: list(v) for k, v in state["metrics"].items()}
        self.grad_norm = state["grad_norm"]
