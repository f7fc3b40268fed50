"""Method fidelity (issue 10): each test fails on the code before the fix and passes after."""

import dataclasses
import logging

import pytest
import torch
from toy_trainer import make_cfg, make_trainer
from transformers import BertTokenizerFast

import vlp
import vlp.objectives.itm
from vlp.config import (
    ITMConfig,
    ModelConfig,
    ObjectivesConfig,
    SoftLabelConfig,
    SynthesizedNegativeConfig,
    TextEncoderConfig,
    VisionEncoderConfig,
    load_config,
)
from vlp.data.batch import Batch, VisualInput
from vlp.data.collate import Collator
from vlp.data.examples import PairDataset
from vlp.data.formats.webdataset import write_shards
from vlp.data.loader import PretrainLoader
from vlp.data.masking import first_word_vocab_mask, replaceable_vocab_mask
from vlp.data.records import CaptionRecord
from vlp.data.stream import StreamPairDataset
from vlp.data.tokenizer import load_tokenizer
from vlp.models import build_model
from vlp.models.checkpoint import check_vocabulary, save_pretrained
from vlp.objectives.base import reset_warnings
from vlp.objectives.mlm import SoftLabels, soft_label_mlm_loss
from vlp.objectives.negatives import synthesize_captions
from vlp.objectives.pretraining import PretrainingObjectives
from vlp.objectives.text_mlm import text_mlm
from vlp.pretrain import pretrain

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "red", "blue", "green", "circle"]
WORDS += ["square", "triangle", "left", "of", "big", "small", "x", "b", "two", "on"]


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(WORDS)})


def tiny_vilta(vocab_size: int, dropout: float = 0.0):
    text = TextEncoderConfig(
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        dropout=dropout,
    )
    vision = VisionEncoderConfig(
        image_size=16, patch_size=8, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64
    )
    cfg = ModelConfig(
        arch="vilta",
        text=text,
        vision=vision,
        hidden_size=32,
        num_heads=2,
        intermediate_size=64,
        num_fusion_layers=1,
        itc_dim=16,
        pooling="mean",
    )
    return build_model(cfg, vocab_size=vocab_size)


def caption_batch(
    tokenizer, texts=("a red circle left of the blue square", "two green triangle on a square")
):
    encoded = tokenizer(list(texts), padding="longest", return_tensors="pt")
    ids, mask = encoded["input_ids"], encoded["attention_mask"].bool()
    masked, labels = ids.clone(), torch.full_like(ids, -100)
    masked[:, 3], labels[:, 3] = tokenizer.mask_token_id, ids[:, 3]  # one masked content word per caption
    n = len(texts)
    return Batch(
        visual=VisualInput(pixel_values=torch.randn(n, 3, 16, 16)),
        image_index=torch.arange(n),
        image_group=torch.arange(n),
        input_ids=ids,
        attention_mask=mask,
        mlm_input_ids=masked,
        mlm_labels=labels,
    )


def vilta_objectives(tokenizer, model, **changes) -> PretrainingObjectives:
    """The vilta-tiny preset's objectives (the teacher: a copy of the model's text path)."""
    cfg = load_config("vilta-tiny").objectives
    cfg = dataclasses.replace(cfg, soft_labels=dataclasses.replace(cfg.soft_labels, teacher=""), **changes)
    vocab = replaceable_vocab_mask(tokenizer, "content", size=model.vocab_size)
    return PretrainingObjectives(cfg, model, vocab, mask_token_id=tokenizer.mask_token_id)


# --------------------------------------------------------------------------- 1. the generator trains


def test_vilta_preset_trains_the_generator_mlm_head_and_logs_its_quality(tokenizer):
    model = tiny_vilta(len(tokenizer))
    objectives = vilta_objectives(tokenizer, model)
    batch = caption_batch(tokenizer)
    out = objectives(batch, step=100)
    assert out.losses["text_mlm"].item() > 0 and out.metrics["gen_nll"] == pytest.approx(
        out.losses["text_mlm"].item()
    )
    out.total.backward()
    head = model.heads.text_mlm_head
    assert head.transform.weight.grad is not None and head.transform.weight.grad.abs().sum() > 0

    objectives.eval()  # validation: the generator's NLL / accuracy and the negatives' plausibility
    with torch.no_grad():
        val = objectives(batch, step=100)
    assert {"gen_nll", "gen_acc", "synth_plausible"} <= set(val.metrics)
    assert 0.0 <= val.metrics["synth_plausible"] <= 1.0 and 0.0 <= val.metrics["gen_acc"] <= 1.0


