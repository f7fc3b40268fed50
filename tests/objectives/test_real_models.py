"""PretrainingObjectives on tiny real ViLTA and SemVLP models (vlp.models.build_model)."""

import dataclasses

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from vlp.config import ModelConfig, ObjectivesConfig, TextEncoderConfig, VisionEncoderConfig
from vlp.data.batch import Batch, VisualInput
from vlp.models import build_model
from vlp.models.checkpoint import save_pretrained
from vlp.models.outputs import FusedFeatures
from vlp.objectives import PretrainingObjectives, load_teacher

V, MASK_ID, REGION_DIM, LABELS, ANSWERS = 40, 4, 6, 3, 5
REPLACEABLE = torch.arange(V) >= 5  # 0-4: pad, cls, sep, unk, mask


def tiny_model(arch, **changes):
    cfg = ModelConfig(
        arch=arch,
        text=TextEncoderConfig(
            hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_position_embeddings=16
        ),
        vision=VisionEncoderConfig(
            image_size=16, patch_size=8, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32
        ),
        hidden_size=16,
        num_heads=2,
        intermediate_size=32,
        num_fusion_layers=1,
        num_layers=2,
        itc_dim=8,
        **changes,
    )
    return build_model(cfg, vocab_size=V)


def make_batch(regions=False, num_images=3, texts_per_image=2, length=8):
    g = torch.Generator().manual_seed(1)
    image_index = torch.arange(num_images).repeat_interleave(texts_per_image)
    b = image_index.shape[0]
    input_ids = torch.randint(5, V, (b, length), generator=g)
    input_ids[:, 0], input_ids[:, -1] = 1, 2
    attention_mask = torch.ones(b, length, dtype=torch.bool)
    attention_mask[1, -3:] = False
    input_ids[1, -3:] = 0
    input_ids[1, -4] = 2
    positions = torch.zeros(b, length, dtype=torch.bool)
    positions[:, 2] = positions[:, 4] = True
    if regions:
        visual = VisualInput(
            region_features=torch.randn(num_images, 4, REGION_DIM, generator=g),
            region_boxes=torch.rand(num_images, 4, 4, generator=g).sort(-1).values,
            region_mask=torch.tensor([[True] * 4, [True, True, True, False], [True] * 4]),
            region_labels=torch.randint(0, LABELS, (num_images, 4), generator=g),
        )
    else:
        visual = VisualInput(pixel_values=torch.randn(num_images, 3, 16, 16, generator=g))
    return Batch(
        visual=visual,
        image_index=image_index,
        image_group=torch.tensor([5, 9, 2]).repeat_interleave(texts_per_image),
        input_ids=input_ids,
        attention_mask=attention_mask,
        mlm_input_ids=input_ids.masked_fill(positions, MASK_ID),
        mlm_labels=input_ids.masked_fill(~positions, -100),
        has_answer=torch.tensor([True, False] * (b // 2)),
        answer_targets=torch.rand(b, ANSWERS, generator=g),
    )


def train_steps(objectives, batch, modes, steps=15, lr=1e-2):
    """Train on one batch; returns the losses by name summed over ``modes``, before and after."""
    trainable = [p for p in objectives.parameters() if p.requires_grad]  # the model and the temperature
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)

    def evaluate():
        torch.manual_seed(123)  # the same negatives and masks each time
        losses = {}
        with torch.no_grad():
            for mode in modes:
                out = objectives(batch, 100, mode)
                losses["total"] = losses.get("total", 0.0) + out.total.item()
                for name, loss in out.losses.items():
                    losses[name] = losses.get(name, 0.0) + loss.item()
        return losses

    before = evaluate()
    for step in range(steps):
        optimizer.zero_grad()
        out = objectives(batch, step, modes[step % len(modes)])
        out.total.backward()
        optimizer.step()
    return before, evaluate(), out


def test_vilta_soft_labels_and_all_negatives_lower_the_loss():
    model = tiny_model("vilta")
    cfg = ObjectivesConfig(weights={"mlm": 1.0, "itm": 1.0, "itc": 0.5})
    cfg.soft_labels.enabled = True
    cfg.itm.hard_negatives = 2
    cfg.itm.synthesized.per_positive = 1
    cfg.itm.synthesized.synonym_guard_k = 3
    objectives = PretrainingObjectives(cfg, model, REPLACEABLE, mask_token_id=MASK_ID)
    assert objectives.teacher is not None and all(
        not p.requires_grad for p in objectives.teacher.parameters()
    )
    teacher_before = {k: v.clone() for k, v in objectives.teacher.state_dict().items()}
    batch = make_batch()
    before, after, out = train_steps(objectives, batch, [None])
    assert set(out.losses) == {"mlm", "itm", "itc"}
    assert out.metrics["itm_negatives"] == 4 * batch.size  # 1 random + 2 hard + 1 synthesized per positive
    assert after["total"] < 0.9 * before["total"]
    assert after["mlm"] < before["mlm"] and after["itm"] < before["itm"]
    for key, value in objectives.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key  # the teacher never trains


def test_semvlp_regions_all_objectives_both_modes_lower_the_loss():
    model = tiny_model(
        "semvlp",
        visual_input="regions",
        region_feature_dim=REGION_DIM,
        num_region_labels=LABELS,
        num_answers=ANSWERS,
        init_std=0.05,  # the semvlp-tiny preset's
    )
    cfg = ObjectivesConfig(weights={"mlm": 1.0, "itm": 1.0, "itc": 0.5, "mvm": 1.0, "qa": 1.0})
    cfg.itm.hard_negatives = 1  # no longer the default (it needs ITC, which this test trains)
    cfg.mvm.mask_ratio = 1.0  # every real region: on one batch only the caption tells the image, learnable
    objectives = PretrainingObjectives(cfg, model, REPLACEABLE, mask_token_id=MASK_ID)
    batch = make_batch(regions=True)
    # ITM is the slowest to move on one batch: flat for ~24 steps, down by ~0.1 at 80 (both modes summed).
    before, after, out = train_steps(objectives, batch, ["single", "two"], steps=80)
    assert set(out.losses) == {"mlm", "itm", "itc", "mvm", "qa"}
    assert "mvm_label_acc" in out.metrics and "qa_score" in out.metrics
    assert after["total"] < 0.9 * before["total"]
    for name in ("mlm", "itm", "mvm", "qa"):
        assert after[name] < before[name], name


def test_text_only_stage_on_a_real_model():
    model = tiny_model("semvlp")
    cfg = ObjectivesConfig(weights={"mlm": 1.0}, text_only=True)
    objectives = PretrainingObjectives(cfg, model)
    before, after, out = train_steps(objectives, make_batch(), [None], steps=10)
    assert set(out.losses) == {"mlm"} and after["mlm"] < 0.9 * before["mlm"]


def test_teacher_from_a_vlp_checkpoint_directory(tmp_path):
    model = tiny_model("vilta")
    save_pretrained(model, tmp_path / "ckpt")
    teacher = load_teacher(str(tmp_path / "ckpt"))
    batch = make_batch()
    positions = batch.mlm_labels != -100
    model.eval()
    expected = model.text_mlm_logits(batch.mlm_input_ids, batch.attention_mask, positions)
    got = teacher(batch.mlm_input_ids, batch.attention_mask, positions)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())


