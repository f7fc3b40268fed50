"""Trainable parameters by model component: optimizer groups (each parameter once) and parameter counts."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


def unique_parameters(
    modules: Iterable[nn.Module | nn.Parameter | None], seen: set[int]
) -> list[nn.Parameter]:
    """Trainable parameters of ``modules`` not in ``seen`` (ids; updated), in order."""
    out = []
    for item in modules:
        if item is None:
            continue
        params = [item] if isinstance(item, nn.Parameter) else item.parameters()
        for param in params:
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                out.append(param)
    return out


def group_parameters(groups: dict[str, list]) -> dict[str, list[nn.Parameter]]:
    """Each trainable parameter exactly once, in the first group that holds it."""
    seen: set[int] = set()
    return {name: unique_parameters(items, seen) for name, items in groups.items()}


def count_components(components: dict[str, list]) -> dict[str, int]:
    """Parameters (trainable or not) per component; a shared tensor counts in its first component."""
    seen: set[int] = set()
    counts = {}
    for name, items in components.items():
        total = 0
        for item in items:
            if item is None:
                continue
            for param in [item] if isinstance(item, nn.Parameter) else item.parameters():
                if id(param) not in seen:
                    seen.add(id(param))
                    total += param.numel()
        counts[name] = total
    return counts
