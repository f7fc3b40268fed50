"""The attention the Hugging Face encoders inside vlp's models run: :func:`vlp.models.layers.attend`'s
choice, registered with transformers as ``attn_implementation="vlp"``.

On the CPU in bf16 / fp16 attention is written out (faster there than every SDPA kernel, see
``benchmarks/attention_backends.py``); everywhere else it is transformers' own SDPA path. The masks are
SDPA's (bool, True = attend, or None when nothing is padded): the mask interface is registered under the
same name, without which transformers would build no mask at all for an implementation it does not know.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlp.models.layers import explicit_attention, written_out

NAME = "vlp"


def vlp_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[Tensor, None]:
    """transformers' attention-function signature: ``[B, heads, L, d]`` in, ``[B, L, heads, d]`` out."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not written_out(query):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        raise TypeError(f"{NAME} attention expects SDPA's bool masks, got {attention_mask.dtype}")
    out = explicit_attention(query, key, value, attention_mask, dropout, scaling)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Register :func:`vlp_attention` and SDPA's masks as ``NAME`` with transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, vlp_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
