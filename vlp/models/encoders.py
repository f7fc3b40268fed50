"""Unimodal encoders: Hugging Face BERT/RoBERTa and ViT/CLIP-vision/DINOv2, from a local directory
or built from the config fields (training from scratch).

Nothing here touches the network: pretrained weights come from a local directory only, and a missing
directory or weight file is a :class:`FileNotFoundError` naming it. When a directory is given it
decides the architecture (the config fields are ignored, except ``image_size``, which position
embeddings are interpolated to, and ``patch_size``, which must match).

Every builder takes ``hf_config``: a saved ``PretrainedConfig.to_dict()``. With it the encoder is
rebuilt from that dict alone, without reading any directory (how :mod:`vlp.models.checkpoint`
restores a model). Builders also work inside ``torch.device("meta")`` for parameter counting.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.config import TextEncoderConfig, VisionEncoderConfig
from vlp.models import hf_attention
from vlp.models.heads import MLMHead
from vlp.weights import read_weights

log = logging.getLogger(__name__)

TEXT_KINDS = ("bert", "roberta")
VISION_KINDS = {"vit": "vit", "clip": "clip_vision_model", "dinov2": "dinov2"}  # config kind -> HF model_type
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


# --------------------------------------------------------------------------- files


def require_dir(path: str, what: str) -> Path:
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"{what}: pretrained directory not found: {directory}")
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"{what}: {directory / 'config.json'} not found (a Hugging Face model directory)"
        )
    return directory


def weight_file(directory: Path, what: str) -> Path:
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{what}: no weights in {directory} (expected one of {', '.join(WEIGHT_FILES)})")


def read_tensors(directory: Path, prefixes: tuple[str, ...], what: str) -> dict[str, Tensor]:
    """The tensors of a HF checkpoint directory whose names start with one of ``prefixes``."""
    return read_weights(weight_file(directory, what), prefixes, what=f"{what} weights")


def hf_config_from_dict(data: dict[str, Any]):
    """Rebuild a Hugging Face config from ``to_dict()`` output (BERT, RoBERTa, ViT, CLIP vision, DINOv2)."""
    from transformers import BertConfig, CLIPVisionConfig, Dinov2Config, RobertaConfig, ViTConfig

    classes = {
        "bert": BertConfig,
        "roberta": RobertaConfig,
        "vit": ViTConfig,
        "clip_vision_model": CLIPVisionConfig,
        "dinov2": Dinov2Config,
    }
    model_type = data.get("model_type")
    if model_type not in classes:
        raise ValueError(f"unsupported encoder model_type {model_type!r}; supported: {', '.join(classes)}")
    return classes[model_type].from_dict(dict(data))


def _load_dir_config(directory: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(directory), local_files_only=True)


class HFEncoder(nn.Module):
    """Wraps a Hugging Face model (``self.model``) and exposes its config and width."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def hf_config(self):
        return self.model.config

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size


# --------------------------------------------------------------------------- text


class TextEncoder(HFEncoder):
    """A HF BERT/RoBERTa body (no pooler): ``(input_ids, attention_mask) -> [B, L, H]``."""

    @property
    def word_embeddings(self) -> nn.Parameter:
        return self.model.get_input_embeddings().weight

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask.long()).last_hidden_state


