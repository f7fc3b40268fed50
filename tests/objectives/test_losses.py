"""Pure-tensor losses of vlp.objectives against hand computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from vlp.metrics import mean_vqa_soft_score
from vlp.objectives.base import ObjectiveOutput, image_groups, sample_positions
from vlp.objectives.itc import ContrastiveTemperature, contrastive_loss, gather_with_grad, multi_positive_nce
from vlp.objectives.itm import itm_loss, pair_rows
from vlp.objectives.mlm import alpha_at, mlm_loss, soft_label_mlm_loss, soft_targets
from vlp.objectives.mvm import aligned_region_labels, choose_visual_mask, regression_loss
from vlp.objectives.negatives import HARD, RANDOM, SYNTHESIZED, NegativePairs
from vlp.objectives.qa import qa_loss

# --------------------------------------------------------------------------- MLM


def test_mlm_loss_is_cross_entropy_by_hand():
    logits = torch.tensor([[math.log(1.0), math.log(3.0)], [math.log(2.0), math.log(2.0)]])
    labels = torch.tensor([0, 1])
    # p(label) = 1/4 and 1/2
    expected = (math.log(4.0) + math.log(2.0)) / 2
    assert mlm_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_mlm_loss_without_masked_positions_is_a_connected_zero():
    logits = torch.zeros(0, 5, requires_grad=True)
    loss = mlm_loss(logits, torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_soft_targets_temperature_as_defined():
    # softmax([0, ln 4] / 2) = softmax([0, ln 2]) = [1/3, 2/3]
    soft = soft_targets(torch.tensor([[0.0, math.log(4.0)]]), temperature=2.0)
    assert torch.allclose(soft, torch.tensor([[1 / 3, 2 / 3]]), atol=1e-6)


def test_soft_targets_large_temperature_is_uniform():
    logits = torch.tensor([[5.0, -3.0, 0.5, 9.0]])
    soft = soft_targets(logits, temperature=1e6)
    assert torch.allclose(soft, torch.full((1, 4), 0.25), atol=1e-4)


def test_soft_targets_top_k_keeps_the_k_most_likely_renormalised():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    soft = soft_targets(probs.log(), temperature=1.0, top_k=2)
    assert torch.allclose(soft, torch.tensor([[0.0, 0.625, 0.0, 0.375]]), atol=1e-6)
    # top_k >= V is the full distribution
    assert torch.allclose(soft_targets(probs.log(), top_k=4), probs, atol=1e-6)


def test_soft_targets_rejects_a_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        soft_targets(torch.zeros(1, 3), temperature=0.0)


def test_soft_label_loss_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # student p = [1/4, 3/4]
    labels = torch.tensor([0])
    soft = torch.tensor([[0.5, 0.5]])
    hard_ce = math.log(4.0)
    soft_ce = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    loss = soft_label_mlm_loss(logits, labels, soft, alpha=0.3)
    assert loss.item() == pytest.approx(0.7 * hard_ce + 0.3 * soft_ce, rel=1e-6)


def test_alpha_zero_is_plain_cross_entropy():
    logits = torch.randn(6, 11)
    labels = torch.randint(0, 11, (6,))
    soft = torch.softmax(torch.randn(6, 11), -1)
    assert torch.allclose(soft_label_mlm_loss(logits, labels, soft, 0.0), F.cross_entropy(logits, labels))


def test_one_hot_teacher_is_plain_cross_entropy():
    logits = torch.randn(5, 7)
    labels = torch.randint(0, 7, (5,))
    teacher_logits = F.one_hot(labels, 7).float() * 1e4  # a teacher certain of the label
    soft = soft_targets(teacher_logits, temperature=1.0, top_k=3)
    loss = soft_label_mlm_loss(logits, labels, soft, alpha=0.8)
    assert torch.allclose(loss, F.cross_entropy(logits, labels), atol=1e-5)


def test_soft_label_loss_tolerates_impossible_tokens_outside_the_soft_support():
    logits = torch.tensor([[0.0, float("-inf"), 0.0]])
    soft = torch.tensor([[0.5, 0.0, 0.5]])
    loss = soft_label_mlm_loss(logits, torch.tensor([0]), soft, alpha=0.5)
    assert loss.item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_soft_label_loss_names_a_vocabulary_mismatch():
    with pytest.raises(ValueError, match="same tokenizer"):
        soft_label_mlm_loss(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), torch.zeros(2, 6), 0.5)


def test_alpha_warmup_is_linear():
    assert alpha_at(0, 0.5, 10) == 0.0
    assert alpha_at(5, 0.5, 10) == pytest.approx(0.25)
    assert alpha_at(10, 0.5, 10) == pytest.approx(0.5)
    assert alpha_at(50, 0.5, 10) == pytest.approx(0.5)
    assert alpha_at(0, 0.5, 0) == 0.5


# --------------------------------------------------------------------------- ITC


def _clip_info_nce(text, image, scale):
    """The textbook symmetric InfoNCE of one-to-one pairs, written independently."""
    logits = scale * text @ image.t()
    target = torch.arange(text.shape[0])
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def test_contrastive_loss_matches_info_nce_for_one_to_one_pairs():
    text = F.normalize(torch.randn(5, 8), dim=-1)
    image = F.normalize(torch.randn(5, 8), dim=-1)
    groups = torch.tensor([10, 11, 12, 13, 14])
    scale = torch.tensor(1 / 0.07)
    loss = contrastive_loss(text, image, groups, groups, scale)
    assert torch.allclose(loss, _clip_info_nce(text, image, scale), atol=1e-5)


def test_contrastive_loss_counts_texts_of_the_same_image_as_positives():
    # texts 0 and 1 describe image 0; text 2 describes image 1
    text = F.normalize(torch.randn(3, 4), dim=-1)
    image = F.normalize(torch.randn(2, 4), dim=-1)
    text_groups = torch.tensor([7, 7, 9])
    image_groups_ = torch.tensor([7, 9])
    logits = text @ image.t()
    t2i = -(F.log_softmax(logits, 1)[[0, 1, 2], [0, 0, 1]]).mean()
    i2t_log = F.log_softmax(logits.t(), 1)
    i2t = -((0.5 * i2t_log[0, 0] + 0.5 * i2t_log[0, 1]) + i2t_log[1, 2]) / 2
    loss = contrastive_loss(text, image, text_groups, image_groups_, torch.tensor(1.0))
    assert loss.item() == pytest.approx(((t2i + i2t) / 2).item(), rel=1e-5)


def test_multi_positive_nce_skips_queries_without_positive():
    q = F.normalize(torch.randn(2, 4), dim=-1)
    k = F.normalize(torch.randn(2, 4), dim=-1)
    # query 1's group is absent from the keys; key 1 has group -1 (unknown)
    loss = multi_positive_nce(q, k, torch.tensor([3, 4]), torch.tensor([3, -1]), torch.tensor(2.0))
    expected = -F.log_softmax(2.0 * q @ k.t(), 1)[0, 0]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_temperature_module_scale_clamp_and_gradient():
    module = ContrastiveTemperature(0.07)
    assert module().item() == pytest.approx(1 / 0.07, rel=1e-5)
    assert module.temperature == pytest.approx(0.07, rel=1e-5)
    text = F.normalize(torch.randn(4, 3), dim=-1)
    image = F.normalize(torch.randn(4, 3), dim=-1)
    contrastive_loss(text, image, torch.arange(4), torch.arange(4), module()).backward()
    assert module.log_scale.grad is not None and module.log_scale.grad.abs() > 0
    with torch.no_grad():
        module.log_scale.fill_(50.0)  # T = e^-50, below the minimum
    assert module().item() == pytest.approx(1 / 0.001, rel=1e-4)
    fixed = ContrastiveTemperature(0.1, learnable=False)
    assert list(fixed.parameters()) == [] and fixed().item() == pytest.approx(10.0)
    with pytest.raises(ValueError, match="objectives.itc.temperature"):
        ContrastiveTemperature(0.0)


def test_gather_without_process_group_is_identity():
    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x


# --------------------------------------------------------------------------- ITM / QA / MVM


def test_pair_rows_layout():
    negatives = NegativePairs(torch.tensor([1, 3]), torch.tensor([0, 1]), torch.tensor([RANDOM, SYNTHESIZED]))
    text_rows, images, labels, sources = pair_rows(2, torch.tensor([0, 1]), negatives)
    assert text_rows.tolist() == [0, 1, 1, 3]
    assert images.tolist() == [0, 1, 0, 1]
    assert labels.tolist() == [1, 1, 0, 0]
    assert sources.tolist() == [0, 0, RANDOM, SYNTHESIZED]


def test_itm_loss_and_per_source_accuracy():
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([1, 1, 0, 0])
    sources = torch.tensor([0, 0, HARD, RANDOM])
    loss, metrics = itm_loss(logits, labels, sources)
    assert torch.allclose(loss, F.cross_entropy(logits, labels))
    assert metrics["itm_acc"] == pytest.approx(0.5)
    assert metrics["itm_acc_positive"] == pytest.approx(0.5)
    assert metrics["itm_acc_hard"] == 0.0 and metrics["itm_acc_random"] == 1.0
    assert "itm_acc_synthesized" not in metrics


def test_balanced_itm_loss_gives_each_class_half_the_weight():
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([1, 0, 0, 0])
    sources = torch.tensor([0, HARD, RANDOM, RANDOM])
    loss, metrics = itm_loss(logits, labels, sources, balance_classes=True)
    per_row = F.cross_entropy(logits, labels, reduction="none")
    assert torch.allclose(loss, 0.5 * per_row[0] + 0.5 * per_row[1:].mean())
    assert metrics["itm_acc_balanced"] == pytest.approx(0.5 * (1.0 + 2 / 3))
    # with one negative per positive it is plain cross-entropy
    pairs = torch.tensor([1, 0])
    balanced, _ = itm_loss(logits[:2], pairs, sources[:2], balance_classes=True)
    assert torch.allclose(balanced, F.cross_entropy(logits[:2], pairs))


def test_qa_loss_is_bce_times_answers_and_score_of_argmax():
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    targets = torch.tensor([[0.0, 0.6, 1.0]])
    by_hand = 0.0
    for x, y in zip(logits[0].tolist(), targets[0].tolist(), strict=True):
        p = 1 / (1 + math.exp(-x))
        by_hand -= y * math.log(p) + (1 - y) * math.log(1 - p)
    assert qa_loss(logits, targets).item() == pytest.approx(by_hand, rel=1e-5)
    assert mean_vqa_soft_score(logits, targets) == pytest.approx(0.6)
    assert mean_vqa_soft_score(logits[:0], targets[:0]) == 0.0
    with pytest.raises(ValueError, match="num_answers"):
        qa_loss(torch.zeros(1, 3), torch.zeros(1, 4))


def test_regression_losses_by_hand():
    pred = torch.tensor([[0.5, 2.0]])
    target = torch.zeros(1, 2)
    # smooth-L1 (beta 1): 0.5 * 0.5^2 = 0.125 and 2 - 0.5 = 1.5
    assert regression_loss(pred, target).item() == pytest.approx((0.125 + 1.5) / 2)
    assert regression_loss(pred, target, "mse").item() == pytest.approx((0.25 + 4.0) / 2)
    with pytest.raises(ValueError, match="objectives.mvm.loss"):
        regression_loss(pred, target, "l3")


def test_region_labels_align_with_a_leading_cls_token():
    labels = torch.tensor([[4, -100, 2]])
    assert aligned_region_labels(labels, 3).tolist() == [[4, -100, 2]]
    assert aligned_region_labels(labels, 4).tolist() == [[-100, 4, -100, 2]]
    with pytest.raises(ValueError, match="region_labels"):
        aligned_region_labels(labels, 6)


def test_position_sampling_takes_the_ratio_of_eligible_tokens():
    eligible = torch.tensor([[True] * 10, [True, False] * 5, [False] * 10])
    for _ in range(20):
        chosen = sample_positions(eligible, 0.3)
        assert not (chosen & ~eligible).any()
        assert chosen.sum(1).tolist() == [3, 2, 0]  # round(3.0), round(1.5)=2, none
    assert choose_visual_mask(eligible, 0.01).sum(1).tolist() == [1, 1, 0]  # at least one
    with pytest.raises(ValueError, match="objectives.mvm.mask_ratio"):
        choose_visual_mask(eligible, 0.0)


# --------------------------------------------------------------------------- plumbing


def test_image_groups_and_output_total():
    assert image_groups(torch.tensor([2, 0, 2]), torch.tensor([8, 5, 8]), 4).tolist() == [5, -1, 8, -1]
    out = ObjectiveOutput(losses={"mlm": torch.tensor(2.0)}, metrics={"mlm_acc": 0.5})
    out.update(ObjectiveOutput(losses={"itm": torch.tensor(3.0)}))
    assert out.weighted({"mlm": 0.5, "itm": 2.0}).total.item() == pytest.approx(7.0)
    with pytest.raises(ValueError, match="computed twice"):
        out.update(ObjectiveOutput(losses={"mlm": torch.tensor(1.0)}))
    with pytest.raises(ValueError, match="no weight"):
        out.weighted({"mlm": 1.0})
