"""Numeric precision of training and evaluation: ``train.precision`` names and the autocast they mean.

Attention under reduced precision is the models' own choice (:func:`vlp.models.layers.attend`, written out
on the CPU in bf16 / fp16, where every ``scaled_dot_product_attention`` kernel is slower), so autocast is
all a step needs here.
"""

from __future__ import annotations

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # name -> autocast dtype


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Autocast to ``precision``'s dtype on ``device`` (disabled for fp32; parameters stay fp32)."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
