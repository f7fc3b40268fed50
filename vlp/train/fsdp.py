"""FSDP2 for the trainer: sharding a step module, the gradients FSDP leaves alone, the global gradient norm
over sharded and plain gradients, and full (unsharded) model and optimizer states for checkpoints.

FSDP cannot shard scalar parameters (e.g. a learnable temperature): those stay replicated and their
gradients are averaged over the processes by :func:`sync_replicated_grads`. Frozen parameters outside the
model (a teacher) are not sharded either: every process keeps a full copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vlp.train.state import CheckpointError


def shard(
    step_module: nn.Module, model: nn.Module, device: torch.device, world_size: int
) -> list[nn.Parameter]:
    """Shard every trainable block of a ModuleList of ``model`` (transformer layers), then the rest at the
    root ``step_module``; returns the scalar parameters left replicated.

    Blocks must be called through their ``forward``; everything else is gathered when the step module
    runs. Autocast provides bf16 compute as without FSDP; parameters and gradients stay fp32.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    replicated = [p for p in step_module.parameters() if p.ndim == 0]
    in_model = {id(p) for p in model.parameters()}
    frozen_outside = {p for p in step_module.parameters() if not p.requires_grad and id(p) not in in_model}
    ignored = set(replicated) | frozen_outside
    for module in model.modules():
        if isinstance(module, nn.ModuleList):
            for block in module:
                if any(p.requires_grad and p.ndim > 0 for p in block.parameters()):
                    fully_shard(block, mesh=mesh, ignored_params=ignored)
    fully_shard(step_module, mesh=mesh, ignored_params=ignored)
    return replicated


def sync_replicated_grads(params: list[nn.Parameter], world_size: int) -> None:
    """Average the gradients of the parameters FSDP leaves alone (scalars) over the processes."""
    import torch.distributed as dist

    for p in params:
        if not p.requires_grad:
            continue
        if p.grad is None:  # unused on this process this step; the others may have used it
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world_size)


def clip_sharded_gradients(params: list[nn.Parameter], max_norm: float, device: torch.device) -> Tensor:
    """Clip the global norm of sharded (DTensor) and plain gradients together to ``max_norm``; the norm
    before clipping."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    squares = []
    for group in (
        [g for g in grads if isinstance(g, DTensor)],
        [g for g in grads if not isinstance(g, DTensor)],
    ):
        if group:
            norm = torch.nn.utils.get_total_norm(group)
            norm = norm.full_tensor() if isinstance(norm, DTensor) else norm
            squares.append(norm.float().pow(2))
    total = torch.stack(squares).sum().sqrt() if squares else torch.zeros((), device=device)
    coef = min(1.0, max_norm / (total.item() + 1e-6))
    if coef < 1.0:
        for g in grads:
            g.mul_(coef)
    return total


def full_states(
    step_module: nn.Module, optimizer: torch.optim.Optimizer, extra_names: Any
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict]:
    """The full model state (keys under the step module's ``model.``), the extra parameters named in
    ``extra_names`` and the optimizer's state, gathered to the CPU."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(step_module, options=options)
    optim = get_optimizer_state_dict(step_module, optimizer, options=options)
    model_state = {k[len("model.") :]: v for k, v in full.items() if k.startswith("model.")}
    extra_state = {k: v for k, v in full.items() if k in extra_names}
    return model_state, extra_state, optim


def load_full_states(
    step_module: nn.Module,
    optimizer: torch.optim.Optimizer,
    path: Path,
    model_state: dict[str, Tensor],
    extra_state: dict[str, Tensor],
    optim_state: dict,
) -> None:
    """Load full states (as :func:`full_states` returns them, read from checkpoint ``path``) into the
    sharded step module and its optimizer; a model mismatch is a :class:`CheckpointError`."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    # Not strict: the step module's frozen state outside the model is not in checkpoints.
    options = StateDictOptions(full_state_dict=True, strict=False)
    full = {f"model.{k}": v for k, v in model_state.items()}
    full.update(extra_state)
    result = set_model_state_dict(step_module, full, options=options)
    missing = [k for k in result.missing_keys if k.startswith("model.")]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not match the model: missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]}"
        )
    set_optimizer_state_dict(step_module, optimizer, optim_state, options=options)
