"""SemVLP: one shared stack in single- and two-stream modes, patches and regions, padding invariance,
parameter sharing, pluggable cross-attention, and initialisation from the real MiniLM-L6 BERT."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from vlp.config import ModelConfig, TextEncoderConfig, VisionEncoderConfig
from vlp.data.batch import VisualInput
from vlp.models import build_model

VOCAB = 40


def tiny_config(**overrides) -> ModelConfig:
    cfg = ModelConfig(
        arch="semvlp",
        text=TextEncoderConfig(max_position_embeddings=16),
        vision=VisionEncoderConfig(image_size=16, patch_size=8),
        hidden_size=32,
        num_heads=4,
        intermediate_size=64,
        num_layers=4,
        region_feature_dim=12,
        itc_dim=8,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def _text(batch: int = 4, length: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(3, VOCAB, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 3:] = False
    return ids, mask


def _regions(images: int = 2, regions: int = 3) -> VisualInput:
    boxes = torch.rand(images, regions, 4).sort(dim=-1).values
    return VisualInput(
        region_features=torch.randn(images, regions, 12),
        region_boxes=boxes,
        region_mask=torch.ones(images, regions, dtype=torch.bool),
    )


def _fuse_all(model, ids, mask, visual, index, mode):
    return model.fuse(model.embed_text(ids, mask), model.embed_image(visual), index, mode)


@pytest.mark.parametrize("mode", ["single", "two"])
@pytest.mark.parametrize("visual_input", ["patches", "regions"])
def test_shapes_in_every_mode(mode, visual_input):
    model = build_model(
        tiny_config(visual_input=visual_input, num_answers=3, num_region_labels=5), VOCAB
    ).eval()
    visual = VisualInput(pixel_values=torch.randn(2, 3, 16, 16)) if visual_input == "patches" else _regions()
    tokens = 5 if visual_input == "patches" else 4
    ids, mask = _text()
    with torch.no_grad():
        text, image = model.embed_text(ids, mask), model.embed_image(visual)
        fused = model.fuse(text, image, torch.tensor([0, 1, 1, 0]), mode)
        text_emb, image_emb = model.contrastive_embeddings(text, image)
        assert text.hidden.shape == (4, 6, 32) and image.hidden.shape == (2, tokens, 32)
        assert fused.text.shape == (4, 6, 32) and fused.image.shape == (4, tokens, 32)
        assert fused.pooled.shape == (4, 64)  # the same width in both modes
        assert text_emb.shape == (4, 8) and image_emb.shape == (2, 8)
        assert model.mlm_logits(fused, mask).shape == (int(mask.sum()), VOCAB)
        assert model.text_mlm_logits(ids, mask, mask).shape == (int(mask.sum()), VOCAB)
        target_dim = 192 if visual_input == "patches" else 12
        assert model.visual_targets(visual).shape == (2, tokens, target_dim)
        assert model.heads.mvm_regress(fused.image[:, 1]).shape == (4, target_dim)
        assert model.heads.mvm_classify(fused.image[:, 1]).shape == (4, 5)
        assert model.heads.itm(fused.pooled).shape == (4, 2)
        assert model.heads.qa(fused.pooled).shape == (4, 3)


def test_mode_defaults_to_single_and_is_checked():
    model = build_model(tiny_config(), VOCAB).eval()
    ids, mask = _text()
    visual, index = VisualInput(pixel_values=torch.randn(2, 3, 16, 16)), torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        single = _fuse_all(model, ids, mask, visual, index, "single").pooled
        two = _fuse_all(model, ids, mask, visual, index, "two").pooled
        assert torch.equal(_fuse_all(model, ids, mask, visual, index, None).pooled, single)
    assert not torch.allclose(single, two, atol=1e-4)
    with pytest.raises(ValueError, match="mode"):
        _fuse_all(model, ids, mask, visual, index, "three")


@pytest.mark.parametrize("mode", ["single", "two"])
def test_text_and_region_padding_do_not_change_real_positions(mode):
    model = build_model(tiny_config(visual_input="regions"), VOCAB).eval()
    ids, mask = _text()
    visual = _regions()
    visual.region_mask[1, 2] = False  # one padded region already
    padded_ids = torch.cat([ids, torch.zeros(4, 2, dtype=torch.long)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(4, 2, dtype=torch.bool)], dim=1)
    padded_visual = VisualInput(
        region_features=torch.cat([visual.region_features, torch.randn(2, 2, 12)], dim=1),
        region_boxes=torch.cat([visual.region_boxes, torch.rand(2, 2, 4)], dim=1),
        region_mask=torch.cat([visual.region_mask, torch.zeros(2, 2, dtype=torch.bool)], dim=1),
    )
    padded_visual.region_features[1, 2] = 100.0  # a padded region's content must not matter
    index = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        short = _fuse_all(model, ids, mask, visual, index, mode)
        long = _fuse_all(model, padded_ids, padded_mask, padded_visual, index, mode)
        short_emb = model.contrastive_embeddings(model.embed_text(ids, mask), model.embed_image(visual))
        long_emb = model.contrastive_embeddings(
            model.embed_text(padded_ids, padded_mask), model.embed_image(padded_visual)
        )
    real_regions = short.image_mask
    assert torch.allclose(long.text[:, :6][mask], short.text[mask], atol=1e-5)
    assert torch.allclose(long.image[:, :4][real_regions], short.image[real_regions], atol=1e-5)
    assert torch.allclose(long.pooled, short.pooled, atol=1e-5)
    assert torch.allclose(long_emb[0], short_emb[0], atol=1e-5)
    assert torch.allclose(long_emb[1], short_emb[1], atol=1e-5)


def test_both_modes_use_the_same_stack_parameters():
    model = build_model(tiny_config(), VOCAB).eval()
    ids, mask = _text()
    visual, index = VisualInput(pixel_values=torch.randn(2, 3, 16, 16)), torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        before = {mode: _fuse_all(model, ids, mask, visual, index, mode).pooled for mode in ("single", "two")}
        # (random perturbations: a constant one would cancel on LayerNorm outputs, which sum to zero)
        model.layers[1].ffn.up.weight.add_(torch.randn(64, 32))  # a shared stack weight
        after = {mode: _fuse_all(model, ids, mask, visual, index, mode).pooled for mode in ("single", "two")}
        assert not torch.allclose(before["single"], after["single"], atol=1e-4)
        assert not torch.allclose(before["two"], after["two"], atol=1e-4)
        model.cross_layers["3"].attn.value.weight.add_(torch.randn(32, 32))  # two-stream only
        final = {mode: _fuse_all(model, ids, mask, visual, index, mode).pooled for mode in ("single", "two")}
        assert torch.equal(final["single"], after["single"])
        assert not torch.allclose(final["two"], after["two"], atol=1e-4)


def _count(modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def test_unplugging_cross_attention_leaves_the_stack_unchanged():
    counts = {}
    for layers in ([], [0], [0, 1, 2, 3]):
        model = build_model(tiny_config(cross_attention_layers=layers), VOCAB)
        stack = [
            model.text_embeddings,
            model.visual_embeddings,
            model.layers,
            model.text_pooler,
            model.image_pooler,
        ]
        counts[tuple(layers)] = (
            _count(stack),
            _count([model.cross_layers]),
            sorted(model.cross_layers.keys()),
        )
    stack_sizes = {value[0] for value in counts.values()}
    assert len(stack_sizes) == 1
    block = counts[(0,)][1]
    assert counts[()][2] == ["2", "3"] and counts[()][1] == 2 * block  # default: the top half
    assert counts[(0, 1, 2, 3)][1] == 4 * block
    with pytest.raises(ValueError, match="cross_attention_layers"):
        build_model(tiny_config(cross_attention_layers=[4]), VOCAB)


def test_two_stream_without_cross_attention_keeps_modalities_apart():
    model = build_model(tiny_config(cross_attention_layers=[1]), VOCAB).eval()
    del model.cross_layers["1"]  # unplugged: the streams never meet
    ids, mask = _text()
    visual = VisualInput(pixel_values=torch.randn(2, 3, 16, 16))
    with torch.no_grad():
        a = _fuse_all(model, ids, mask, visual, torch.tensor([0, 0, 0, 0]), "two")
        b = _fuse_all(model, ids, mask, visual, torch.tensor([1, 1, 1, 1]), "two")
        text_only = model.run_stack(model.embed_text(ids, mask).hidden, mask)
    assert torch.allclose(a.text, b.text, atol=1e-6)
    assert torch.allclose(a.text, text_only, atol=1e-6)


def test_masked_visual_tokens_lose_their_content():
    model = build_model(tiny_config(visual_input="regions"), VOCAB).eval()
    visual = _regions()
    visual_mask = torch.zeros(2, 4, dtype=torch.bool)
    visual_mask[:, 2] = True  # region 1
    changed = copy.deepcopy(visual)
    changed.region_features[:, 1] += 5.0
    with torch.no_grad():
        assert torch.allclose(
            model.embed_image(visual, visual_mask).hidden, model.embed_image(changed, visual_mask).hidden
        )
        assert not torch.allclose(model.embed_image(visual).hidden, model.embed_image(changed).hidden)
    targets = model.visual_targets(visual)
    assert torch.equal(targets[:, 0], torch.zeros(2, 12)) and torch.equal(
        targets[:, 1:], visual.region_features
    )

    patches = build_model(tiny_config(), VOCAB).eval()
    pixels = torch.randn(1, 3, 16, 16)
    moved = pixels.clone()
    moved[:, :, 8:16, 0:8] -= 2.0  # patch 2 = token 3
    patch_mask = torch.tensor([[False, False, False, True, False]])
    with torch.no_grad():
        a = patches.embed_image(VisualInput(pixel_values=pixels), patch_mask).hidden
        b = patches.embed_image(VisualInput(pixel_values=moved), patch_mask).hidden
    assert torch.allclose(a, b)


def test_image_cls_and_mask_tokens_get_gradients_of_ordinary_size_at_initialisation():
    # Zero-initialised [CLS] / [MASK] / position / type tokens made those rows an exact zero vector at the
    # patch LayerNorm (eps 1e-12), whose gradient is then ~1e6 times too large: it swamped the clipped
    # gradient of the whole model, and SemVLP from scratch did not learn to use the image.
    torch.manual_seed(0)
    model = build_model(tiny_config(), VOCAB)
    embeddings = model.visual_embeddings
    patch_mask = torch.tensor([[False, True, False, False, False]] * 2)  # patch 0 masked
    hidden = model.embed_image(VisualInput(pixel_values=torch.randn(2, 3, 16, 16)), patch_mask).hidden
    (hidden * torch.randn_like(hidden)).sum().backward()
    scale = embeddings.proj.weight.grad.norm()
    for name in ("cls_token", "mask_token", "position_embeddings", "type_embedding"):
        assert getattr(embeddings, name).grad.norm() < 10 * scale, name


def test_text_language_model_is_the_stack_text_only_with_the_mlm_head():
    model = build_model(tiny_config(), VOCAB).eval()
    lm = model.text_language_model()
    assert lm.head is model.heads.mlm_head and lm.encoder.layers is model.layers
    own = {id(p) for p in model.parameters()}
    assert all(id(p) in own for p in lm.parameters())
    ids, mask = _text()
    with torch.no_grad():
        text = model.embed_text(ids, mask)
        text_emb, _ = model.contrastive_embeddings(
            text, model.embed_image(VisualInput(pixel_values=torch.randn(1, 3, 16, 16)))
        )
        cls_state = lm.encoder(ids, mask)[:, 0]
    assert torch.allclose(text_emb, F.normalize(model.heads.itc_text(cls_state), dim=-1), atol=1e-6)
    groups = model.parameter_groups()
    flat = [id(p) for params in groups.values() for p in params]
    assert len(flat) == len(set(flat)) == len(own)
    assert any(p is model.cross_layers["2"].attn.query.weight for p in groups["fusion"])


def test_stack_from_minilm_reproduces_bert_model(minilm_path):
    from transformers import BertModel

    cfg = tiny_config(text=TextEncoderConfig(pretrained=minilm_path), num_layers=2, hidden_size=64)
    model = build_model(cfg).eval()
    assert (model.config.hidden_size, model.config.num_layers, model.config.num_heads) == (384, 6, 12)
    assert sorted(model.cross_layers.keys()) == ["3", "4", "5"]  # default top half of the adopted depth
    assert any("BERT weights loaded" in line for line in model.load_report)
    reference = BertModel.from_pretrained(minilm_path).eval()
    ids = torch.tensor([[101, 1037, 4937, 2006, 1996, 13523, 102], [101, 1037, 3899, 102, 0, 0, 0]])
    mask = ids != 0
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask.long())
        ours = model.text_language_model().encoder(ids, mask)
        pooled = model.text_pooler(ours, mask)
    assert torch.allclose(ours[mask], expected.last_hidden_state[mask], atol=1e-4)
    assert torch.allclose(pooled, expected.pooler_output, atol=1e-4)


def test_semvlp_refuses_non_bert_and_missing_directories(tmp_path):
    from transformers import RobertaConfig

    RobertaConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        tmp_path
    )
    with pytest.raises(ValueError, match="BERT"):
        build_model(tiny_config(text=TextEncoderConfig(pretrained=str(tmp_path))))
    with pytest.raises(FileNotFoundError, match="missing-bert"):
        build_model(tiny_config(text=TextEncoderConfig(pretrained=str(tmp_path / "missing-bert"))))
    with pytest.raises(ValueError, match="vocab_size"):
        build_model(tiny_config())


def test_semvlp_base_builds_on_meta():
    from vlp.config import load_config

    model = build_model(load_config("semvlp-base").model, meta_only=True)
    assert len(model.layers) == 12 and sorted(map(int, model.cross_layers.keys())) == list(range(6, 12))
    assert model.vocab_size == 30522
    stack = sum(p.numel() for p in model.layers.parameters())
    assert stack == 12 * 7_087_872  # BERT-base encoder layer: 4*768^2 + 2*768*3072 + biases + 2 LayerNorms


@pytest.mark.parametrize("mode", ["single", "two"])
def test_fuse_gathers_images_encoded_once(mode):
    # two-stream runs the layers below the first cross-attention once per image: must equal per-pair
    model = build_model(tiny_config(cross_attention_layers=[2]), VOCAB).eval()
    ids, mask = _text()
    pixels = torch.randn(3, 3, 16, 16)
    index = torch.tensor([2, 0, 2, 1])
    with torch.no_grad():
        text = model.embed_text(ids, mask)
        gathered = model.fuse(text, model.embed_image(VisualInput(pixel_values=pixels)), index, mode)
        per_text = model.fuse(
            text, model.embed_image(VisualInput(pixel_values=pixels[index])), torch.arange(4), mode
        )
    for field in ("text", "image", "pooled"):
        assert torch.allclose(getattr(gathered, field), getattr(per_text, field), atol=1e-5), field


@pytest.mark.parametrize("mode", ["single", "two"])
def test_fuse_runs_each_distinct_text_once_and_equals_the_gathered_rows(mode):
    # two-stream runs the text layers below the first cross-attention once per distinct text
    model = build_model(tiny_config(cross_attention_layers=[2]), VOCAB)
    ids, mask = _text()
    pixels = torch.randn(3, 3, 16, 16)
    text_index, image_index = torch.tensor([0, 3, 0, 1, 3, 2]), torch.tensor([2, 0, 1, 1, 2, 0])
    calls = []
    hook = model.layers[0].register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    text, images = model.embed_text(ids, mask), model.embed_image(VisualInput(pixel_values=pixels))
    once = model.fuse(text, images, image_index, mode, text_index=text_index)
    hook.remove()
    rows = model.fuse(text.rows(text_index), images, image_index, mode)
    for field in ("text", "image", "pooled", "text_mask"):
        assert torch.allclose(getattr(once, field), getattr(rows, field), atol=1e-5), field
    assert calls == ([6] if mode == "single" else [4, 3])  # the 4 texts and 3 images, not the 6 pairs
    grads = [
        torch.autograd.grad(fused.pooled.sum(), text.hidden, retain_graph=True)[0] for fused in (once, rows)
    ]
    assert torch.allclose(*grads, atol=1e-5)
