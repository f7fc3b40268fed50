"""PretrainingObjectives on a tiny fake model implementing the model protocol (calls are recorded)."""

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vlp.config import ModeScheduleConfig, ObjectivesConfig
from vlp.data.batch import Batch, VisualInput
from vlp.models.outputs import FusedFeatures, ImageFeatures, TextFeatures
from vlp.objectives import PretrainingObjectives
from vlp.objectives.itc import ContrastiveTemperature
from vlp.train.optim import extra_parameters
from vlp.train.schedules import ModeSchedule

V, D, F_DIM, R, LABELS, ANSWERS = 16, 8, 6, 3, 4, 5
MASK_ID = 1
REPLACEABLE = torch.tensor([False, False] + [True] * (V - 2))


class TextLM(nn.Module):
    def __init__(self, embed, head):
        super().__init__()
        self.embed, self.head = embed, head

    def forward(self, input_ids, attention_mask, positions):
        hidden = self.embed(input_ids)
        context = (hidden * attention_mask[..., None]).sum(1, keepdim=True) / attention_mask.sum(1)[
            :, None, None
        ]
        return self.head((hidden + context)[positions])


class FakeHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.itm_head = nn.Linear(2 * D, 2)
        self.regress = nn.Linear(D, F_DIM)
        self.classify = nn.Linear(D, LABELS)
        self.qa_head = nn.Linear(2 * D, ANSWERS)

    def itm(self, pooled):
        return self.itm_head(pooled)

    def mvm_regress(self, hidden):
        return self.regress(hidden)

    def mvm_classify(self, hidden):
        return self.classify(hidden)

    def qa(self, pooled):
        return self.qa_head(pooled)


