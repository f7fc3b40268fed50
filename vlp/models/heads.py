"""Pre-training heads: MLM, ITM, ITC projections, MVM and QA (downstream task heads live in vlp.tasks).

Pair-level heads read the pooled pair representation (``FusedFeatures.pooled``, width ``pooled_size``).
The MLM heads are only ever applied to the selected (masked) positions, never to every token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.models.layers import LAYER_NORM_EPS, init_bert_weights


class MLMHead(nn.Module):
    """BERT MLM head: dense -> GELU -> LayerNorm -> decoder (+ bias).

    With ``tied_weight`` (the word-embedding matrix ``[V, hidden]``) the decoder shares it.
    """

    def __init__(
        self,
        hidden_size: int,
        vocab_size: int,
        tied_weight: nn.Parameter | None = None,
        eps: float = LAYER_NORM_EPS,
    ):
        super().__init__()
        self.transform = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.decoder = nn.Linear(hidden_size, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        init_bert_weights(self)
        if tied_weight is not None:
            if tuple(tied_weight.shape) != (vocab_size, hidden_size):
                raise ValueError(
                    f"cannot tie an MLM decoder [{vocab_size}, {hidden_size}] to embeddings "
                    f"{list(tied_weight.shape)}"
                )
            self.decoder.weight = tied_weight

    def forward(self, hidden: Tensor) -> Tensor:
        """``hidden`` [M, hidden] (the selected positions only) -> logits [M, V]."""
        return self.decoder(self.norm(F.gelu(self.transform(hidden)))) + self.bias


class PredictionHead(nn.Module):
    """Transform (dense -> GELU -> LayerNorm) then a linear output, as LXMERT's region heads."""

    def __init__(self, hidden_size: int, out_size: int):
        super().__init__()
        self.transform = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.out = nn.Linear(hidden_size, out_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.out(self.norm(F.gelu(self.transform(hidden))))


class ClassifierMLP(nn.Module):
    """Two-layer MLP classifier: Linear -> LayerNorm -> GELU -> Linear (the METER task heads)."""

    def __init__(self, in_size: int, hidden_size: int, num_classes: int):
        super().__init__()
        self.hidden = nn.Linear(in_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.out = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.gelu(self.norm(self.hidden(x))))


class Heads(nn.Module):
    """All heads of a model.

    ``hidden_size``: width of the fused token states; ``pooled_size``: width of ``FusedFeatures.pooled``;
    ``text_hidden_size``: width of ``TextFeatures.hidden`` (input of the text ITC projection);
    ``visual_target_dim``: width of the MVM regression target; ``num_region_labels`` and
    ``num_region_attributes``: the detector's object and attribute classes (MVM classification, LXMERT).
    ``text_mlm``: the text-only path's own MLM head (ViLTA); None where the text-only path shares
    ``mlm`` (SemVLP: one stack, one MLM head).
    """

    def __init__(
        self,
        *,
        hidden_size: int,
        pooled_size: int,
        vocab_size: int,
        itc_dim: int,
        text_hidden_size: int,
        visual_target_dim: int,
        num_region_labels: int = 0,
        num_region_attributes: int = 0,
        num_answers: int = 0,
        word_embeddings: nn.Parameter | None = None,
        text_mlm: MLMHead | None = None,
    ):
        super().__init__()
        tie = (
            word_embeddings
            if word_embeddings is not None and word_embeddings.shape[1] == hidden_size
            else None
        )
        self.mlm_head = MLMHead(hidden_size, vocab_size, tied_weight=tie)
        self.text_mlm_head = text_mlm
        self.itm_head = nn.Linear(pooled_size, 2)
        self.itc_text_proj = nn.Linear(text_hidden_size, itc_dim)
        self.itc_image_proj = nn.Linear(hidden_size, itc_dim)
        self.mvm_regress_head = PredictionHead(hidden_size, visual_target_dim)
        self.mvm_classify_head = (
            PredictionHead(hidden_size, num_region_labels) if num_region_labels > 0 else None
        )
        self.mvm_attribute_head = (
            PredictionHead(hidden_size, num_region_attributes) if num_region_attributes > 0 else None
        )
        self.qa_head = ClassifierMLP(pooled_size, 2 * pooled_size, num_answers) if num_answers > 0 else None
        for module in (self.itm_head, self.itc_text_proj, self.itc_image_proj, self.mvm_regress_head):
            init_bert_weights(module)
        for module in (self.mvm_classify_head, self.mvm_attribute_head, self.qa_head):
            if module is not None:
                init_bert_weights(module)

    @staticmethod
    def _need(module: nn.Module | None, what: str, fix: str) -> nn.Module:
        if module is None:
            raise RuntimeError(f"this model has no {what} head ({fix})")
        return module

    def mlm(self, hidden: Tensor) -> Tensor:
        """Multimodal MLM: fused text states at the selected positions [M, D] -> [M, V]."""
        return self.mlm_head(hidden)

    def text_mlm(self, hidden: Tensor) -> Tensor:
        """Text-only MLM: text-path states at the selected positions [M, Dt] -> [M, V]."""
        return (self.text_mlm_head or self.mlm_head)(hidden)

    def itm(self, pooled: Tensor) -> Tensor:
        """[B, P] -> [B, 2] (index 1 = matched)."""
        return self.itm_head(pooled)

    def retrieval_score(self, pooled: Tensor) -> Tensor:
        """The ITM positive logit [B]."""
        return self.itm_head(pooled)[:, 1]

    def itc_text(self, cls_state: Tensor) -> Tensor:
        return self.itc_text_proj(cls_state)

    def itc_image(self, cls_state: Tensor) -> Tensor:
        return self.itc_image_proj(cls_state)

    def mvm_regress(self, hidden: Tensor) -> Tensor:
        """Fused image states at masked tokens [M, D] -> regression targets [M, Dt]."""
        return self.mvm_regress_head(hidden)

    def mvm_classify(self, hidden: Tensor) -> Tensor:
        """[M, D] -> region-label logits [M, num_region_labels]."""
        return self._need(self.mvm_classify_head, "MVM classification", "set model.num_region_labels > 0")(
            hidden
        )

    def mvm_attributes(self, hidden: Tensor) -> Tensor:
        """[M, D] -> region-attribute logits [M, num_region_attributes]."""
        head = self._need(self.mvm_attribute_head, "MVM attribute", "set model.num_region_attributes > 0")
        return head(hidden)

    def qa(self, pooled: Tensor) -> Tensor:
        """[B, P] -> answer logits [B, num_answers]."""
        return self._need(self.qa_head, "QA", "set model.num_answers > 0")(pooled)
