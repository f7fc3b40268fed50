"""Encoders: HF text/vision models from local directories (tiny random ones saved to tmp_path), from-scratch
builds, position-embedding interpolation, masking, and the real MiniLM-L6 weights."""

from __future__ import annotations

import pytest
import torch

from vlp.config import ModelConfig, TextEncoderConfig, VisionEncoderConfig
from vlp.models import build_model
from vlp.models.encoders import build_text_encoder, build_vision_encoder, resize_position_embeddings

TINY_TEXT = dict(
    vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
)
TINY_VISION = dict(
    hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, patch_size=8
)


def _ids(batch: int = 2, length: int = 7, vocab: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(3, vocab, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, 5:] = False
    return ids, mask


# --------------------------------------------------------------------------- text


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_text_encoder_from_masked_lm_dir_loads_body_and_head(tmp_path, kind):
    from transformers import BertConfig, BertForMaskedLM, RobertaConfig, RobertaForMaskedLM

    if kind == "bert":
        hf = BertForMaskedLM(BertConfig(**TINY_TEXT)).eval()
        head_dense = hf.cls.predictions.transform.dense.weight
    else:
        hf = RobertaForMaskedLM(RobertaConfig(max_position_embeddings=20, **TINY_TEXT)).eval()
        head_dense = hf.lm_head.dense.weight
    with torch.no_grad():
        head_dense.normal_()  # distinguishable from a fresh head
    hf.save_pretrained(tmp_path / kind)

    encoder, head, report = build_text_encoder(TextEncoderConfig(pretrained=str(tmp_path / kind)))
    ids, mask = _ids()
    body = hf.bert if kind == "bert" else hf.roberta
    with torch.no_grad():
        expected = body(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        ours = encoder.eval()(ids, mask)
        positions = mask.clone()
        expected_logits = hf(input_ids=ids, attention_mask=mask.long()).logits[positions]
        ours_logits = head(ours[positions])
    assert torch.allclose(ours, expected, atol=1e-5)
    assert torch.allclose(ours_logits, expected_logits, atol=1e-4)
    assert head.decoder.weight is encoder.word_embeddings
    assert any("MLM head: loaded" in line for line in report)
    assert encoder.model.config._attn_implementation == "vlp"  # SDPA here (fp32); see test_precision.py


def test_text_encoder_without_head_weights_reports_fresh_tied_head(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(**TINY_TEXT)).save_pretrained(tmp_path / "bert")
    encoder, head, report = build_text_encoder(TextEncoderConfig(pretrained=str(tmp_path / "bert")))
    assert any("no MLM head weights; initialised fresh" in line for line in report)
    assert head.decoder.weight is encoder.word_embeddings
    assert torch.equal(head.bias, torch.zeros(60))


def test_text_encoder_grows_embeddings_for_a_larger_tokenizer(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    BertForMaskedLM(BertConfig(**TINY_TEXT)).save_pretrained(tmp_path / "bert")
    encoder, head, report = build_text_encoder(
        TextEncoderConfig(pretrained=str(tmp_path / "bert")), vocab_size=64
    )
    assert encoder.word_embeddings.shape == (64, 16)
    assert head(torch.randn(3, 16)).shape == (3, 64)
    assert any("resized 60 -> 64" in line for line in report)


def test_text_encoder_from_fields_needs_a_vocab_size():
    with pytest.raises(ValueError, match="vocab_size"):
        build_text_encoder(TextEncoderConfig())
    encoder, head, _ = build_text_encoder(TextEncoderConfig(kind="roberta", hidden_size=32), vocab_size=50)
    assert encoder.model.config.model_type == "roberta"
    assert encoder(*_ids(vocab=50)).shape == (2, 7, 32)


def test_missing_pretrained_directory_and_weights_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_text_encoder(TextEncoderConfig(pretrained=str(tmp_path / "nowhere")))
    from transformers import BertConfig

    BertConfig(**TINY_TEXT).save_pretrained(tmp_path / "config-only")
    with pytest.raises(FileNotFoundError, match="no weights in .*config-only"):
        build_text_encoder(TextEncoderConfig(pretrained=str(tmp_path / "config-only")))
    with pytest.raises(FileNotFoundError, match="vision-nowhere"):
        build_vision_encoder(VisionEncoderConfig(pretrained=str(tmp_path / "vision-nowhere")))


def test_minilm_as_vilta_text_encoder_matches_bert_model(minilm_path):
    from transformers import BertModel

    cfg = ModelConfig(text=TextEncoderConfig(pretrained=minilm_path), hidden_size=32, num_heads=2)
    model = build_model(cfg).eval()
    reference = BertModel.from_pretrained(minilm_path, add_pooling_layer=False).eval()
    ids = torch.tensor([[101, 1037, 4937, 2006, 1996, 13523, 102], [101, 1037, 3899, 102, 0, 0, 0]])
    mask = ids != 0
    with torch.no_grad():
        ours = model.text_encoder(ids, mask)
        expected = reference(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert ours.shape == (2, 7, 384)
    assert torch.allclose(ours[mask], expected[mask], atol=1e-5)
    assert model.vocab_size == 30522 and model.config.text.hidden_size == 384
    assert any("no MLM head weights" in line for line in model.load_report)


# --------------------------------------------------------------------------- vision


def _save_vision(tmp_path, kind: str, image_size: int = 32):
    from transformers import CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model, ViTConfig, ViTModel

    if kind == "vit":
        model = ViTModel(ViTConfig(image_size=image_size, **TINY_VISION), add_pooling_layer=False)
    elif kind == "dinov2":
        cfg = {k: v for k, v in TINY_VISION.items() if k != "intermediate_size"}
        model = Dinov2Model(Dinov2Config(image_size=image_size, mlp_ratio=2, **cfg))
    else:  # a full CLIP directory: the vision tower is taken from it
        text = dict(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
        full = CLIPModel(
            CLIPConfig(text_config=text, vision_config=dict(image_size=image_size, **TINY_VISION))
        )
        full.save_pretrained(tmp_path / kind)
        return full.vision_model.eval()
    model.save_pretrained(tmp_path / kind)
    return model.eval()


def _reference_states(kind: str, reference, pixels: torch.Tensor, interpolate: bool) -> torch.Tensor:
    if kind == "clip":
        out = reference(pixel_values=pixels, interpolate_pos_encoding=interpolate).last_hidden_state
        return reference.post_layernorm(out)
    if kind == "vit":
        return reference(pixel_values=pixels, interpolate_pos_encoding=interpolate).last_hidden_state
    return reference(pixel_values=pixels).last_hidden_state  # DINOv2 always interpolates


@pytest.mark.parametrize("kind", ["vit", "clip", "dinov2"])
@pytest.mark.parametrize("image_size", [32, 48])
def test_vision_encoder_matches_hf_with_interpolated_positions(tmp_path, kind, image_size):
    reference = _save_vision(tmp_path, kind, image_size=32)
    cfg = VisionEncoderConfig(pretrained=str(tmp_path / kind), image_size=image_size, patch_size=8)
    encoder, report = build_vision_encoder(cfg)
    encoder.eval()
    pixels = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        ours = encoder(pixels)
        expected = _reference_states(kind, reference, pixels, interpolate=image_size != 32)
    assert ours.shape == (2, 1 + (image_size // 8) ** 2, 16)
    assert torch.allclose(ours, expected, atol=1e-4)
    assert encoder.image_size == image_size
    assert any("interpolated" in line for line in report) == (image_size != 32)


def test_vision_patch_size_must_match_the_checkpoint(tmp_path):
    _save_vision(tmp_path, "vit")
    with pytest.raises(ValueError, match="patch_size=8"):
        build_vision_encoder(
            VisionEncoderConfig(pretrained=str(tmp_path / "vit"), image_size=32, patch_size=16)
        )


@pytest.mark.parametrize("kind", ["vit", "clip", "dinov2"])
def test_masked_patches_lose_their_pixels(kind):
    cfg = VisionEncoderConfig(
        kind=kind, image_size=32, patch_size=8, hidden_size=16, num_heads=2, num_layers=1
    )
    encoder, _ = build_vision_encoder(cfg)
    encoder.eval()
    pixels = torch.randn(2, 3, 32, 32)
    patch_mask = torch.zeros(2, 16, dtype=torch.bool)
    patch_mask[:, 5] = True  # patch 5 = row 1, column 1 -> pixels [8:16, 8:16]
    changed = pixels.clone()
    changed[:, :, 8:16, 8:16] += 3.0
    with torch.no_grad():
        masked = encoder(pixels, patch_mask)
        assert torch.allclose(masked, encoder(changed, patch_mask), atol=1e-5)
        assert not torch.allclose(encoder(pixels), encoder(changed), atol=1e-3)
        assert torch.allclose(encoder(pixels, torch.zeros_like(patch_mask)), encoder(pixels), atol=1e-6)


def test_vision_encoder_rejects_wrong_image_size():
    encoder, _ = build_vision_encoder(
        VisionEncoderConfig(image_size=32, patch_size=8, hidden_size=16, num_heads=2)
    )
    with pytest.raises(ValueError, match="expects 32x32"):
        encoder(torch.randn(1, 3, 40, 40))


def test_resize_position_embeddings_keeps_cls_and_constant_fields():
    pos = torch.cat([torch.full((1, 4), 7.0), torch.full((9, 4), 2.0)])[None]  # [1, 1 + 3*3, 4]
    out = resize_position_embeddings(pos, 5)
    assert out.shape == (1, 26, 4)
    assert torch.equal(out[0, 0], torch.full((4,), 7.0))
    assert torch.allclose(out[0, 1:], torch.full((25, 4), 2.0), atol=1e-5)
    assert torch.equal(resize_position_embeddings(pos[0], 3), pos[0])