class FakeModel(nn.Module):
    """Regions -> [CLS] + R tokens; text -> token embeddings; fusion mixes in the other stream's mean."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(num_region_labels=LABELS, num_answers=ANSWERS)
        self.embed = nn.Embedding(V, D)
        self.region_proj = nn.Linear(F_DIM, D)
        self.image_cls = nn.Parameter(torch.randn(D) * 0.1)
        self.mask_embedding = nn.Parameter(torch.zeros(D))
        self.mix_text, self.mix_image = nn.Linear(D, D), nn.Linear(D, D)
        self.mlm_head, self.text_mlm_head = nn.Linear(D, V), nn.Linear(D, V)
        self.itc_text, self.itc_image = nn.Linear(D, 4), nn.Linear(D, 4)
        self.heads = FakeHeads()
        self.calls = []

    def embed_text(self, input_ids, attention_mask):
        self.calls.append(("embed_text", input_ids.shape[0]))
        return TextFeatures(hidden=self.embed(input_ids), mask=attention_mask)

    def embed_image(self, visual, visual_mask=None):
        self.calls.append(("embed_image", visual_mask is not None))
        regions = self.region_proj(visual.region_features)
        cls = self.image_cls.expand(regions.shape[0], 1, D)
        hidden = torch.cat([cls, regions], 1)
        if visual_mask is not None:
            assert not visual_mask[:, 0].any()
            hidden = torch.where(visual_mask[..., None], self.mask_embedding.expand_as(hidden), hidden)
        mask = torch.cat([torch.ones(regions.shape[0], 1, dtype=torch.bool), visual.region_mask], 1)
        return ImageFeatures(hidden=hidden, mask=mask)

    def fuse(self, text, image, image_index, mode=None, text_index=None):
        if text_index is not None:
            text = text.rows(text_index)
        self.calls.append(("fuse", text.hidden.shape[0], mode))
        v, v_mask = image.hidden[image_index], image.mask[image_index]
        t_mean = (text.hidden * text.mask[..., None]).sum(1) / text.mask.sum(1, keepdim=True)
        v_mean = (v * v_mask[..., None]).sum(1) / v_mask.sum(1, keepdim=True)
        t = torch.tanh(text.hidden + self.mix_text(v_mean)[:, None])
        v = torch.tanh(v + self.mix_image(t_mean)[:, None])
        pooled = torch.cat([t[:, 0], v[:, 0]], -1)
        return FusedFeatures(text=t, image=v, text_mask=text.mask, image_mask=v_mask, pooled=pooled)

    def contrastive_embeddings(self, text, image):
        self.calls.append(("contrastive", text.hidden.shape[0]))
        return F.normalize(self.itc_text(text.hidden[:, 0]), dim=-1), F.normalize(
            self.itc_image(image.hidden[:, 0]), dim=-1
        )

    def mlm_logits(self, fused, positions):
        return self.mlm_head(fused.text[positions])

    def text_language_model(self):
        return TextLM(self.embed, self.text_mlm_head)

    def text_mlm_logits(self, input_ids, attention_mask, positions):
        self.calls.append(("text_mlm", input_ids.shape[0]))
        return self.text_language_model()(input_ids, attention_mask, positions)

    def text_mlm_logits_of(self, text, positions):
        return None  # its text features are not the text path's states

    def visual_targets(self, visual):
        feats = visual.region_features
        return torch.cat([feats.new_zeros(feats.shape[0], 1, feats.shape[2]), feats], 1)

    def count(self, name):
        return sum(1 for call in self.calls if call[0] == name)


def make_batch(seed=0, num_images=3, texts_per_image=2, length=7):
    g = torch.Generator().manual_seed(seed)
    image_index = torch.arange(num_images).repeat_interleave(texts_per_image)
    b = image_index.shape[0]
    input_ids = torch.randint(2, V, (b, length), generator=g)
    input_ids[:, 0] = 2  # a [CLS]-like first token
    attention_mask = torch.ones(b, length, dtype=torch.bool)
    attention_mask[0, -2:] = False
    input_ids[~attention_mask] = 0
    positions = (torch.rand(b, length, generator=g) < 0.3) & attention_mask
    positions[:, 0] = False
    positions[:, 1] = True
    mlm_input_ids = input_ids.masked_fill(positions, MASK_ID)
    mlm_labels = input_ids.masked_fill(~positions, -100)
    region_mask = torch.ones(num_images, R, dtype=torch.bool)
    region_mask[0, -1] = False
    labels = torch.randint(0, LABELS, (num_images, R), generator=g)
    labels[1, 0] = -100
    visual = VisualInput(
        region_features=torch.randn(num_images, R, F_DIM, generator=g),
        region_mask=region_mask,
        region_labels=labels,
    )
    answers = torch.rand(b, ANSWERS, generator=g).round()
    return Batch(
        visual=visual,
        image_index=image_index,
        image_group=100 + image_index,
        input_ids=input_ids,
        attention_mask=attention_mask,
        mlm_input_ids=mlm_input_ids,
        mlm_labels=mlm_labels,
        has_answer=torch.arange(b) % 2 == 0,
        answer_targets=answers,
    )


def config(weights, **changes):
    cfg = ObjectivesConfig(weights=weights)
    for path, value in changes.items():
        node = cfg
        *parents, leaf = path.split("__")
        for part in parents:
            node = getattr(node, part)
        setattr(node, leaf, value)
    return cfg


ALL = {"mlm": 1.0, "itm": 1.0, "itc": 1.0, "mvm": 1.0, "qa": 1.0}


def test_all_losses_with_each_input_embedded_once():
    model = FakeModel()
    cfg = config(
        ALL,
        soft_labels__enabled=True,
        itm__random_negatives=1,
        itm__hard_negatives=2,
        itm__synthesized__per_positive=1,
        itm__synthesized__synonym_guard_k=2,
    )
    objectives = PretrainingObjectives(cfg, model, REPLACEABLE, mask_token_id=MASK_ID)
    batch = make_batch()
    out = objectives(batch, step=5, mode="two")
    assert set(out.losses) == set(ALL)
    assert all(torch.isfinite(loss) for loss in out.losses.values())
    b = batch.size
    # one text call: clean B + synthesized B + masked B
    assert [c for c in model.calls if c[0] == "embed_text"] == [("embed_text", 3 * b)]
    assert model.count("embed_image") == 2  # clean + MVM-masked
    assert model.count("text_mlm") == 1  # the caption generator
    assert model.count("contrastive") == 1
    fuses = [c for c in model.calls if c[0] == "fuse"]
    # pairs: B positives + B random + 2B hard + B synthesized; then the masked pass
    assert fuses == [("fuse", 5 * b, "two"), ("fuse", b, "two")]
    assert out.metrics["itm_negatives"] == 4 * b
    for name in ("itm_acc_positive", "itm_acc_random", "itm_acc_hard", "itm_acc_synthesized", "qa_score"):
        assert name in out.metrics
    assert out.total is not None and out.total.item() == pytest.approx(sum(out.losses.values()).item())
    out.total.backward()
    assert model.heads.classify.weight.grad is not None and model.heads.qa_head.weight.grad is not None


@pytest.mark.parametrize(
    "weights, expected",
    [
        ({"mlm": 1.0, "itm": 0.0, "itc": 0.0}, {"embed_text": 1, "embed_image": 1, "fuse": 1}),
        ({"itc": 1.0, "mlm": 0.0}, {"embed_text": 1, "embed_image": 1, "fuse": 0, "contrastive": 1}),
        ({"mvm": 1.0}, {"embed_text": 1, "embed_image": 1, "fuse": 1, "contrastive": 0}),
        ({"qa": 1.0}, {"embed_text": 1, "embed_image": 1, "fuse": 1, "contrastive": 0}),
    ],
)
def test_a_zero_weight_skips_the_computation(weights, expected):
    model = FakeModel()
    objectives = PretrainingObjectives(config(weights, soft_labels__enabled=True), model, REPLACEABLE)
    batch = make_batch()
    out = objectives(batch, step=0)
    assert set(out.losses) == {name for name, w in weights.items() if w > 0}
    for name, count in expected.items():
        assert model.count(name) == count, name
    assert model.count("text_mlm") == 0
    if "mvm" in weights:  # MVM alone fuses the clean captions with the masked images only
        assert [c for c in model.calls if c[0] == "embed_image"] == [("embed_image", True)]
    if "qa" in weights:
        assert [c for c in model.calls if c[0] == "fuse"] == [("fuse", batch.size, None)]


def test_itm_only_with_random_negatives_fuses_the_pairs_once():
    model = FakeModel()
    cfg = config({"itm": 1.0}, itm__random_negatives=2, itm__hard_negatives=0)
    out = PretrainingObjectives(cfg, model)(make_batch(), step=0)
    b = make_batch().size
    assert [c for c in model.calls if c[0] != "embed_image"] == [("embed_text", b), ("fuse", 3 * b, None)]
    assert out.metrics["itm_negatives"] == 2 * b


def test_hard_negatives_are_mined_from_the_itc_loss_own_similarity():
    # Without the ITC loss they are refused (untrained projections): see tests/objectives/test_fidelity.py.
    model = FakeModel()
    cfg = config({"itm": 1.0, "itc": 1.0}, itm__random_negatives=0, itm__hard_negatives=1)
    out = PretrainingObjectives(cfg, model)(make_batch(), step=0)
    assert set(out.losses) == {"itm", "itc"} and model.count("contrastive") == 1
    assert out.metrics["itm_acc_hard"] >= 0.0


def test_unknown_or_negative_weights_and_missing_inputs_are_errors():
    model = FakeModel()
    with pytest.raises(ValueError, match="unknown loss"):
        PretrainingObjectives(config({"mlm": 1.0, "itx": 1.0}), model)
    with pytest.raises(ValueError, match=">= 0"):
        PretrainingObjectives(config({"mlm": -1.0}), model)
    with pytest.raises(ValueError, match="nothing to train"):
        PretrainingObjectives(config({"mlm": 0.0}), model)
    with pytest.raises(ValueError, match="replaceable_vocab and mask_token_id"):
        PretrainingObjectives(config({"itm": 1.0}, itm__synthesized__per_positive=1), model)
    model.config.num_answers = 0
    with pytest.raises(ValueError, match="model.num_answers"):
        PretrainingObjectives(config({"qa": 1.0}), model)


def test_learnable_temperature_is_a_submodule_and_trained():
    model = FakeModel()
    objectives = PretrainingObjectives(config({"itc": 1.0}), model)
    assert isinstance(objectives.temperature, ContrastiveTemperature) and objectives.model is model
    params = dict(objectives.named_parameters())
    assert "temperature.log_scale" in params and "log_scale" not in dict(model.named_parameters())
    # what the trainer optimises (heads) and checkpoints (extra.safetensors) beside the model
    assert extra_parameters(objectives) == {"temperature.log_scale": objectives.temperature.log_scale}
    optimizer = torch.optim.SGD(objectives.parameters(), lr=0.5)
    before = objectives.temperature.log_scale.item()
    out = objectives(make_batch(), step=0)
    out.losses["itc"].backward()
    optimizer.step()
    assert objectives.temperature.log_scale.item() != before
    assert out.metrics["itc_temperature"] == pytest.approx(0.07, rel=1e-4)
    fixed = PretrainingObjectives(config({"itc": 1.0}, itc__learnable_temperature=False), model)
    assert "temperature.log_scale" in dict(fixed.named_buffers()) and extra_parameters(fixed) == {}
    assert PretrainingObjectives(config({"mlm": 1.0}), model).temperature is None  # nothing needs it


def test_soft_labels_teacher_is_a_frozen_copy_reading_the_masked_caption():
    model = FakeModel()
    cfg = config(
        {"mlm": 1.0}, soft_labels__enabled=True, soft_labels__warmup_steps=10, soft_labels__alpha=0.4
    )
    objectives = PretrainingObjectives(cfg, model)
    teacher = objectives.teacher
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    assert teacher.embed.weight.data_ptr() != model.embed.weight.data_ptr()
    seen = []
    teacher.register_forward_hook(lambda module, args, output: seen.append(args[0].clone()))
    batch = make_batch()
    out = objectives(batch, step=0)
    assert seen == [] and out.metrics["mlm_soft_alpha"] == 0.0  # alpha 0 at step 0: no teacher pass
    out = objectives(batch, step=5)
    assert len(seen) == 1 and torch.equal(seen[0], batch.mlm_input_ids)
    assert out.metrics["mlm_soft_alpha"] == pytest.approx(0.2)
    out.losses["mlm"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    # the teacher keeps the initial weights while the model trains
    with torch.no_grad():
        model.embed.weight.add_(1.0)
    assert not torch.equal(teacher.embed.weight, model.embed.weight)


def test_soft_label_loss_equals_hand_mix_of_hard_and_teacher_targets():
    model = FakeModel()
    cfg = config(
        {"mlm": 1.0}, soft_labels__enabled=True, soft_labels__alpha=0.5, soft_labels__temperature=2.0
    )
    objectives = PretrainingObjectives(cfg, model)
    batch = make_batch()
    model.eval()
    loss = objectives(batch, step=100).losses["mlm"]
    positions = batch.mlm_labels != -100
    text = model.embed_text(batch.mlm_input_ids, batch.attention_mask)
    images = model.embed_image(batch.visual)
    logits = model.mlm_logits(model.fuse(text, images, batch.image_index), positions)
    teacher_logits = objectives.teacher(batch.mlm_input_ids, batch.attention_mask, positions)
    soft = torch.softmax(teacher_logits / 2.0, -1)
    log_p = torch.log_softmax(logits, -1)
    expected = (
        0.5 * F.cross_entropy(logits, batch.mlm_labels[positions]) - 0.5 * (soft * log_p).sum(-1).mean()
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_an_explicit_teacher_and_its_state_round_trip():
    model = FakeModel()
    given = copy.deepcopy(model.text_language_model())
    objectives = PretrainingObjectives(config({"mlm": 1.0}, soft_labels__enabled=True), model, teacher=given)
    assert objectives.teacher is given and not given.training
    state = copy.deepcopy(objectives.state_dict())
    with torch.no_grad():
        given.embed.weight.zero_()
    objectives.load_state_dict(state)
    assert torch.equal(given.embed.weight, state["teacher.embed.weight"])


def test_the_teacher_stays_frozen_and_in_eval_mode_when_training():
    model = FakeModel()
    cfg = config(
        {"mlm": 1.0, "itm": 1.0, "itc": 1.0}, soft_labels__enabled=True, itm__synthesized__per_positive=1
    )
    objectives = PretrainingObjectives(cfg, model, REPLACEABLE, mask_token_id=MASK_ID)
    teacher = objectives.teacher
    assert dict(objectives.named_children())["teacher"] is teacher
    for mode in (True, False, True):
        assert objectives.train(mode) is objectives
        assert objectives.training is mode and model.training is mode
        assert not teacher.training and not any(m.training for m in teacher.modules())
        assert all(not p.requires_grad for p in teacher.parameters())
    # frozen, so neither optimised nor in the trainer's checkpoints (the ITC temperature is)
    assert list(extra_parameters(objectives)) == ["temperature.log_scale"]
    # the vocabulary mask moves with the module but is not saved with it
    assert torch.equal(dict(objectives.named_buffers())["replaceable_vocab"], REPLACEABLE)
    assert not any(key.startswith("replaceable_vocab") for key in objectives.state_dict())
    objectives(make_batch(), step=3).total.backward()
    assert all(p.grad is None for p in teacher.parameters())


def test_the_mode_schedule_picks_the_mode_in_training_and_in_eval():
    model = FakeModel()
    schedule = ModeSchedule(ModeScheduleConfig(kind="iterative", every=1))  # single, two, single, ...
    objectives = PretrainingObjectives(config({"mlm": 1.0}), model, mode_schedule=schedule)
    batch = make_batch()

    def modes_of_calls(*steps, mode=None):
        seen = []
        for step in steps:
            model.calls.clear()
            objectives(batch, step, mode)
            seen.append([c[2] for c in model.calls if c[0] == "fuse"])
        return seen

    assert modes_of_calls(3, 0, 2) == [["two"], ["single"], ["single"]]  # training: the step's mode
    objectives.eval()  # eval: the i-th call runs in the mode of step i, whatever step is passed
    assert modes_of_calls(7, 7, 7) == [["single"], ["two"], ["single"]]
    objectives.eval()  # counted again from the start
    assert modes_of_calls(7) == [["single"]]
    assert modes_of_calls(7, mode="two") == [["two"]]  # an explicit mode wins
    objectives.train()
    assert modes_of_calls(1, 1, mode=None) == [["two"], ["two"]]
    assert modes_of_calls(1, mode="single") == [["single"]]
    plain = PretrainingObjectives(config({"mlm": 1.0}), model)  # no schedule: the model's default
    model.calls.clear()
    plain(batch, 1)
    assert [c[2] for c in model.calls if c[0] == "fuse"] == [None]


def test_text_only_stage_trains_the_language_model_alone():
    model = FakeModel()
    objectives = PretrainingObjectives(config({"mlm": 1.0, "itm": 1.0}, text_only=True), model)
    batch = make_batch()
    out = objectives(batch, step=0)
    assert set(out.losses) == {"mlm"} and model.calls == [("text_mlm", batch.size)]
    positions = batch.mlm_labels != -100
    expected = F.cross_entropy(
        model.text_mlm_logits(batch.mlm_input_ids, batch.attention_mask, positions),
        batch.mlm_labels[positions],
    )
    assert out.losses["mlm"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_qa_without_questions_is_a_connected_zero():
    model = FakeModel()
    batch = make_batch()
    batch.has_answer = torch.zeros(batch.size, dtype=torch.bool)
    out = PretrainingObjectives(config({"qa": 1.0}), model)(batch, step=0)
    assert out.losses["qa"].item() == 0.0
    out.losses["qa"].backward()
    assert model.heads.qa_head.weight.grad is not None


def test_mvm_masks_real_regions_only_and_regresses_their_features():
    model = FakeModel()
    cfg = config({"mvm": 1.0}, mvm__mask_ratio=0.5, mvm__loss="mse")
    objectives = PretrainingObjectives(cfg, model)
    batch = make_batch()
    masks = []
    original = model.embed_image

    def spy(visual, visual_mask=None):
        masks.append(visual_mask)
        return original(visual, visual_mask)

    model.embed_image = spy
    out = objectives(batch, step=0)
    (visual_mask,) = masks
    assert not visual_mask[:, 0].any()  # never the [CLS] token
    assert not visual_mask[0, -1]  # never a padded region
    assert visual_mask.sum(1).tolist() == [1, 2, 2]  # round half up of 0.5 * (2, 3, 3)
    assert {"mvm_regress", "mvm_label_loss", "mvm_label_acc"} <= set(out.metrics)


def test_a_few_steps_lower_the_loss():
    model = FakeModel()
    cfg = config(
        ALL,
        soft_labels__enabled=True,
        itm__hard_negatives=1,
        itm__synthesized__per_positive=1,
    )
    objectives = PretrainingObjectives(cfg, model, REPLACEABLE, mask_token_id=MASK_ID)
    trainable = [p for p in objectives.parameters() if p.requires_grad]  # the model and the temperature
    assert len(trainable) == len(list(model.parameters())) + 1
    optimizer = torch.optim.Adam(trainable, lr=0.02)
    batch = make_batch()

    def total():
        return objectives(batch, step=10).total

    torch.manual_seed(0)
    first = total().item()
    for _ in range(30):
        optimizer.zero_grad()
        total().backward()
        optimizer.step()
    torch.manual_seed(0)
    assert total().item() < 0.7 * first


def test_the_temperature_submodule_gets_the_gradient():
    model = FakeModel()
    objectives = PretrainingObjectives(config({"itc": 1.0}), model)
    objectives(make_batch(), step=0).losses["itc"].backward()
    grad = objectives.temperature.log_scale.grad
    assert grad is not None and grad.abs() > 0
