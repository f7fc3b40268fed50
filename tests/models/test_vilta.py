"""ViLTA: the model protocol on a tiny from-scratch config, heads, padding invariance, parameter groups,
the meta-device base preset and `vlp model info`."""

from __future__ import annotations

import copy

import pytest
import torch

from vlp.cli import main
from vlp.config import ModelConfig, TextEncoderConfig, VisionEncoderConfig, load_config
from vlp.data.batch import VisualInput
from vlp.models import build_model, parameter_table
from vlp.models.outputs import TextFeatures
from vlp.models.protocol import VisionLanguageModel

VOCAB = 50


def tiny_config(**overrides) -> ModelConfig:
    cfg = ModelConfig(
        arch="vilta",
        text=TextEncoderConfig(
            hidden_size=24, num_layers=1, num_heads=2, intermediate_size=48, max_position_embeddings=16
        ),
        vision=VisionEncoderConfig(image_size=16, patch_size=8, hidden_size=20, num_layers=1, num_heads=2),
        hidden_size=32,
        num_heads=4,
        intermediate_size=64,
        num_fusion_layers=2,
        itc_dim=8,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture
def model():
    return build_model(tiny_config(num_answers=5, num_region_labels=7), VOCAB).eval()


def _text(batch: int = 4, length: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(3, VOCAB, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, 4:] = False
    mask[3, 2:] = False
    return ids, mask


def _images(count: int = 2) -> VisualInput:
    return VisualInput(pixel_values=torch.randn(count, 3, 16, 16))


def test_both_architectures_declare_the_model_protocol(model):
    from vlp.models.semvlp import SemVLP

    assert isinstance(model, VisionLanguageModel) and issubclass(SemVLP, VisionLanguageModel)
    assert not hasattr(model, "mode")  # one fusion mode: `fuse` ignores its `mode` argument
    with pytest.raises(TypeError, match="abstract"):
        VisionLanguageModel()


def test_protocol_shapes(model):
    ids, mask = _text()
    visual = _images()
    image_index = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        text = model.embed_text(ids, mask)
        image = model.embed_image(visual)
        fused = model.fuse(text, image, image_index)
        text_emb, image_emb = model.contrastive_embeddings(text, image)
        positions = torch.zeros(4, 6, dtype=torch.bool)
        positions[0, 1] = positions[2, 3] = positions[2, 4] = True
        assert text.hidden.shape == (4, 6, 32) and image.hidden.shape == (2, 5, 32)
        assert image.mask.all() and image.mask.shape == (2, 5)
        assert fused.text.shape == (4, 6, 32) and fused.image.shape == (4, 5, 32)
        assert fused.pooled.shape == (4, 64)
        assert text_emb.shape == (4, 8) and image_emb.shape == (2, 8)
        assert torch.allclose(text_emb.norm(dim=-1), torch.ones(4)) and torch.allclose(
            image_emb.norm(dim=-1), torch.ones(2)
        )
        assert model.mlm_logits(fused, positions).shape == (3, VOCAB)
        assert model.text_mlm_logits(ids, mask, positions).shape == (3, VOCAB)
        assert model.visual_targets(visual).shape == (2, 5, 3 * 8 * 8)
        heads = model.heads
        assert heads.itm(fused.pooled).shape == (4, 2)
        assert torch.equal(heads.retrieval_score(fused.pooled), heads.itm(fused.pooled)[:, 1])
        assert heads.mvm_regress(fused.image[:, 1]).shape == (4, 192)
        assert heads.mvm_classify(fused.image[:, 1]).shape == (4, 7)
        assert heads.qa(fused.pooled).shape == (4, 5)


def test_absent_heads_say_how_to_enable_them():
    model = build_model(tiny_config(), VOCAB)
    with pytest.raises(RuntimeError, match="num_answers"):
        model.heads.qa(torch.zeros(1, 64))


def test_mlm_logits_are_the_head_at_selected_positions_only(model):
    ids, mask = _text()
    positions = mask & (torch.rand(4, 6) < 0.5)
    positions[0, 0] = True
    with torch.no_grad():
        fused = model.fuse(
            model.embed_text(ids, mask), model.embed_image(_images()), torch.tensor([0, 1, 0, 1])
        )
        full = model.heads.mlm(fused.text)  # [B, L, V], for comparison only
        assert torch.allclose(model.mlm_logits(fused, positions), full[positions], atol=1e-6)


def test_padding_does_not_change_real_positions(model):
    ids, mask = _text()
    padded_ids = torch.cat([ids, torch.zeros(4, 3, dtype=torch.long)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(4, 3, dtype=torch.bool)], dim=1)
    visual, index = _images(), torch.tensor([1, 0, 1, 0])
    with torch.no_grad():
        image = model.embed_image(visual)
        short = model.fuse(model.embed_text(ids, mask), image, index)
        long = model.fuse(model.embed_text(padded_ids, padded_mask), image, index)
        short_text_emb, _ = model.contrastive_embeddings(model.embed_text(ids, mask), image)
        long_text_emb, _ = model.contrastive_embeddings(model.embed_text(padded_ids, padded_mask), image)
    assert torch.allclose(long.text[:, :6][mask], short.text[mask], atol=1e-5)
    assert torch.allclose(long.image, short.image, atol=1e-5)
    assert torch.allclose(long.pooled, short.pooled, atol=1e-5)
    assert torch.allclose(long_text_emb, short_text_emb, atol=1e-5)
    positions = mask.clone()
    assert torch.allclose(
        model.text_mlm_logits(
            padded_ids, padded_mask, torch.cat([positions, torch.zeros(4, 3, dtype=torch.bool)], 1)
        ),
        model.text_mlm_logits(ids, mask, positions),
        atol=1e-4,
    )


def test_fuse_gathers_images_encoded_once(model):
    ids, mask = _text()
    visual = _images(3)
    index = torch.tensor([2, 0, 2, 1])
    with torch.no_grad():
        text = model.embed_text(ids, mask)
        gathered = model.fuse(text, model.embed_image(visual), index)
        one_per_text = model.fuse(
            text, model.embed_image(VisualInput(pixel_values=visual.pixel_values[index])), torch.arange(4)
        )
    assert torch.allclose(gathered.pooled, one_per_text.pooled, atol=1e-5)
    assert torch.allclose(gathered.text, one_per_text.text, atol=1e-5)


def test_fuse_with_a_text_index_pairs_the_indexed_texts(model):
    ids, mask = _text()
    visual = _images(3)
    text_index, image_index = torch.tensor([0, 3, 0, 1, 3]), torch.tensor([2, 0, 1, 1, 2])
    with torch.no_grad():
        text, images = model.embed_text(ids, mask), model.embed_image(visual)
        once = model.fuse(text, images, image_index, text_index=text_index)
        rows = model.fuse(text.rows(text_index), images, image_index)
    assert torch.equal(once.pooled, rows.pooled) and torch.equal(once.text_mask, rows.text_mask)


def test_both_streams_interact(model):
    ids, mask = _text()
    visual = _images(2)
    with torch.no_grad():
        text = model.embed_text(ids, mask)
        image = model.embed_image(visual)
        a = model.fuse(text, image, torch.tensor([0, 0, 0, 0]))
        b = model.fuse(text, image, torch.tensor([1, 1, 1, 1]))
        other_text = TextFeatures(hidden=text.hidden.flip(0), mask=text.mask.flip(0))
        c = model.fuse(other_text, image, torch.tensor([0, 0, 0, 0]))
    assert not torch.allclose(a.text, b.text, atol=1e-4)  # text reads the image
    assert not torch.allclose(a.image[0], c.image[0], atol=1e-4)  # image reads the text


def test_visual_mask_and_targets():
    model = build_model(tiny_config(), VOCAB).eval()
    pixels = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16)
    targets = model.visual_targets(VisualInput(pixel_values=pixels))
    assert torch.equal(targets[:, 0], torch.zeros(2, 192))
    # token 2 = patch 1 = row 0, column 1: pixels [:, 0:8, 8:16] of each image, channel-major
    assert torch.equal(targets[1, 2], pixels[1, :, 0:8, 8:16].reshape(-1))
    visual_mask = torch.zeros(2, 5, dtype=torch.bool)
    visual_mask[:, 2] = True
    changed = pixels.clone()
    changed[:, :, 0:8, 8:16] = 0.0
    with torch.no_grad():
        a = model.embed_image(VisualInput(pixel_values=pixels), visual_mask).hidden
        b = model.embed_image(VisualInput(pixel_values=changed), visual_mask).hidden
    assert torch.allclose(a, b, atol=1e-5)
    bad = visual_mask.clone()
    bad[0, 0] = True
    with pytest.raises(ValueError, match="CLS"):
        model.embed_image(VisualInput(pixel_values=pixels), bad)
    with pytest.raises(ValueError, match=r"\[2, 5\]"):
        model.embed_image(VisualInput(pixel_values=pixels), visual_mask[:, :4])
    with pytest.raises(ValueError, match="pixel_values"):
        model.embed_image(VisualInput(region_features=torch.randn(2, 3, 8)))


def test_text_language_model_shares_parameters_and_deepcopies_apart(model):
    lm = model.text_language_model()
    own = {id(p) for p in model.parameters()}
    assert all(id(p) in own for p in lm.parameters())
    assert lm.head is model.heads.text_mlm_head and lm.head is not model.heads.mlm_head
    assert lm.head.decoder.weight is model.text_encoder.word_embeddings
    teacher = copy.deepcopy(lm)
    assert teacher.head.decoder.weight is teacher.encoder.word_embeddings  # still tied in the copy
    ids, mask = _text()
    with torch.no_grad():
        before = model.text_mlm_logits(ids, mask, mask)
        for param in teacher.parameters():
            param.add_(1.0)
        assert torch.equal(model.text_mlm_logits(ids, mask, mask), before)


def test_parameter_groups_hold_each_trainable_parameter_once(model):
    model.text_encoder.model.embeddings.position_embeddings.weight.requires_grad_(False)
    groups = model.parameter_groups()
    assert set(groups) == {"encoders", "fusion", "heads"}
    ids = [id(p) for params in groups.values() for p in params]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(ids) == len(set(ids)) == len(trainable) and set(ids) == trainable
    assert any(p is model.text_encoder.word_embeddings for p in groups["encoders"])
    assert any(p is model.text_layers[0].cross_attn.attn.query.weight for p in groups["fusion"])
    assert any(p is model.heads.itm_head.weight for p in groups["heads"])


def test_gradients_reach_both_encoders(model):
    model.train()
    ids, mask = _text()
    fused = model.fuse(model.embed_text(ids, mask), model.embed_image(_images()), torch.tensor([0, 1, 0, 1]))
    model.heads.itm(fused.pooled).sum().backward()
    assert model.text_encoder.word_embeddings.grad.abs().sum() > 0
    assert model.vision_encoder.model.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0


def test_parameter_table_counts_every_parameter_once(model):
    table = parameter_table(model)
    total = sum(p.numel() for p in model.parameters())  # shared tensors once
    assert f"{total:,}" in table.splitlines()[-1] and table.splitlines()[-1].startswith("total")
    for name in ("text encoder", "vision encoder", "fusion", "cross-attention", "heads"):
        assert any(line.startswith(name) for line in table.splitlines())
    cross = sum(
        p.numel()
        for layer in [*model.text_layers, *model.image_layers]
        for p in layer.cross_attn.parameters()
    )
    assert any(line.startswith("cross-attention") and f"{cross:,}" in line for line in table.splitlines())


def test_vilta_base_builds_on_meta_near_meter_size():
    cfg = load_config("vilta-base")
    model = build_model(cfg.model, meta_only=True)
    assert all(p.device.type == "meta" for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert 320e6 < total < 360e6
    assert len(model.text_layers) == 6 and model.vision_encoder.image_size == 288
    assert model.vision_encoder.num_patches == 18 * 18


@pytest.mark.parametrize("preset", ["vilta-tiny", "vilta-base", "semvlp-tiny", "semvlp-base"])
def test_model_info_cli_works_for_every_preset(preset, capsys):
    assert main(["model", "info", preset]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("note:") or out.splitlines()[-1].startswith("total")
    assert "total" in out and "heads" in out


def test_model_info_cli_error_names_the_bad_option(capsys):
    assert main(["model", "info", "vilta-tiny", "model.arch=lxmert"]) == 2
    assert "model.arch" in capsys.readouterr().err


def test_init_std_sets_the_fusion_initialisation_only():
    torch.manual_seed(0)
    wide = build_model(tiny_config(init_std=0.1), VOCAB)
    torch.manual_seed(0)
    bert = build_model(tiny_config(), VOCAB)
    for built, std in ((wide, 0.1), (bert, 0.02)):
        fusion = torch.cat([layer.cross_attn.attn.value.weight.flatten() for layer in built.text_layers])
        assert fusion.std().item() == pytest.approx(std, rel=0.1)
        assert built.heads.itm_head.weight.std().item() == pytest.approx(0.02, rel=0.3)
    # the encoders come from their own (Hugging Face) initialisation, the same in both
    for a, b in zip(wide.text_encoder.parameters(), bert.text_encoder.parameters(), strict=True):
        assert torch.equal(a, b)


def test_init_std_must_be_positive():
    with pytest.raises(ValueError, match="model.init_std"):
        build_model(tiny_config(init_std=0.0), VOCAB)
