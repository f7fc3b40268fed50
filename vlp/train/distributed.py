"""Process-group set-up from torchrun's environment, and the few collectives the trainer needs.

One process (no torchrun) needs no process group: every helper here is then a cheap no-op. Under
``torchrun`` (one node or many: ``--nnodes``, ``--node_rank``, ``--rdzv_endpoint`` / MASTER_ADDR), the
global RANK / WORLD_SIZE and the per-node LOCAL_RANK come from the environment; the backend is NCCL when
CUDA is available and gloo otherwise. Nothing here assumes a single node: the device is picked by
LOCAL_RANK, everything else by the global rank.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from vlp.ranks import rank_and_world_size


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from err


def _pick_device(local_rank: int, device: str | None) -> torch.device:
    if device:
        picked = torch.device(device)
    elif torch.cuda.is_available():
        picked = torch.device("cuda", local_rank % torch.cuda.device_count())
    else:
        picked = torch.device("cpu")
    if picked.type == "cuda":
        torch.cuda.set_device(picked)
    return picked


def init_distributed(device: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group torchrun describes (idempotent), or describe a single process.

    ``device`` forces a device ("cpu", "cuda:1"); by default ``cuda:LOCAL_RANK`` when CUDA is available,
    else the CPU.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world_size = rank_and_world_size()
        local_rank = _env_int("LOCAL_RANK", rank)
        return DistInfo(rank, world_size, local_rank, _pick_device(local_rank, device), rank == 0)
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    picked = _pick_device(local_rank, device)
    if world_size > 1:
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(name):
                raise ValueError(
                    f"WORLD_SIZE={world_size} but {name} is not set: launch with torchrun, which sets it"
                )
        backend = "nccl" if picked.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
            device_id=picked if picked.type == "cuda" else None,
        )
    return DistInfo(rank, world_size, local_rank, picked, rank == 0)


def _active() -> bool:
    return rank_and_world_size()[1] > 1


def barrier() -> None:
    if _active():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (if one was joined), after every rank has got here: a gloo rank that tears
    down while its peer is still finishing a collective can abort the peer ("terminate called ...").

    Modules and tensors that reference the group (FSDP states, DTensors, DDP reducers of finished runs,
    often in reference cycles) are collected first, while the group is still alive: left to interpreter
    shutdown, their gloo work is torn down after the group and aborts the process."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        barrier()
        dist.destroy_process_group()


def all_reduce_mean(values: dict[str, float], device: torch.device | None = None) -> dict[str, float]:
    """Mean of each named value over the ranks that report it.

    Ranks may report different names (e.g. a loss only some ranks saw): the names are gathered first,
    then each value is averaged over the ranks that have it. One process: returned unchanged.
    """
    if not _active():
        return dict(values)
    gathered: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, sorted(values))
    names = sorted({name for names in gathered for name in (names or [])})
    if not names:
        return {}
    device = device or _collective_device()
    sums = torch.tensor([float(values.get(n, 0.0)) for n in names], dtype=torch.float64, device=device)
    counts = torch.tensor([1.0 if n in values else 0.0 for n in names], dtype=torch.float64, device=device)
    packed = torch.stack([sums, counts])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return {n: (packed[0, i] / packed[1, i].clamp_min(1)).item() for i, n in enumerate(names)}


def all_reduce_max(value: float, device: torch.device | None = None) -> float:
    """The largest ``value`` over all ranks (used as a collective "any rank says stop" flag)."""
    if not _active():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device or _collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.item()


def all_reduce_min_int(value: int, device: torch.device | None = None) -> int:
    if not _active():
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device or _collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_lists(items: list) -> list:
    """Every rank's ``items`` (picklable objects), concatenated in rank order; one process: ``items``."""
    if not _active():
        return list(items)
    gathered: list[list | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in (part or [])]
