"""Visual tokens as both models lay them out: an image [CLS] token first, then patch (or region) tokens.

Pixels are checked for, visual masks are checked against that layout, and the MVM regression targets
(each patch's pixels, flattened) get a zero row for the [CLS] token.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vlp.data.batch import VisualInput


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


def require_pixels(visual: VisualInput, who: str) -> Tensor:
    """``visual.pixel_values``; ``who`` (a model, e.g. "ViLTA") names the reader when there are none."""
    if visual.pixel_values is None:
        raise ValueError(f"{who} reads pixels (VisualInput.pixel_values), but none were given")
    return visual.pixel_values