class TextLanguageModel(nn.Module):
    """A text-only language model with an MLM head; its modules are shared with the owning model."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, input_ids: Tensor, attention_mask: Tensor, positions: Tensor) -> Tensor:
        """Logits [M, V] at the M True ``positions`` ([B, L] bool)."""
        return self.head(self.encoder(input_ids, attention_mask)[positions])


def _text_config_from_fields(cfg: TextEncoderConfig, vocab_size: int):
    from transformers import BertConfig, RobertaConfig

    if cfg.kind not in TEXT_KINDS:
        raise ValueError(f"model.text.kind: expected one of {', '.join(TEXT_KINDS)}, got {cfg.kind!r}")
    if vocab_size <= 0:
        raise ValueError(
            "model.text.vocab_size is 0 and no tokenizer size was given: set model.text.vocab_size, "
            "pass vocab_size (the tokenizer's length), or use a pretrained text directory"
        )
    common = dict(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
    )
    if cfg.kind == "roberta":
        # RoBERTa numbers positions from padding_idx + 1, hence two extra rows.
        return RobertaConfig(
            max_position_embeddings=cfg.max_position_embeddings + 2,
            type_vocab_size=1,
            layer_norm_eps=1e-5,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            **common,
        )
    return BertConfig(max_position_embeddings=cfg.max_position_embeddings, **common)


def mlm_head_state(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map BertForMaskedLM (``cls.predictions.*``) / RobertaForMaskedLM (``lm_head.*``) keys onto MLMHead."""
    names = {
        "cls.predictions.transform.dense.weight": "transform.weight",
        "cls.predictions.transform.dense.bias": "transform.bias",
        "cls.predictions.transform.LayerNorm.weight": "norm.weight",
        "cls.predictions.transform.LayerNorm.bias": "norm.bias",
        "cls.predictions.transform.LayerNorm.gamma": "norm.weight",
        "cls.predictions.transform.LayerNorm.beta": "norm.bias",
        "cls.predictions.bias": "bias",
        "cls.predictions.decoder.weight": "decoder.weight",
        "lm_head.dense.weight": "transform.weight",
        "lm_head.dense.bias": "transform.bias",
        "lm_head.layer_norm.weight": "norm.weight",
        "lm_head.layer_norm.bias": "norm.bias",
        "lm_head.bias": "bias",
        "lm_head.decoder.weight": "decoder.weight",
    }
    return {names[k]: v for k, v in tensors.items() if k in names}


def _load_mlm_head(head: MLMHead, directory: Path, tied: bool) -> bool:
    """Load the directory's MLM head weights into ``head``; False when the directory has none."""
    state = mlm_head_state(read_tensors(directory, ("cls.predictions.", "lm_head."), "model.text.pretrained"))
    needed = {"transform.weight", "transform.bias", "norm.weight", "norm.bias", "bias"}
    if not needed <= state.keys():
        return False
    if tied:
        state.pop("decoder.weight", None)  # the decoder is the (already loaded) word-embedding matrix
    vocab = head.bias.shape[0]
    if state["bias"].shape[0] < vocab:  # embeddings were resized for a larger tokenizer
        state["bias"] = torch.cat([state["bias"], state["bias"].new_zeros(vocab - state["bias"].shape[0])])
    head.load_state_dict(state, strict=False)
    return True


def build_text_encoder(
    cfg: TextEncoderConfig,
    vocab_size: int = 0,
    *,
    load_weights: bool = True,
    hf_config: dict[str, Any] | None = None,
) -> tuple[TextEncoder, MLMHead, list[str]]:
    """The text encoder, its own MLM head (decoder tied to the word embeddings) and a load report.

    ``load_weights=False``: build the architecture only (from the directory's config.json when it exists,
    else from the fields); used for meta-device parameter counting.
    """
    from transformers import AutoModel

    report: list[str] = []
    directory = None
    if hf_config is not None:
        config = hf_config_from_dict(hf_config)
    elif cfg.pretrained and (load_weights or Path(cfg.pretrained).is_dir()):
        directory = require_dir(cfg.pretrained, "model.text.pretrained")
        config = _load_dir_config(directory)
        if config.model_type not in TEXT_KINDS:
            raise ValueError(
                f"model.text.pretrained: {directory} holds a {config.model_type!r} model; "
                f"expected one of {', '.join(TEXT_KINDS)}"
            )
    else:
        if cfg.pretrained:
            report.append(f"text encoder: {cfg.pretrained} not found; architecture from the config fields")
        config = _text_config_from_fields(cfg, vocab_size or cfg.vocab_size)

    init = dict(attn_implementation=hf_attention.register(), add_pooling_layer=False)
    if directory is not None and load_weights:
        weight_file(directory, "model.text.pretrained")
        model = AutoModel.from_pretrained(str(directory), local_files_only=True, **init)
        report.append(f"text encoder: loaded {config.model_type} weights from {directory}")
    else:
        model = AutoModel.from_config(config, **init)
    if vocab_size > model.config.vocab_size:
        report.append(f"text encoder: word embeddings resized {model.config.vocab_size} -> {vocab_size}")
        model.resize_token_embeddings(vocab_size)

    encoder = TextEncoder(model)
    head = MLMHead(
        encoder.hidden_size,
        model.config.vocab_size,
        tied_weight=encoder.word_embeddings,
        eps=model.config.layer_norm_eps,
    )
    if directory is not None and load_weights:
        if _load_mlm_head(head, directory, tied=True):
            report.append(f"text MLM head: loaded from {directory}")
        else:
            report.append(
                f"text MLM head: {directory} has no MLM head weights; initialised fresh "
                "(decoder tied to the word embeddings)"
            )
    return encoder, head, report


