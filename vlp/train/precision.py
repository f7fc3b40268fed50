"""Numeric precision of training and evaluation: ``train.precision`` names and the autocast they mean.

``auto`` is bf16 autocast where the device computes bf16 natively and fp32 elsewhere
(:func:`native_bf16`): a CUDA device that supports bf16, or a CPU with AMX or AVX512-BF16, where bf16 is
faster than fp32 (``benchmarks/pretrain_step.py``); on a CPU without them bf16 is emulated and slower. The
environment variable ``VLP_NATIVE_BF16`` (``1`` / ``0``) overrides the detection, so that a run, or a test
suite, can make ``auto`` choose the same on every machine.

Attention under reduced precision is the models' own choice (:func:`vlp.models.layers.attend`, written out
on the CPU in bf16 / fp16, where every ``scaled_dot_product_attention`` kernel is slower), so autocast is
all a step needs here.
"""

from __future__ import annotations

import os

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # name -> autocast dtype
NATIVE_BF16_ENV = "VLP_NATIVE_BF16"


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls natively (``VLP_NATIVE_BF16`` = 1 / 0 overrides)."""
    forced = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if forced:
        if forced not in ("0", "1"):
            raise ValueError(f"{NATIVE_BF16_ENV}={forced!r}: expected 1 (bf16 is native here) or 0")
        return forced == "1"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":  # torch's own CPU feature probes (private names: a missing one counts as no)
        probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` with ``auto`` replaced by what it means on ``device``: bf16 or fp32."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Autocast to ``precision``'s dtype on ``device`` (disabled for fp32; parameters stay fp32)."""
    dtype = PRECISIONS[resolve_precision(precision, device)]
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
