"""SemVLP: one shared stack of BERT-layout Transformer layers, used in two modes.

* ``single`` stream: ``[image tokens ; text tokens]`` with full self-attention.
* ``two`` stream: the same layers run on each modality separately; in the layers listed in
  ``ModelConfig.cross_attention_layers`` (default: the top half) a cross-modal attention sublayer runs
  first (LXMERT order: cross-attention, self-attention, FFN), both streams reading the other's states of
  the previous layer. As in LXMERT, one cross-attention module per layer serves both directions (our
  choice where the paper is silent). These modules are the only mode-specific parameters.

Visual tokens: a learned image [CLS] token, then patch tokens (a patch embedding of the pixels) or region
tokens (LXMERT: ``(LN(W_f f) + LN(W_b box)) / 2``), plus an image-type embedding.

Pooled output (our choice, the same in both modes so every pair head works in either):
``concat(text_pooler(text [CLS] state), image_pooler(image [CLS] state))`` = ``[B, 2D]``. In single-stream
mode both [CLS] states have attended to the whole concatenation.

The stack can start from a BERT checkpoint (``model.text.pretrained``): embeddings, layers, pooler and
the MLM head (``cls.predictions.*``) map one to one; the directory then decides the stack's size.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.config import FUSION_MODES, ModelConfig
from vlp.data.batch import VisualInput
from vlp.models.encoders import TextLanguageModel, mlm_head_state, read_tensors, require_dir, weight_file
from vlp.models.heads import Heads
from vlp.models.layers import (
    LAYER_NORM_EPS,
    AttentionBlock,
    Pooler,
    TransformerLayer,
    attention_bias,
    init_bert_weights,
    pool_tokens,
)
from vlp.models.outputs import FusedFeatures, ImageFeatures, TextFeatures
from vlp.models.parameters import group_parameters
from vlp.models.protocol import VisionLanguageModel
from vlp.models.visual import check_visual_mask, patchify, require_pixels, with_cls_row


def init_token_parameters(module: nn.Module, std: float) -> None:
    """N(0, std) for the bare ``nn.Parameter`` tokens of ``module`` ([CLS], [MASK], positions, type), which
    :func:`init_bert_weights` does not reach. Left at zero, the image [CLS] row (and every masked patch)
    enters the patch LayerNorm (eps 1e-12) as an exact zero vector, whose gradient is then scaled by
    ~1/sqrt(eps): ~1e7 at initialisation, so for the first steps it is the whole gradient norm and clipping
    shrinks every other gradient of the model by as much."""
    for name in ("cls_token", "mask_token", "position_embeddings", "type_embedding"):
        param = getattr(module, name, None)
        if isinstance(param, nn.Parameter):
            nn.init.normal_(param, std=std)


class TextEmbeddings(nn.Module):
    """BERT embeddings: word + absolute position + token type 0, then LayerNorm and dropout."""

    def __init__(self, vocab_size: int, hidden_size: int, max_positions: int, dropout: float = 0.0):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, hidden_size)
        self.position_embeddings = nn.Embedding(max_positions, hidden_size)
        self.token_type_embeddings = nn.Embedding(2, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor) -> Tensor:
        length = input_ids.shape[1]
        if length > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"text of {length} tokens is longer than model.text.max_position_embeddings "
                f"({self.position_embeddings.num_embeddings})"
            )
        positions = torch.arange(length, device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        return self.drop(self.norm(x + self.token_type_embeddings.weight[0]))


class PatchEmbeddings(nn.Module):
    """Pixels -> ``[I, 1 + N, D]``: [CLS], then one token per patch (masked ones replaced by [MASK])."""

    def __init__(self, hidden_size: int, image_size: int, patch_size: int, dropout: float = 0.0):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"model.vision.image_size {image_size} is not a multiple of patch_size {patch_size}"
            )
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_patches = (image_size // patch_size) ** 2
        self.proj = nn.Conv2d(3, hidden_size, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1 + self.num_patches, hidden_size))
        self.type_embedding = nn.Parameter(torch.zeros(hidden_size))
        self.norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(self, pixel_values: Tensor, token_mask: Tensor | None = None) -> Tensor:
        height, width = pixel_values.shape[-2:]
        if (height, width) != (self.image_size, self.image_size):
            raise ValueError(
                f"pixel_values are {height}x{width} but model.vision.image_size is {self.image_size}"
            )
        patches = self.proj(pixel_values).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(patches.shape[0], 1, -1), patches], dim=1)
        if token_mask is not None:
            tokens = torch.where(token_mask[..., None], self.mask_token, tokens)
        return self.drop(self.norm(tokens + self.position_embeddings + self.type_embedding))


class RegionEmbeddings(nn.Module):
    """Region features + boxes -> ``[I, 1 + R, D]`` (LXMERT: ``(LN(W_f f) + LN(W_b box)) / 2``)."""

    def __init__(self, hidden_size: int, feature_dim: int, dropout: float = 0.0):
        super().__init__()
        self.feature_dim = feature_dim
        self.feature_proj = nn.Linear(feature_dim, hidden_size)
        self.feature_norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.box_proj = nn.Linear(4, hidden_size)
        self.box_norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.cls_token = nn.Parameter(torch.zeros(hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(hidden_size))
        self.type_embedding = nn.Parameter(torch.zeros(hidden_size))
        self.drop = nn.Dropout(dropout)

    def forward(self, features: Tensor, boxes: Tensor, token_mask: Tensor | None = None) -> Tensor:
        if features.shape[-1] != self.feature_dim:
            raise ValueError(
                f"region features have {features.shape[-1]} dims but model.region_feature_dim is "
                f"{self.feature_dim}"
            )
        content = self.feature_norm(self.feature_proj(features))
        if token_mask is not None:  # masked regions keep their box, lose their feature
            content = torch.where(token_mask[:, 1:, None], self.mask_token, content)
        regions = (content + self.box_norm(self.box_proj(boxes))) / 2
        tokens = torch.cat([self.cls_token.expand(regions.shape[0], 1, -1), regions], dim=1)
        return self.drop(tokens + self.type_embedding)


class StackTextEncoder(nn.Module):
    """The shared stack run on text alone: ``(input_ids, attention_mask) -> [B, L, D]`` (a plain BERT)."""

    def __init__(self, embeddings: TextEmbeddings, layers: nn.ModuleList):
        super().__init__()
        self.embeddings = embeddings
        self.layers = layers

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        x = self.embeddings(input_ids)
        bias = attention_bias(attention_mask)
        for layer in self.layers:
            x = layer(x, bias)
        return x


class SemVLP(VisionLanguageModel):
    """See the module docstring."""

    arch = "semvlp"

    def __init__(
        self,
        config: ModelConfig,
        vocab_size: int = 0,
        *,
        load_weights: bool = True,
        hf_configs: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.config = copy.deepcopy(config)
        cfg = self.config
        if cfg.vision.pretrained:
            raise ValueError("SemVLP builds its own visual embeddings: model.vision.pretrained must be empty")
        report: list[str] = []
        directory, bert_vocab = None, 0
        if hf_configs is None:
            directory, bert_vocab = self._adopt_bert_config(cfg, load_weights, report)
        # An explicit size wins for a stack trained from scratch; BERT's embeddings can only grow.
        vocab = max(vocab_size, bert_vocab) if bert_vocab else vocab_size or cfg.text.vocab_size
        if vocab <= 0:
            raise ValueError(
                "model.text.vocab_size is 0 and no tokenizer size was given: set model.text.vocab_size, "
                "pass vocab_size (the tokenizer's length), or set model.text.pretrained to a BERT directory"
            )
        cfg.text.vocab_size = vocab
        self.vocab_size = vocab
        cross_layers = self._cross_layer_indices(cfg)
        width = cfg.hidden_size

        self.text_embeddings = TextEmbeddings(vocab, width, cfg.text.max_position_embeddings, cfg.dropout)
        if cfg.visual_input == "patches":
            self.visual_embeddings: nn.Module = PatchEmbeddings(
                width, cfg.vision.image_size, cfg.vision.patch_size, cfg.dropout
            )
            target_dim = 3 * cfg.vision.patch_size**2
        elif cfg.visual_input == "regions":
            self.visual_embeddings = RegionEmbeddings(width, cfg.region_feature_dim, cfg.dropout)
            target_dim = cfg.region_feature_dim
        else:
            raise ValueError(f"model.visual_input: expected patches or regions, got {cfg.visual_input!r}")
        self.layers = nn.ModuleList(
            TransformerLayer(width, cfg.num_heads, cfg.intermediate_size, cfg.dropout)
            for _ in range(cfg.num_layers)
        )
        self.cross_layers = nn.ModuleDict(
            {str(i): AttentionBlock(width, cfg.num_heads, cfg.dropout) for i in cross_layers}
        )
        self.text_pooler = Pooler(width, cfg.pooling)
        self.image_pooler = Pooler(width, cfg.pooling)
        for module in self._own_modules():
            init_bert_weights(module, cfg.init_std)
        init_token_parameters(self.visual_embeddings, cfg.init_std)

        self.heads = Heads(
            hidden_size=width,
            pooled_size=2 * width,
            vocab_size=vocab,
            itc_dim=cfg.itc_dim,
            text_hidden_size=width,
            visual_target_dim=target_dim,
            num_region_labels=cfg.num_region_labels,
            num_region_attributes=cfg.num_region_attributes,
            num_answers=cfg.num_answers,
            word_embeddings=self.text_embeddings.word_embeddings.weight,
        )
        if directory is not None:
            self._load_bert(directory, report)
        self.report_loading(report)

    # ----------------------------------------------------------------------- building

    def _own_modules(self) -> list[nn.Module]:
        return [
            self.text_embeddings,
            self.visual_embeddings,
            self.layers,
            self.cross_layers,
            self.text_pooler,
            self.image_pooler,
        ]

    @staticmethod
    def _cross_layer_indices(cfg: ModelConfig) -> list[int]:
        if not cfg.cross_attention_layers:
            return list(range(cfg.num_layers // 2, cfg.num_layers))
        indices = sorted(set(cfg.cross_attention_layers))
        bad = [i for i in indices if not 0 <= i < cfg.num_layers]
        if bad:
            raise ValueError(
                f"model.cross_attention_layers: {bad} out of range for a stack of {cfg.num_layers} layers "
                f"(valid: 0..{cfg.num_layers - 1})"
            )
        return indices

    @staticmethod
    def _adopt_bert_config(
        cfg: ModelConfig, load_weights: bool, report: list[str]
    ) -> tuple[Path | None, int]:
        """With a BERT directory, its config decides the stack size.

        Returns the directory to load weights from (None: nothing to load) and BERT's vocabulary size.
        """
        path = cfg.text.pretrained
        if not path:
            return None, 0
        if not load_weights and not Path(path).is_dir():
            report.append(f"stack: {path} not found; architecture from the config fields")
            return None, 0
        directory = require_dir(path, "model.text.pretrained")
        with open(directory / "config.json", encoding="utf-8") as f:
            bert = json.load(f)
        if bert.get("model_type") != "bert":
            raise ValueError(
                f"model.text.pretrained: SemVLP initialises its stack from a BERT directory; {directory} "
                f"holds model_type {bert.get('model_type')!r}"
            )
        if (
            bert.get("hidden_act", "gelu") != "gelu"
            or bert.get("position_embedding_type", "absolute") != "absolute"
        ):
            raise ValueError(
                f"model.text.pretrained: {directory} is not a plain BERT (gelu, absolute positions)"
            )
        fields = {
            "hidden_size": bert["hidden_size"],
            "num_layers": bert["num_hidden_layers"],
            "num_heads": bert["num_attention_heads"],
            "intermediate_size": bert["intermediate_size"],
        }
        changed = [f"{k} {getattr(cfg, k)} -> {v}" for k, v in fields.items() if getattr(cfg, k) != v]
        for key, value in fields.items():
            setattr(cfg, key, value)
        cfg.text.kind = "bert"
        cfg.text.max_position_embeddings = bert["max_position_embeddings"]
        cfg.text.hidden_size = bert["hidden_size"]
        if changed:
            report.append(f"stack: sized by {directory}: " + ", ".join(changed))
        return (directory if load_weights else None), bert["vocab_size"]

    def _load_bert(self, directory: Path, report: list[str]) -> None:
        weight_file(directory, "model.text.pretrained")
        tensors = read_tensors(
            directory,
            ("bert.", "embeddings.", "encoder.", "pooler.", "cls.predictions."),
            "model.text.pretrained",
        )
        tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
        state = bert_to_stack_state(tensors)
        head_state = mlm_head_state({k: v for k, v in tensors.items() if k.startswith("cls.")})
        head_state.pop("decoder.weight", None)
        state.update({f"heads.mlm_head.{k}": v for k, v in head_state.items()})
        own = self.state_dict()
        for key in ("text_embeddings.word_embeddings.weight", "heads.mlm_head.bias"):
            if key in state and state[key].shape[0] < own[key].shape[0]:  # a larger tokenizer: keep new rows
                grown = own[key].clone()
                grown[: state[key].shape[0]] = state[key]
                state[key] = grown
        self.load_state_dict(state, strict=False)
        expected = sum(1 for k in own if k.startswith(("text_embeddings.", "layers.")))
        loaded = sum(1 for k in state if k.startswith(("text_embeddings.", "layers.")))
        if loaded != expected:
            raise ValueError(
                f"model.text.pretrained: {directory} covers {loaded} of {expected} stack tensors"
            )
        report.append(f"stack: BERT weights loaded from {directory} (embeddings, {len(self.layers)} layers)")
        pooler = "text_pooler.dense.weight" in state
        report.append(f"text pooler: {'loaded' if pooler else 'initialised fresh'}")
        if "bias" in head_state:
            report.append(f"MLM head: loaded from {directory}")
        else:
            report.append(
                f"MLM head: {directory} has none; initialised fresh (decoder tied to word embeddings)"
            )

    def hf_configs(self) -> dict[str, Any]:
        return {}

    # ----------------------------------------------------------------------- protocol

    @staticmethod
    def _resolve_mode(mode: str | None) -> str:
        mode = mode or "single"
        if mode not in FUSION_MODES:
            raise ValueError(f"SemVLP mode: expected one of {FUSION_MODES}, got {mode!r}")
        return mode

    def embed_text(self, input_ids: Tensor, attention_mask: Tensor) -> TextFeatures:
        return TextFeatures(hidden=self.text_embeddings(input_ids), mask=attention_mask)

    def embed_image(self, visual: VisualInput, visual_mask: Tensor | None = None) -> ImageFeatures:
        if self.config.visual_input == "patches":
            pixels = require_pixels(visual, "SemVLP (model.visual_input=patches)")
            check_visual_mask(visual_mask, pixels.shape[0], 1 + self.visual_embeddings.num_patches)
            hidden = self.visual_embeddings(pixels, visual_mask)
            mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
            return ImageFeatures(hidden=hidden, mask=mask)
        if visual.region_features is None or visual.region_boxes is None:
            raise ValueError(
                "SemVLP (model.visual_input=regions) needs VisualInput.region_features and region_boxes"
            )
        feats = visual.region_features
        check_visual_mask(visual_mask, feats.shape[0], 1 + feats.shape[1])
        hidden = self.visual_embeddings(feats, visual.region_boxes, visual_mask)
        regions = visual.region_mask
        if regions is None:
            regions = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        mask = torch.cat([regions.new_ones(regions.shape[0], 1), regions.bool()], dim=1)
        return ImageFeatures(hidden=hidden, mask=mask)

    def run_stack(self, hidden: Tensor, mask: Tensor) -> Tensor:
        """The shared stack on one sequence, no cross-attention (text-only / image-only / single-stream)."""
        bias = attention_bias(mask)
        for layer in self.layers:
            hidden = layer(hidden, bias)
        return hidden

    def fuse(
        self,
        text: TextFeatures,
        image: ImageFeatures,
        image_index: Tensor,
        mode: str | None = None,
        text_index: Tensor | None = None,
    ) -> FusedFeatures:
        """Pair text ``b`` with image ``image_index[b]`` (and with ``text_index``, text
        ``text_index[b]``); ``mode``: single | two (None: single)."""
        mode = self._resolve_mode(mode)
        v_mask = image.mask.index_select(0, image_index)
        if mode == "single":
            if text_index is not None:
                text = text.rows(text_index)
            t, t_mask = text.hidden, text.mask
            v = image.hidden.index_select(0, image_index)
            n_image = v.shape[1]
            joint = self.run_stack(torch.cat([v, t], dim=1), torch.cat([v_mask, t_mask], dim=1))
            v, t = joint[:, :n_image], joint[:, n_image:]
        else:
            # Below the first cross-attention layer each stream sees its own input alone: run those
            # layers once per image and once per text, then gather the pairs.
            first_cross = min((int(key) for key in self.cross_layers), default=len(self.layers))
            t, v = text.hidden, image.hidden
            t_bias, v_bias = attention_bias(text.mask), attention_bias(image.mask)
            for layer in self.layers[:first_cross]:
                t, v = layer(t, t_bias), layer(v, v_bias)
            t_mask = text.mask
            if text_index is not None:
                t, t_mask = t.index_select(0, text_index), t_mask.index_select(0, text_index)
            v = v.index_select(0, image_index)
            t_bias, v_bias = attention_bias(t_mask), attention_bias(v_mask)
            for index in range(first_cross, len(self.layers)):
                if str(index) in self.cross_layers:
                    cross = self.cross_layers[str(index)]
                    t, v = cross(t, v, v_bias), cross(v, t, t_bias)
                layer = self.layers[index]
                v, t = layer(v, v_bias), layer(t, t_bias)
        pooled = torch.cat([self.text_pooler(t, t_mask), self.image_pooler(v, v_mask)], dim=-1)
        return FusedFeatures(text=t, image=v, text_mask=t_mask, image_mask=v_mask, pooled=pooled)

    def text_itc_embeddings(self, text: TextFeatures) -> Tensor:
        """The stack on the texts alone; L2-normalised projections of the [CLS] (or mean) states."""
        pooled = pool_tokens(self.run_stack(text.hidden, text.mask), text.mask, self.config.pooling)
        return F.normalize(self.heads.itc_text(pooled), dim=-1)

    def image_itc_embeddings(self, image: ImageFeatures) -> Tensor:
        pooled = pool_tokens(self.run_stack(image.hidden, image.mask), image.mask, self.config.pooling)
        return F.normalize(self.heads.itc_image(pooled), dim=-1)

    def text_language_model(self) -> TextLanguageModel:
        """The shared stack in text-only mode + the MLM head (modules shared with this model)."""
        return TextLanguageModel(StackTextEncoder(self.text_embeddings, self.layers), self.heads.mlm_head)

    def visual_targets(self, visual: VisualInput) -> Tensor:
        """Patches: the pixels of each patch flattened; regions: the feature vector; zeros for [CLS]."""
        if self.config.visual_input == "patches":
            pixels = require_pixels(visual, "SemVLP (model.visual_input=patches)")
            return with_cls_row(patchify(pixels, self.config.vision.patch_size))
        if visual.region_features is None:
            raise ValueError("SemVLP (model.visual_input=regions) needs VisualInput.region_features")
        return with_cls_row(visual.region_features)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return group_parameters(
            {
                "encoders": [self.text_embeddings, self.visual_embeddings],
                "fusion": [self.layers, self.cross_layers, self.text_pooler, self.image_pooler],
                "heads": [self.heads],
            }
        )

    def parameter_components(self) -> dict[str, list]:
        return {
            "text embeddings": [self.text_embeddings],
            "visual embeddings": [self.visual_embeddings],
            "shared stack": [self.layers, self.text_pooler, self.image_pooler],
            "cross-attention": [self.cross_layers],
            "heads": [self.heads],
        }


_BERT_LAYER = {
    "attention.self.query": "self_attn.attn.query",
    "attention.self.key": "self_attn.attn.key",
    "attention.self.value": "self_attn.attn.value",
    "attention.output.dense": "self_attn.attn.out",
    "attention.output.LayerNorm": "self_attn.norm",
    "intermediate.dense": "ffn.up",
    "output.dense": "ffn.down",
    "output.LayerNorm": "ffn.norm",
}
_BERT_TOP = {
    "embeddings.word_embeddings": "text_embeddings.word_embeddings",
    "embeddings.position_embeddings": "text_embeddings.position_embeddings",
    "embeddings.token_type_embeddings": "text_embeddings.token_type_embeddings",
    "embeddings.LayerNorm": "text_embeddings.norm",
    "pooler.dense": "text_pooler.dense",
}
_LAYER_KEY = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias|gamma|beta)$")
_TOP_KEY = re.compile(r"(.+)\.(weight|bias|gamma|beta)$")


def bert_to_stack_state(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF ``BertModel`` state (no ``bert.`` prefix) -> SemVLP names; unknown keys are dropped."""
    rename = {"gamma": "weight", "beta": "bias"}
    out = {}
    for key, value in tensors.items():
        if match := _LAYER_KEY.match(key):
            index, module, param = match.groups()
            if module in _BERT_LAYER:
                out[f"layers.{index}.{_BERT_LAYER[module]}.{rename.get(param, param)}"] = value
        elif (match := _TOP_KEY.match(key)) and match.group(1) in _BERT_TOP:
            out[f"{_BERT_TOP[match.group(1)]}.{rename.get(match.group(2), match.group(2))}"] = value
    return out
