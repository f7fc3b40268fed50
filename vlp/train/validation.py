"""Validation during training: mean losses and metrics of the step module over batches of a val loader."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from vlp.config import ConfigError
from vlp.train.distributed import all_reduce_mean, all_reduce_min_int
from vlp.train.precision import autocast
from vlp.train.rng import isolated_rng
from vlp.train.step_stats import add_metrics, detached_losses, host_values, split_reduced


@torch.no_grad()
def validate_step_module(
    step_module: nn.Module,
    loader: Any,
    *,
    batches: int,
    step: int,
    seed: int,
    device: torch.device,
    precision: str,
    world_size: int,
    checked: Callable[[Any], Any] = lambda out: out,
) -> dict[str, Any]:
    """``{"losses", "metrics", "samples_per_s", "batches"}`` over ``batches`` batches of ``loader`` (all of
    it if <= 0), averaged over the processes.

    Eval mode, no gradients, the fixed ``seed`` (the RNG is restored afterwards); the loader is read from
    its start. Each batch is ``step_module(batch, step)``, its output passed through ``checked``.
    """
    n = batches
    if hasattr(loader, "__len__"):
        n = len(loader) if n <= 0 else min(n, len(loader))
    elif n <= 0:
        raise ConfigError("train.val_batches: must be > 0 when the val loader has no length")
    n = all_reduce_min_int(n)  # every process must run the same number of (FSDP) forwards
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(0)
    step_module.eval()
    detached: list[dict[str, Tensor]] = []
    metrics: dict[str, list[float]] = {}
    started = time.perf_counter()
    samples = 0
    try:
        with isolated_rng(seed):
            for _, batch in zip(range(n), loader, strict=False):
                batch = batch.to(device)
                samples += batch.size
                with autocast(device, precision):
                    out = checked(step_module(batch, step))
                detached.append(detached_losses(out))
                add_metrics(metrics, out)
    finally:
        step_module.train()
    local = {f"loss/{k}": sum(v) / len(v) for k, v in host_values(detached).items()}
    local.update({f"metric/{k}": sum(v) / len(v) for k, v in metrics.items()})
    local["samples"] = float(samples)
    local["elapsed"] = time.perf_counter() - started
    reduced = all_reduce_mean(local)
    losses, metrics_out = split_reduced(reduced)
    samples_per_s = reduced["samples"] * world_size / max(reduced["elapsed"], 1e-9)
    return {"losses": losses, "metrics": metrics_out, "samples_per_s": samples_per_s, "batches": n}
