"""Transformer building blocks (post-LN, BERT layout) on ``scaled_dot_product_attention``.

Masks are boolean key-padding masks ``[B, L]`` (True = real token). :func:`attention_bias` turns one
into the ``[B, 1, 1, L]`` form SDPA broadcasts over heads and queries, or ``None`` when nothing is
padded (so SDPA can take its fastest kernel). Padded *queries* still attend to the real keys, so no
row is ever fully masked and padding never produces NaNs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LAYER_NORM_EPS = 1e-12  # BERT's value; the SemVLP stack maps BERT checkpoints onto these layers


def attention_bias(mask: Tensor | None) -> Tensor | None:
    """``[B, L]`` bool key mask -> ``[B, 1, 1, L]`` for SDPA, or ``None`` when every key is real."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise TypeError(f"attention masks must be bool (True = real token), got {mask.dtype}")
    if bool(mask.all()):
        return None
    return mask[:, None, None, :]


def attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, dropout: float = 0.0) -> Tensor:
    """Scaled dot-product attention of ``[B, heads, Lq, d]`` queries over keys and values; ``bias`` is a
    bool ``[B, 1, 1, Lk]`` key mask (True = attend) or None.

    On the CPU in bf16 / fp16 this is written out (two matmuls and a softmax, in the low precision as
    autocast gives them): there it is faster than every ``scaled_dot_product_attention`` kernel, forward
    and backward, at every shape ``benchmarks/attention_backends.py`` measures; elsewhere SDPA, which picks
    its fastest kernel."""
    if not written_out(q):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
    return explicit_attention(q, k, v, bias, dropout)


def written_out(q: Tensor) -> bool:
    """Whether attention on ``q`` is :func:`explicit_attention` (CPU, bf16 / fp16) rather than SDPA."""
    return q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16)


def explicit_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, dropout: float = 0.0, scale: float | None = None
) -> Tensor:
    """:func:`attend` written out: ``softmax(scale q k^T, masked) v`` in the inputs' dtype (``scale``:
    1 / sqrt(d) by default; ``bias``: any bool mask that broadcasts over the scores, True = attend)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(q * scale, k.transpose(-1, -2))
    if bias is not None:
        scores = scores.masked_fill(~bias, float("-inf"))  # no row is fully masked (module docstring)
    probs = torch.softmax(scores, dim=-1)  # the CPU kernel accumulates in fp32
    if dropout:
        probs = F.dropout(probs, dropout)
    return torch.matmul(probs, v)


class MultiHeadAttention(nn.Module):
    """Multi-head attention of ``x`` over ``context`` (itself when ``context`` is None)."""

    def __init__(
        self, hidden_size: int, num_heads: int, dropout: float = 0.0, context_size: int | None = None
    ):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        context_size = context_size or hidden_size
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(context_size, hidden_size)
        self.value = nn.Linear(context_size, hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)

    def _split(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        """``bias``: the output of :func:`attention_bias` for the keys (``context``, or ``x``)."""
        context = x if context is None else context
        q, k, v = self._split(self.query(x)), self._split(self.key(context)), self._split(self.value(context))
        drop = self.dropout if self.training else 0.0
        out = attend(q, k, v, bias, drop)
        return self.out(out.transpose(1, 2).flatten(2))


class AttentionBlock(nn.Module):
    """Post-LN residual attention sublayer: ``LN(x + dropout(attn(x, context)))``."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.attn = MultiHeadAttention(hidden_size, num_heads, dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        return self.norm(x + self.drop(self.attn(x, context, bias)))


class FeedForward(nn.Module):
    """Post-LN residual FFN sublayer (GELU)."""

    def __init__(self, hidden_size: int, intermediate_size: int, dropout: float = 0.0):
        super().__init__()
        self.up = nn.Linear(hidden_size, intermediate_size)
        self.down = nn.Linear(intermediate_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.drop(self.down(F.gelu(self.up(x)))))


class TransformerLayer(nn.Module):
    """A BERT encoder layer: self-attention, then FFN."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = AttentionBlock(hidden_size, num_heads, dropout)
        self.ffn = FeedForward(hidden_size, intermediate_size, dropout)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        return self.ffn(self.self_attn(x, bias=bias))


class CoAttentionLayer(nn.Module):
    """One stream of a METER co-attention layer: self-attention, cross-attention to the other stream, FFN."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = AttentionBlock(hidden_size, num_heads, dropout)
        self.cross_attn = AttentionBlock(hidden_size, num_heads, dropout)
        self.ffn = FeedForward(hidden_size, intermediate_size, dropout)

    def forward(
        self, x: Tensor, other: Tensor, bias: Tensor | None = None, other_bias: Tensor | None = None
    ) -> Tensor:
        return self.attend_other(self.self_attn(x, bias=bias), other, other_bias)

    def attend_other(self, x: Tensor, other: Tensor, other_bias: Tensor | None = None) -> Tensor:
        """The steps after self-attention: cross-attention to ``other``, then FFN."""
        return self.ffn(self.cross_attn(x, other, other_bias))


POOLING_MODES = ("cls", "mean")


def pool_tokens(hidden: Tensor, mask: Tensor, mode: str) -> Tensor:
    """[N, T, D] -> [N, D]: the first token ("cls") or the mean over the real tokens ("mean")."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "mean":
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    raise ValueError(f"model.pooling: expected one of {POOLING_MODES}, got {mode!r}")


class Pooler(nn.Module):
    """First token (or masked mean, see :func:`pool_tokens`) -> dense -> tanh."""

    def __init__(self, hidden_size: int, mode: str = "cls"):
        super().__init__()
        if mode not in POOLING_MODES:
            raise ValueError(f"model.pooling: expected one of {POOLING_MODES}, got {mode!r}")
        self.mode = mode
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        return torch.tanh(self.dense(pool_tokens(hidden, mask, self.mode)))


def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT initialisation: N(0, std) for linear/embedding weights, zero biases, unit LayerNorms."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.normal_(sub.weight, std=std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, std=std)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
