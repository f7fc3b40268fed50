"""Which process this is among the distributed ones: the one place that answers ``(rank, world_size)``."""

from __future__ import annotations

import torch.distributed as dist


def rank_and_world_size(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``, each as given, else from an initialised ``torch.distributed`` process
    group, else that of a single process (0 and 1).

    Raises ``ValueError`` unless ``world_size >= 1`` and ``0 <= rank < world_size``.
    """
    if rank is None or world_size is None:
        initialised = dist.is_available() and dist.is_initialized()
        if rank is None:
            rank = dist.get_rank() if initialised else 0
        if world_size is None:
            world_size = dist.get_world_size() if initialised else 1
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not valid for a world of size {world_size}")
    return rank, world_size