# --------------------------------------------------------------------------- 2. sampling without dropout


@pytest.mark.parametrize("eval_mode", [True, False])
def test_synthesis_samples_with_the_text_path_in_eval_mode_and_restores_it(tokenizer, eval_mode):
    model = tiny_vilta(len(tokenizer), dropout=0.5)
    cfg = load_config("vilta-tiny").objectives
    synth = dataclasses.replace(cfg.itm.synthesized, eval_mode=eval_mode)
    objectives = vilta_objectives(tokenizer, model, itm=dataclasses.replace(cfg.itm, synthesized=synth))
    objectives.train()
    seen, predict, embed = [], model.text_mlm_logits, model.embed_text

    def recording(*args):
        seen.append([m.training for m in model.text_encoder.modules()])
        return predict(*args)

    def embedding(*args):
        seen.append([m.training for m in model.text_encoder.modules()])
        return embed(*args)

    model.text_mlm_logits, model.embed_text = recording, embedding
    objectives(caption_batch(tokenizer), step=0)
    # synthesis runs first; then one embed_text pass, whose masked rows the text_mlm loss reads
    synthesis, text_mlm = seen
    assert all(not t for t in synthesis) if eval_mode else all(synthesis)
    assert all(text_mlm) and model.text_encoder.training and model.heads.text_mlm_head.training


def test_text_mlm_read_off_the_shared_text_pass_equals_its_own_pass(tokenizer):
    """The text_mlm loss reuses the masked captions' rows of the one embed_text call (saving the text
    encoder a forward and backward per step): same loss and same gradients as encoding them again."""
    model = tiny_vilta(len(tokenizer)).eval()
    batch = caption_batch(tokenizer)
    own_loss, own_acc = text_mlm(model, batch)
    own_grads = torch.autograd.grad(own_loss, list(model.text_encoder.parameters()))
    encoded = model.embed_text(batch.mlm_input_ids, batch.attention_mask)
    shared_loss, shared_acc = text_mlm(model, batch, encoded)
    shared_grads = torch.autograd.grad(shared_loss, list(model.text_encoder.parameters()))
    assert shared_loss.item() == pytest.approx(own_loss.item(), rel=1e-6) and shared_acc == own_acc
    for own, shared in zip(own_grads, shared_grads, strict=True):
        torch.testing.assert_close(shared, own, rtol=1e-5, atol=1e-7)
    # the full objective encodes the texts once and calls the text path only to synthesize negatives
    calls, predict = [], model.text_mlm_logits
    model.text_mlm_logits = lambda *args: calls.append(1) or predict(*args)
    out = vilta_objectives(tokenizer, model)(batch, step=100)
    assert len(calls) == 1 and out.losses["text_mlm"].item() > 0


# --------------------------------------------------------------------------- 3. SemVLP region labels


def test_semvlp_preset_classifies_region_objects_and_attributes_counted_from_the_file(shapes, tmp_path):
    regions = shapes / "regions" / "shapes_regions.tsv"
    overrides = [
        f"data.train={shapes / 'dataset_shapes.json'}",
        f"data.images_root={shapes / 'images'}",
        f"data.tokenizer={shapes / 'tokenizer'}",
        f"data.region_features={regions}",
        "data.vqa=",
        "data.batch_size=8",
        "data.max_val_images=8",
        "model.visual_input=regions",
        "model.region_feature_dim=64",
        "objectives.weights={mlm: 1.0, itm: 1.0, mvm: 1.0}",
        "train.max_steps=2",
        "train.val_every=0",
        "train.ckpt_every=0",
        "train.progress=false",
        "train.log_every=1",
        "objectives.mvm.mask_ratio=0.5",
    ]
    result = pretrain(load_config("semvlp-tiny", overrides), tmp_path / "run")
    assert "train/mvm_label_acc" in result and "train/mvm_attr_acc" in result
    from vlp.data.formats.regions import load_region_features

    records = load_region_features(regions).values()
    model = vlp.load(tmp_path / "run" / "final")
    assert model.config.num_region_labels == max(int(r.object_ids.max()) for r in records) + 1
    assert model.config.num_region_attributes == max(int(r.attr_ids.max()) for r in records) + 1


