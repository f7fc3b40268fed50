"""Numeric precision of training and evaluation: ``train.precision`` names, the autocast they mean, and the
attention kernels a step runs under at that precision.

On the CPU under bf16 / fp16 autocast, PyTorch's flash-attention kernel is several times slower than
the plain math one (forward + backward; ``benchmarks/attention_backends.py`` measures it per shape and
dtype), so those steps run attention on the math backend; everywhere else PyTorch picks the kernel.
The choice covers vlp's own layers and the Hugging Face encoders alike (both call
``scaled_dot_product_attention``).
"""

from __future__ import annotations

from contextlib import ExitStack

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # name -> autocast dtype


def attention_backends(device: torch.device, precision: str) -> list[SDPBackend] | None:
    """The SDPA backends a step at ``precision`` on ``device`` may use; None: PyTorch's own choice."""
    if device.type == "cpu" and PRECISIONS[precision] is not None:
        return [SDPBackend.MATH]
    return None


def autocast(device: torch.device, precision: str) -> ExitStack:
    """Autocast to ``precision``'s dtype on ``device`` (disabled for fp32; parameters stay fp32), with
    the attention backends :func:`attention_backends` picks."""
    dtype = PRECISIONS[precision]
    stack = ExitStack()
    stack.enter_context(
        torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
    )
    backends = attention_backends(device, precision)
    if backends is not None:
        stack.enter_context(sdpa_kernel(backends))
    return stack
