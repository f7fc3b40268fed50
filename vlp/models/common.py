"""Helpers both models share: visual targets, mask checks, parameter grouping, config syncing."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from vlp.config import ModelConfig
from vlp.data.batch import VisualInput

log = logging.getLogger("vlp.models")


def patchify(pixel_values: Tensor, patch_size: int) -> Tensor:
    """``[I, C, H, W]`` -> ``[I, (H/p)*(W/p), C*p*p]``: patches row-major, each flattened as (C, p, p)."""
    images, channels, height, width = pixel_values.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {patch_size}")
    gh, gw = height // patch_size, width // patch_size
    x = pixel_values.reshape(images, channels, gh, patch_size, gw, patch_size)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(images, gh * gw, channels * patch_size * patch_size)


def with_cls_row(targets: Tensor) -> Tensor:
    """Prepend a zero target for the [CLS]-like first image token."""
    return torch.cat([targets.new_zeros(targets.shape[0], 1, targets.shape[2]), targets], dim=1)


def check_visual_mask(visual_mask: Tensor | None, images: int, tokens: int) -> None:
    """``visual_mask`` must be [I, N] bool over the image tokens, never masking the first ([CLS]) token."""
    if visual_mask is None:
        return
    if visual_mask.dtype != torch.bool or tuple(visual_mask.shape) != (images, tokens):
        raise ValueError(
            f"visual_mask: expected a bool tensor of shape [{images}, {tokens}] (images x image tokens, "
            f"[CLS] included), got {visual_mask.dtype} {list(visual_mask.shape)}"
        )
    if bool(visual_mask[:, 0].any()):
        raise ValueError("visual_mask: the first image token is [CLS] and cannot be masked")


def require_pixels(visual: VisualInput, arch: str) -> Tensor:
    if visual.pixel_values is None:
        raise ValueError(f"{arch}: this model reads pixels (VisualInput.pixel_values), but none were given")
    return visual.pixel_values


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


def sync_text_fields(config: ModelConfig, hf) -> None:
    """Make ``config.text`` describe the encoder actually built (a pretrained directory decides)."""
    text = config.text
    text.kind = hf.model_type
    text.vocab_size = hf.vocab_size
    text.hidden_size = hf.hidden_size
    text.num_layers = hf.num_hidden_layers
    text.num_heads = hf.num_attention_heads
    text.intermediate_size = hf.intermediate_size
    offset = 2 if hf.model_type == "roberta" else 0
    text.max_position_embeddings = hf.max_position_embeddings - offset


def sync_vision_fields(config: ModelConfig, hf) -> None:
    vision = config.vision
    kinds = {"vit": "vit", "clip_vision_model": "clip", "dinov2": "dinov2"}
    vision.kind = kinds[hf.model_type]
    vision.hidden_size = hf.hidden_size
    vision.num_layers = hf.num_hidden_layers
    vision.num_heads = hf.num_attention_heads
    vision.image_size = hf.image_size
    vision.patch_size = hf.patch_size
    if hf.model_type == "dinov2":
        vision.intermediate_size = int(hf.hidden_size * hf.mlp_ratio)
    else:
        vision.intermediate_size = hf.intermediate_size


def log_report(lines: list[str]) -> None:
    for line in lines:
        log.info(line)