# --------------------------------------------------------------------------- vision


def resize_position_embeddings(pos: Tensor, new_grid: int) -> Tensor:
    """Bicubic resize of ViT position embeddings ``[(1,) 1 + g*g, D]`` (first row: [CLS]) to ``new_grid``."""
    batched = pos.dim() == 3
    table = pos[0] if batched else pos
    cls_row, grid = table[:1], table[1:]
    old_grid = math.isqrt(grid.shape[0])
    if old_grid * old_grid != grid.shape[0]:
        raise ValueError(f"position embeddings of {grid.shape[0]} patches do not form a square grid")
    grid = grid.reshape(1, old_grid, old_grid, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid * new_grid, -1).to(table.dtype)
    out = torch.cat([cls_row, grid], dim=0)
    return out[None] if batched else out


_POSITION_KEYS = {
    "vit": "embeddings.position_embeddings",
    "dinov2": "embeddings.position_embeddings",
    "clip_vision_model": "embeddings.position_embedding.weight",
}


class VisionEncoder(HFEncoder):
    """A ViT-family image encoder: ``pixel_values [I,3,H,W] -> [I, 1 + N, H]`` (first token: [CLS]).

    ``patch_mask`` [I, N] bool replaces those patch embeddings by a learned [MASK] embedding before the
    transformer (ViT/DINOv2: their own ``mask_token``; CLIP: one kept here). Output states are after the
    final LayerNorm (CLIP: ``post_layernorm`` applied to every token, as METER does).
    """

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self.kind = model.config.model_type
        if self.kind == "clip_vision_model":
            self.mask_token = nn.Parameter(torch.zeros(model.config.hidden_size))
            nn.init.normal_(self.mask_token, std=0.02)

    @property
    def patch_size(self) -> int:
        return self.model.config.patch_size

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def forward(self, pixel_values: Tensor, patch_mask: Tensor | None = None) -> Tensor:
        height, width = pixel_values.shape[-2:]
        if (height, width) != (self.image_size, self.image_size):
            raise ValueError(
                f"pixel_values are {height}x{width} but the vision encoder expects "
                f"{self.image_size}x{self.image_size} (model.vision.image_size / data.image_size)"
            )
        if self.kind == "clip_vision_model":
            return self._clip_forward(pixel_values, patch_mask)
        return self.model(pixel_values=pixel_values, bool_masked_pos=patch_mask).last_hidden_state

    def _clip_forward(self, pixel_values: Tensor, patch_mask: Tensor | None) -> Tensor:
        emb = self.model.embeddings
        dtype = emb.patch_embedding.weight.dtype
        patches = emb.patch_embedding(pixel_values.to(dtype)).flatten(2).transpose(1, 2)
        if patch_mask is not None:
            patches = torch.where(patch_mask[..., None], self.mask_token.to(dtype), patches)
        cls_token = emb.class_embedding.to(dtype).expand(patches.shape[0], 1, -1)
        x = torch.cat([cls_token, patches], dim=1) + emb.position_embedding.weight
        x = self.model.pre_layrnorm(x)
        x = self.model.encoder(inputs_embeds=x).last_hidden_state
        return self.model.post_layernorm(x)