def test_teacher_from_a_hugging_face_masked_lm_directory(tmp_path):
    hf = BertForMaskedLM(
        BertConfig(
            vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    ).eval()
    hf.save_pretrained(tmp_path / "bert")
    teacher = load_teacher(str(tmp_path / "bert"))
    batch = make_batch()
    positions = batch.mlm_labels != -100
    with torch.no_grad():
        expected = hf(input_ids=batch.mlm_input_ids, attention_mask=batch.attention_mask.long()).logits[
            positions
        ]
    assert torch.allclose(teacher(batch.mlm_input_ids, batch.attention_mask, positions), expected, atol=1e-5)
    assert all(not p.requires_grad for p in teacher.parameters())


def test_a_teacher_path_that_is_not_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="objectives.soft_labels.teacher"):
        load_teacher(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a Hugging Face"):
        load_teacher(str(tmp_path / "empty"))


def _fuse_in_parts(model, parts):
    """``model.fuse`` split into one call per chunk of ``parts`` rows, the outputs concatenated."""
    fuse = model.fuse

    def fuse_in_parts(text, image, image_index, mode=None, text_index=None):
        rows = text_index if text_index is not None else torch.arange(image_index.shape[0])
        chunks = [
            fuse(text.rows(r), image, i, mode)
            for r, i in zip(rows.split(parts), image_index.split(parts), strict=True)
        ]
        return FusedFeatures(
            *(torch.cat([getattr(c, f.name) for c in chunks]) for f in dataclasses.fields(FusedFeatures))
        )

    return fuse_in_parts


@pytest.mark.parametrize("arch, mode", [("vilta", None), ("semvlp", "single"), ("semvlp", "two")])
def test_the_itm_rows_and_the_masked_pass_in_one_fuse_call_give_the_losses_of_separate_calls(arch, mode):
    # MLM + ITM read the same images, so their pairs are one fuse call (the layers below the
    # cross-attention run once per image): the losses and gradients equal those of smaller calls.
    model = tiny_model(arch).eval()
    cfg = ObjectivesConfig(weights={"mlm": 1.0, "itm": 1.0})
    cfg.itm.random_negatives = 1
    objectives = PretrainingObjectives(cfg, model, REPLACEABLE, mask_token_id=MASK_ID)
    batch = make_batch()
    trainable = [p for p in model.parameters() if p.requires_grad]
    calls = []
    fuse = model.fuse
    model.fuse = lambda *args, **kwargs: calls.append(args[2].shape[0]) or fuse(*args, **kwargs)
    results = []
    for split in (False, True):
        if split:
            model.fuse = _fuse_in_parts(model, parts=batch.size)
        torch.manual_seed(0)
        out = objectives(batch, step=0, mode=mode)
        grads = torch.autograd.grad(out.total, trainable, allow_unused=True)
        results.append((out.losses, grads))
    # merged: one call of B positives + B random negatives + B masked captions; then split in three
    assert calls == [3 * batch.size] + [batch.size] * 3
    (merged, merged_grads), (separate, separate_grads) = results
    assert merged.keys() == separate.keys() == {"mlm", "itm"}
    for name in merged:
        assert torch.allclose(merged[name], separate[name], atol=1e-6), name
    for a, b in zip(merged_grads, separate_grads, strict=True):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-5)