@pytest.fixture
def fresh_warnings():
    """``warn_once`` logs each message once per process: forget what earlier tests logged (and this one)."""
    reset_warnings()
    yield
    reset_warnings()


def test_region_labels_that_nothing_predicts_are_a_warning(caplog, fresh_warnings):
    from vlp.config import MVMConfig
    from vlp.models.outputs import FusedFeatures
    from vlp.objectives.mvm import mvm_objective

    class Model(torch.nn.Module):
        config = ModelConfig(num_region_labels=0)

        def __init__(self):
            super().__init__()
            self.heads = type("H", (), {"mvm_regress": torch.nn.Linear(4, 3)})()

    labels = torch.tensor([[2, 1]])
    batch = Batch(
        visual=VisualInput(region_features=torch.randn(1, 2, 3), region_labels=labels),
        image_index=torch.tensor([0]),
        image_group=torch.tensor([0]),
        input_ids=torch.zeros(1, 2, dtype=torch.long),
        attention_mask=torch.ones(1, 2, dtype=torch.bool),
    )
    fused = FusedFeatures(
        text=torch.randn(1, 2, 4),
        image=torch.randn(1, 3, 4),
        text_mask=None,
        image_mask=None,
        pooled=torch.randn(1, 8),
    )
    mask = torch.tensor([[False, True, True]])
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            out = mvm_objective(Model(), fused, batch, mask, torch.randn(1, 3, 3), MVMConfig())
    warnings = [r for r in caplog.records if "region_labels" in r.getMessage()]
    assert len(warnings) == 1 and "model.num_region_labels is 0" in warnings[0].getMessage()
    assert "mvm_label_acc" not in out.metrics


# --------------------------------------------------------------------------- 4. streamed batch diversity


def _distinct_images(loader, batches):
    counts = []
    for _, batch in zip(range(batches), loader, strict=False):
        counts.append(len(set(batch.image_group.tolist())))
    return sum(counts) / len(counts)


def test_streamed_batches_hold_about_as_many_distinct_images_as_map_style_ones(tmp_path, tokenizer):
    from PIL import Image

    words = ["red", "blue", "green", "big", "small"]
    records = []
    for i in range(96):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (8, 8), (i, 2 * i, 255 - i)).save(path)
        captions = [f"a {w} circle" for w in words]  # five captions per image, as COCO
        records.append(CaptionRecord(image_id=str(i), image_path=str(path), captions=captions))
    write_shards(records, tmp_path / "shards", samples_per_shard=32)
    cfg = dataclasses.replace(load_config(None).data, image_size=8, max_text_len=8)
    collator = Collator(tokenizer, cfg, train=False)
    stream = StreamPairDataset(str(tmp_path / "shards" / "shard-{000000..000002}.tar"), shuffle=1000, seed=0)
    streamed = _distinct_images(PretrainLoader(stream, collator, batch_size=16), 5)
    mapped = _distinct_images(PretrainLoader(PairDataset(records), collator, batch_size=16), 5)
    assert mapped > 14 and streamed >= mapped - 1.0

    used: dict[str, list[str]] = {}  # one caption per image per pass; all five over five passes
    for epoch in range(5):
        stream.set_epoch(epoch)
        for example in stream:
            used.setdefault(example.image_id, []).append(example.text)
    assert all(sorted(texts) == sorted(f"a {w} circle" for w in words) for texts in used.values())


# --------------------------------------------------------------------------- 5. training nothing


def test_hard_negatives_without_the_itc_loss_are_refused_naming_both_keys(tokenizer):
    model = tiny_vilta(len(tokenizer))
    cfg = ObjectivesConfig(weights={"mlm": 1.0, "itm": 1.0}, itm=ITMConfig(hard_negatives=1))
    with pytest.raises(ValueError, match=r"objectives\.itm\.hard_negatives.*objectives\.weights\.itc"):
        PretrainingObjectives(cfg, model)
    assert not PretrainingObjectives(ObjectivesConfig(), model).mine_hard  # the default is consistent


# --------------------------------------------------------------------------- 6. the vocabulary, not its size