def _vision_config_from_fields(cfg: VisionEncoderConfig):
    from transformers import CLIPVisionConfig, Dinov2Config, ViTConfig

    if cfg.kind not in VISION_KINDS:
        raise ValueError(f"model.vision.kind: expected one of {', '.join(VISION_KINDS)}, got {cfg.kind!r}")
    common = dict(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
    )
    if cfg.kind == "clip":
        return CLIPVisionConfig(
            intermediate_size=cfg.intermediate_size, attention_dropout=cfg.dropout, **common
        )
    if cfg.kind == "dinov2":
        if cfg.intermediate_size % cfg.hidden_size:
            raise ValueError(
                f"model.vision.intermediate_size {cfg.intermediate_size} must be a multiple of hidden_size "
                f"{cfg.hidden_size} for DINOv2 (it takes an integer mlp_ratio)"
            )
        return Dinov2Config(
            mlp_ratio=cfg.intermediate_size // cfg.hidden_size,
            hidden_dropout_prob=cfg.dropout,
            attention_probs_dropout_prob=cfg.dropout,
            **common,
        )
    return ViTConfig(
        intermediate_size=cfg.intermediate_size,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        **common,
    )


def _vision_model_class(model_type: str):
    from transformers import CLIPVisionModel, Dinov2Model, ViTModel

    return {"vit": ViTModel, "clip_vision_model": CLIPVisionModel, "dinov2": Dinov2Model}[model_type]


def _vision_init_kwargs(model_type: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"attn_implementation": hf_attention.register()}
    if model_type == "vit":
        kwargs.update(add_pooling_layer=False, use_mask_token=True)
    return kwargs


def build_vision_encoder(
    cfg: VisionEncoderConfig,
    *,
    load_weights: bool = True,
    hf_config: dict[str, Any] | None = None,
) -> tuple[VisionEncoder, list[str]]:
    """The image encoder at ``cfg.image_size`` and a load report (see :func:`build_text_encoder`)."""
    report: list[str] = []
    directory = None
    if hf_config is not None:
        config = hf_config_from_dict(hf_config)
    elif cfg.pretrained and (load_weights or Path(cfg.pretrained).is_dir()):
        directory = require_dir(cfg.pretrained, "model.vision.pretrained")
        config = _load_dir_config(directory)
        if config.model_type == "clip":  # a full CLIP directory: take its vision tower
            config = config.vision_config
        if config.model_type not in _POSITION_KEYS:
            raise ValueError(
                f"model.vision.pretrained: {directory} holds a {config.model_type!r} model; "
                "expected a ViT, CLIP (vision) or DINOv2 directory"
            )
        if config.patch_size != cfg.patch_size:
            raise ValueError(
                f"model.vision.patch_size is {cfg.patch_size} but {directory} was trained with patch size "
                f"{config.patch_size}; set model.vision.patch_size={config.patch_size}"
            )
    else:
        if cfg.pretrained:
            report.append(f"vision encoder: {cfg.pretrained} not found; architecture from the config fields")
        config = _vision_config_from_fields(cfg)
    target = cfg.image_size if hf_config is None else config.image_size
    if target % config.patch_size:
        raise ValueError(
            f"model.vision.image_size {target} is not a multiple of the patch size {config.patch_size}"
        )

    model_cls = _vision_model_class(config.model_type)
    kwargs = _vision_init_kwargs(config.model_type)
    if directory is not None and load_weights:
        weight_file(directory, "model.vision.pretrained")
        model = model_cls.from_pretrained(str(directory), local_files_only=True, **kwargs)
        report.append(f"vision encoder: loaded {config.model_type} weights from {directory}")
        if model.config.image_size != target:
            model = _resize_vision_model(model, target, kwargs)
            report.append(
                f"vision encoder: position embeddings interpolated (bicubic) from "
                f"{config.image_size}px to {target}px"
            )
    else:
        config = copy.deepcopy(config)
        config.image_size = target
        model = model_cls._from_config(config, **kwargs)
    return VisionEncoder(model), report


def _resize_vision_model(model: nn.Module, image_size: int, kwargs: dict[str, Any]) -> nn.Module:
    """The same weights in a model built for ``image_size``, position embeddings interpolated."""
    config = copy.deepcopy(model.config)
    config.image_size = image_size
    resized = type(model)._from_config(config, **kwargs)
    state = model.state_dict()
    key = _POSITION_KEYS[config.model_type]
    state[key] = resize_position_embeddings(state[key], image_size // config.patch_size)
    resized.load_state_dict(state)
    return resized.train(model.training)
