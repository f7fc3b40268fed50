"""AdamW over the model's components, each with its own lr multiplier, and the warm-up/decay LR schedule.

Weight decay policy (our choice, the usual BERT/ViT one): no decay on
  * every parameter with fewer than 2 dimensions: biases, LayerNorm/RMSNorm weights, scalars such as a
    learnable ITC temperature;
  * every parameter whose name contains "norm" (any case: LayerNorm, layer_norm, ln-style ``*_norm``);
  * learned position embeddings and class / special tokens (names containing "position_embedding",
    "pos_embed", "cls_token" or "mask_token"), which are tables of positions, not weights of a map.
Word / token-type embedding tables and every other matrix are decayed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from vlp.config import LR_COMPONENTS, TrainConfig
from vlp.train.schedules import warmup_linear_decay

COMPONENTS = LR_COMPONENTS  # encoders, fusion, heads: each with its train.lr_mult_<component>
_NO_DECAY_NAME_PARTS = ("norm", "position_embedding", "pos_embed", "cls_token", "mask_token")


def is_no_decay(name: str, param: torch.Tensor) -> bool:
    """True when ``param`` (called ``name``) is exempt from weight decay (see the module docstring)."""
    lowered = name.lower()
    return param.ndim < 2 or any(part in lowered for part in _NO_DECAY_NAME_PARTS)


def _lr_mult(cfg: TrainConfig, component: str) -> float:
    return {"encoders": cfg.lr_mult_encoders, "fusion": cfg.lr_mult_fusion, "heads": cfg.lr_mult_heads}[
        component
    ]


def _named(module: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in module.named_parameters(remove_duplicate=False)}


def _model_of(module: nn.Module) -> nn.Module:
    """``module`` when it is a model (it has ``parameter_groups()``), else the model a step module holds
    as ``.model`` (``module`` itself when it holds none)."""
    if hasattr(module, "parameter_groups"):
        return module
    inner = getattr(module, "model", None)
    return inner if isinstance(inner, nn.Module) else module


def extra_parameters(step_module: nn.Module) -> dict[str, nn.Parameter]:
    """The trainable parameters of a step module that are not its model's (``step_module.model``), by their
    names in the step module (e.g. ``"temperature.log_scale"``); empty for a model itself."""
    model = _model_of(step_module)
    if model is step_module:
        return {}
    in_model = {id(p) for p in model.parameters()}
    return {
        name: p for name, p in step_module.named_parameters() if p.requires_grad and id(p) not in in_model
    }


def param_groups(
    module: nn.Module, cfg: TrainConfig, extra: Mapping[str, nn.Parameter] | None = None
) -> list[dict]:
    """Optimizer param groups: per component (encoders / fusion / heads) x (decay / no decay).

    ``module`` is a model or a trainer step module holding one as ``.model`` (a module with a
    ``parameter_groups()`` method is taken as the model). ``model.parameter_groups()`` must name every
    trainable parameter of the model exactly once; frozen parameters (``requires_grad=False``, e.g. a
    distillation teacher) are skipped. The step module's other trainable parameters
    (:func:`extra_parameters`, e.g. an objective's learnable temperature) and the named parameters of
    ``extra`` join the "heads" component, under those names for the no-decay rules. Each group carries
    ``name`` ("heads/no_decay") and ``lr_mult`` so logs and tests can find it; empty groups are dropped.
    """
    model = _model_of(module)
    extra = {**extra_parameters(module), **(extra or {})}
    if not hasattr(model, "parameter_groups"):
        raise TypeError(f"{type(model).__name__} has no parameter_groups() method; the trainer needs it")
    components = model.parameter_groups()
    unknown = sorted(set(components) - set(COMPONENTS))
    if unknown:
        raise ValueError(
            f"{type(model).__name__}.parameter_groups() returned unknown group(s) {unknown}; "
            f"expected keys among {list(COMPONENTS)}"
        )
    names = _named(model)
    seen: dict[int, str] = {}
    buckets: dict[str, list[tuple[str, nn.Parameter]]] = {c: [] for c in COMPONENTS}

    def add(component: str, params: Iterable[nn.Parameter], names: dict[int, str]) -> None:
        for p in params:
            if not p.requires_grad:
                continue
            name = names.get(id(p), "<unnamed>")
            if id(p) in seen:
                raise ValueError(
                    f"parameter '{name}' is in more than one parameter group ('{seen[id(p)]}' and "
                    f"'{component}'); each trainable parameter must be in exactly one"
                )
            seen[id(p)] = component
            buckets[component].append((name, p))

    for component in COMPONENTS:
        add(component, components.get(component, []), names)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise ValueError(
            f"{type(model).__name__}.parameter_groups() leaves trainable parameter(s) out: {missing[:5]}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    add("heads", extra.values(), {id(p): name for name, p in extra.items()})

    groups = []
    for component in COMPONENTS:
        mult = _lr_mult(cfg, component)
        for decay in (True, False):
            params = [p for n, p in buckets[component] if is_no_decay(n, p) != decay]
            if params:
                groups.append(
                    {
                        "params": params,
                        "lr": cfg.lr * mult,
                        "weight_decay": cfg.weight_decay if decay else 0.0,
                        "name": f"{component}/{'decay' if decay else 'no_decay'}",
                        "lr_mult": mult,
                    }
                )
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    return groups


FUSED_ADAMW_DEVICES = ("cpu", "cuda")


def build_optimizer(
    module: nn.Module, cfg: TrainConfig, extra: Mapping[str, nn.Parameter] | None = None
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` of a model or step module (and ``extra`` named parameters); fused
    kernels when every parameter is a plain tensor on a CPU or GPU (FSDP's sharded parameters are not:
    they get the default). On CPU the fused step is ~3x faster than the for-loop one torch picks by
    default (benchmarks/optimizer_step.py). ``cfg``'s ranges are checked where configs are loaded
    (:func:`vlp.config.validate`; the trainer runs it too)."""
    groups = param_groups(module, cfg, extra)
    params = [p for g in groups for p in g["params"]]
    fused = all(type(p.data) is torch.Tensor and p.device.type in FUSED_ADAMW_DEVICES for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused or None)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> LambdaLR:
    """Warm-up then linear decay (:func:`warmup_linear_decay`), applied to each group's own lr."""
    factor = partial(warmup_linear_decay, warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps)
    return LambdaLR(optimizer, factor)