def test_a_checkpoint_with_another_vocabulary_of_the_same_size_is_refused(shapes, tmp_path):
    tokenizer = load_tokenizer(shapes / "tokenizer")
    vocab = sorted(tokenizer.get_vocab(), key=tokenizer.get_vocab().get)
    vocab[-1], vocab[-2] = vocab[-2], vocab[-1]  # same size, two words' ids swapped
    other = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    assert len(other) == len(tokenizer)
    model = tiny_vilta(len(tokenizer))
    save_pretrained(model, tmp_path / "same", tokenizer=tokenizer)
    save_pretrained(model, tmp_path / "other", tokenizer=other)
    check_vocabulary(tmp_path / "same", tokenizer, "objectives.soft_labels.teacher")
    with pytest.raises(ValueError, match="objectives.soft_labels.teacher.*another tokenizer vocabulary"):
        check_vocabulary(tmp_path / "other", tokenizer, "objectives.soft_labels.teacher")
    overrides = [
        f"data.train={shapes / 'dataset_shapes.json'}",
        f"data.images_root={shapes / 'images'}",
        f"data.tokenizer={shapes / 'tokenizer'}",
        f"model.init_from={tmp_path / 'other'}",
        "train.max_steps=1",
        "train.progress=false",
    ]
    with pytest.raises(ValueError, match="model.init_from"):
        pretrain(load_config("vilta-tiny-baseline", overrides), tmp_path / "run")


# --------------------------------------------------------------------------- 7. small ones


def test_stale_gradients_are_not_added_to_the_first_update(tmp_path):
    cfg = make_cfg(max_steps=1, val_every=0, ckpt_every=0)
    clean, stale = make_trainer(tmp_path / "clean", cfg), make_trainer(tmp_path / "stale", cfg)
    for param in stale.step_module.parameters():
        param.grad = torch.full_like(param, 5.0)
    clean.fit()
    stale.fit()
    for a, b in zip(clean.step_module.parameters(), stale.step_module.parameters(), strict=True):
        assert torch.equal(a, b)


class ByteLevelTokenizer:
    """A RoBERTa-like byte-level vocabulary: "Ġ" marks a word start, except at a caption's first word."""

    tokens = ["<s>", "</s>", "<pad>", "<mask>", "\u0120red", "red", "\u0120dog", "dog", "ing", "\u0120x", "x"]
    all_special_ids = [0, 1, 2, 3]

    def __len__(self):
        return len(self.tokens)

    def convert_ids_to_tokens(self, ids):
        return [self.tokens[i] for i in ids]


def test_first_word_of_a_byte_level_caption_is_replaceable_by_another_first_word():
    tok = ByteLevelTokenizer()
    inner, first = replaceable_vocab_mask(tok), first_word_vocab_mask(tok)
    assert [tok.tokens[i] for i in first.nonzero().flatten()] == ["red", "dog", "ing"]
    ids = torch.tensor([[0, 5, 6, 1]])  # <s> red Ġdog </s>
    cfg = SynthesizedNegativeConfig(per_positive=1, mask_ratio=1.0, top_k=0)

    def uniform(input_ids, attention_mask, positions):
        return torch.zeros(int(positions.sum()), len(tok))

    out = synthesize_captions(
        ids, torch.ones_like(ids, dtype=torch.bool), uniform, inner, 3, cfg, first_word_vocab=first
    )
    assert out.replaced[0].tolist() == [False, True, True, False]
    assert (
        tok.tokens[out.input_ids[0, 1]] in ("dog", "ing") and tok.tokens[out.input_ids[0, 2]] == "\u0120red"
    )


def test_single_letters_are_not_content_words(tokenizer):
    mask = replaceable_vocab_mask(tokenizer, "content")
    kept = {WORDS[i] for i in mask.nonzero().flatten().tolist()}
    assert "x" not in kept and "b" not in kept and {"red", "circle", "two"} <= kept


def test_itm_docstring_describes_the_class_balanced_default():
    doc = vlp.objectives.itm.__doc__
    assert ITMConfig().balance_classes and "class-balanced by default" in doc


def test_soft_label_temperature_squared_scaling():
    logits, labels = torch.randn(5, 7), torch.randint(0, 7, (5,))
    soft = torch.softmax(torch.randn(5, 7), -1)
    plain = soft_label_mlm_loss(logits, labels, soft, alpha=1.0)
    scaled = SoftLabels(SoftLabelConfig(temperature=2.0, temperature_squared=True), teacher=None)
    assert scaled.soft_scale == 4.0
    assert soft_label_mlm_loss(logits, labels, soft, 1.0, scaled.soft_scale) == pytest.approx(
        4 * plain.item()
    )
    assert SoftLabels(SoftLabelConfig(temperature=2.0), teacher=None).soft_scale == 1.0  # default: off
