"""``ModelConfig`` fields from the encoders actually built (a pretrained directory decides their size)."""

from __future__ import annotations

from vlp.config import ModelConfig


def sync_text_fields(config: ModelConfig, hf) -> None:
    """Make ``config.text`` describe the encoder actually built (a pretrained directory decides)."""
    text = config.text
    text.kind = hf.model_type
    text.vocab_size = hf.vocab_size
    text.hidden_size = hf.hidden_size
    text.num_layers = hf.num_hidden_layers
    text.num_heads = hf.num_attention_heads
    text.intermediate_size = hf.intermediate_size
    offset = 2 if hf.model_type == "roberta" else 0
    text.max_position_embeddings = hf.max_position_embeddings - offset


def sync_vision_fields(config: ModelConfig, hf) -> None:
    """Make ``config.vision`` describe the vision encoder actually built."""
    vision = config.vision
    kinds = {"vit": "vit", "clip_vision_model": "clip", "dinov2": "dinov2"}
    vision.kind = kinds[hf.model_type]
    vision.hidden_size = hf.hidden_size
    vision.num_layers = hf.num_hidden_layers
    vision.num_heads = hf.num_attention_heads
    vision.image_size = hf.image_size
    vision.patch_size = hf.patch_size
    if hf.model_type == "dinov2":
        vision.intermediate_size = int(hf.hidden_size * hf.mlp_ratio)
    else:
        vision.intermediate_size = hf.intermediate_size
