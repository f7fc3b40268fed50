"""ViLTA: dual unimodal encoders + METER co-attention fusion.

Text and image encoder outputs are projected to the fusion width and tagged with a modality-type
embedding (:meth:`ViLTA.embed_text`, :meth:`ViLTA.embed_image`). Each of the N fusion layers has one
:class:`CoAttentionLayer` per stream (self-attention, cross-attention to the other stream, FFN); both
streams are updated in parallel from the previous layer's states. A pooler per stream (first token ->
dense -> tanh); the two pooled vectors are concatenated, so ``FusedFeatures.pooled`` is ``[B, 2D]``.
The text-only path (text encoder + its own MLM head) is the "language encoder" of ViLTA's soft labels
and synthesized negatives.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.config import ModelConfig
from vlp.data.batch import VisualInput
from vlp.models.encoder_fields import sync_text_fields, sync_vision_fields
from vlp.models.encoders import TextLanguageModel, build_text_encoder, build_vision_encoder
from vlp.models.heads import Heads
from vlp.models.layers import CoAttentionLayer, Pooler, attention_bias, init_bert_weights, pool_tokens
from vlp.models.outputs import FusedFeatures, ImageFeatures, TextFeatures
from vlp.models.parameters import group_parameters
from vlp.models.protocol import VisionLanguageModel
from vlp.models.visual import check_visual_mask, patchify, require_pixels, with_cls_row


class ViLTA(VisionLanguageModel):
    """See the module docstring. ``hf_configs`` rebuilds the encoders from saved configs (no directory)."""

    arch = "vilta"

    def __init__(
        self,
        config: ModelConfig,
        vocab_size: int = 0,
        *,
        load_weights: bool = True,
        hf_configs: dict[str, Any] | None = None,
    ):
        super().__init__()
        hf_configs = hf_configs or {}
        self.config = copy.deepcopy(config)
        self.text_encoder, text_mlm, text_report = build_text_encoder(
            config.text, vocab_size, load_weights=load_weights, hf_config=hf_configs.get("text")
        )
        self.vision_encoder, vision_report = build_vision_encoder(
            config.vision, load_weights=load_weights, hf_config=hf_configs.get("vision")
        )
        sync_text_fields(self.config, self.text_encoder.hf_config)
        sync_vision_fields(self.config, self.vision_encoder.hf_config)
        self.vocab_size = self.text_encoder.hf_config.vocab_size
        self.patch_size = self.vision_encoder.patch_size

        width = config.hidden_size
        layer_args = (width, config.num_heads, config.intermediate_size, config.dropout)
        self.text_proj = nn.Linear(self.text_encoder.hidden_size, width)
        self.image_proj = nn.Linear(self.vision_encoder.hidden_size, width)
        self.modality_embeddings = nn.Embedding(2, width)  # 0 = text, 1 = image
        self.text_layers = nn.ModuleList(
            CoAttentionLayer(*layer_args) for _ in range(config.num_fusion_layers)
        )
        self.image_layers = nn.ModuleList(
            CoAttentionLayer(*layer_args) for _ in range(config.num_fusion_layers)
        )
        self.text_pooler = Pooler(width, config.pooling)
        self.image_pooler = Pooler(width, config.pooling)
        for module in self._fusion_modules():
            init_bert_weights(module, config.init_std)

        self.heads = Heads(
            hidden_size=width,
            pooled_size=2 * width,
            vocab_size=self.vocab_size,
            itc_dim=config.itc_dim,
            text_hidden_size=width,
            visual_target_dim=3 * self.patch_size**2,
            num_region_labels=config.num_region_labels,
            num_answers=config.num_answers,
            word_embeddings=self.text_encoder.word_embeddings,
            text_mlm=text_mlm,
        )
        self.report_loading(text_report + vision_report)

    def _fusion_modules(self) -> list[nn.Module]:
        return [
            self.text_proj,
            self.image_proj,
            self.modality_embeddings,
            self.text_layers,
            self.image_layers,
            self.text_pooler,
            self.image_pooler,
        ]

    def hf_configs(self) -> dict[str, Any]:
        """The encoders' Hugging Face configs, enough to rebuild the architecture without any directory."""
        return {
            "text": self.text_encoder.hf_config.to_dict(),
            "vision": self.vision_encoder.hf_config.to_dict(),
        }

    # ----------------------------------------------------------------------- protocol

    def embed_text(self, input_ids: Tensor, attention_mask: Tensor) -> TextFeatures:
        encoded = self.text_encoder(input_ids, attention_mask)
        hidden = self.text_proj(encoded) + self.modality_embeddings.weight[0]
        return TextFeatures(hidden=hidden, mask=attention_mask, encoded=encoded)

    def embed_image(self, visual: VisualInput, visual_mask: Tensor | None = None) -> ImageFeatures:
        pixels = require_pixels(visual, "ViLTA")
        tokens = 1 + self.vision_encoder.num_patches
        check_visual_mask(visual_mask, pixels.shape[0], tokens)
        patch_mask = None if visual_mask is None else visual_mask[:, 1:]
        hidden = self.image_proj(self.vision_encoder(pixels, patch_mask)) + self.modality_embeddings.weight[1]
        mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        return ImageFeatures(hidden=hidden, mask=mask)

    def fuse(
        self,
        text: TextFeatures,
        image: ImageFeatures,
        image_index: Tensor,
        mode: str | None = None,
        text_index: Tensor | None = None,
    ) -> FusedFeatures:
        """Pair text ``b`` with image ``image_index[b]`` (a gather; images are not re-encoded); ViLTA has
        one fusion mode, so ``mode`` is ignored.

        The first image self-attention depends on the image alone, so it runs once per image and is
        gathered with the image states; the rest runs per pair. (The text encoder ran before, once per
        text, so the texts are simply gathered.)
        """
        if text_index is not None:
            text = text.rows(text_index)
        t, t_mask = text.hidden, text.mask
        v, v_mask = image.hidden.index_select(0, image_index), image.mask.index_select(0, image_index)
        t_bias, v_bias = attention_bias(t_mask), attention_bias(v_mask)
        layers = zip(self.text_layers, self.image_layers, strict=True)
        for index, (text_layer, image_layer) in enumerate(layers):
            if index == 0:
                v_self = image_layer.self_attn(image.hidden, bias=attention_bias(image.mask))
                v_self = v_self.index_select(0, image_index)
            else:
                v_self = image_layer.self_attn(v, bias=v_bias)
            t_self = text_layer.self_attn(t, bias=t_bias)
            t, v = text_layer.attend_other(t_self, v, v_bias), image_layer.attend_other(v_self, t, t_bias)
        pooled = torch.cat([self.text_pooler(t, t_mask), self.image_pooler(v, v_mask)], dim=-1)
        return FusedFeatures(text=t, image=v, text_mask=t_mask, image_mask=v_mask, pooled=pooled)

    def text_itc_embeddings(self, text: TextFeatures) -> Tensor:
        """L2-normalised ITC embeddings of the texts' unimodal states ([CLS] or mean: ``model.pooling``)."""
        pooled = pool_tokens(text.hidden, text.mask, self.config.pooling)
        return F.normalize(self.heads.itc_text(pooled), dim=-1)

    def image_itc_embeddings(self, image: ImageFeatures) -> Tensor:
        pooled = pool_tokens(image.hidden, image.mask, self.config.pooling)
        return F.normalize(self.heads.itc_image(pooled), dim=-1)

    def text_language_model(self) -> TextLanguageModel:
        """The text encoder + its own MLM head (modules shared with this model)."""
        return TextLanguageModel(self.text_encoder, self.heads.text_mlm_head)

    def text_mlm_logits_of(self, text: TextFeatures, positions: Tensor) -> Tensor | None:
        """The text-only MLM head on texts already encoded by :meth:`embed_text`."""
        return None if text.encoded is None else self.heads.text_mlm_head(text.encoded[positions])

    def visual_targets(self, visual: VisualInput) -> Tensor:
        """Per image token: the (already normalised) pixels of its patch, flattened; zeros for [CLS]."""
        return with_cls_row(patchify(require_pixels(visual, "ViLTA"), self.patch_size))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return group_parameters(
            {
                "encoders": [self.text_encoder, self.vision_encoder],
                "fusion": self._fusion_modules(),
                "heads": [self.heads],
            }
        )

    def parameter_components(self) -> dict[str, list]:
        """Exclusive components for :func:`vlp.models.info.parameter_table`."""
        layers = [*self.text_layers, *self.image_layers]
        fusion = [
            self.text_proj,
            self.image_proj,
            self.modality_embeddings,
            self.text_pooler,
            self.image_pooler,
        ]
        return {
            "text encoder": [self.text_encoder],
            "vision encoder": [self.vision_encoder],
            "fusion": fusion + [m for layer in layers for m in (layer.self_attn, layer.ffn)],
            "cross-attention": [layer.cross_attn for layer in layers],
            "heads": [self.heads],
        }
