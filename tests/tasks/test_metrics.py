"""Metrics against hand-computed values, including the official VQA normalisation quirks."""

import pytest
import torch

from vlp.data.answers import CONTRACTIONS, normalize_answer, process_punctuation
from vlp.metrics import (
    accuracy,
    recall_at_k,
    retrieval_recalls,
    vqa_accuracy,
    vqa_score_batch,
    vqa_soft_score,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The two dogs!", "2 dogs"),  # article dropped, number word mapped, "!" spaced out
        ("\tYes\n", "yes"),  # tabs/newlines, strip, lower-case
        ("dont", "don't"),  # contraction table
        ("Dont know", "don't know"),
        ("Im", "im"),  # the table's capitalised keys never match after lower-casing
        ("none", "0"),
        ("x-y", "x y"),  # a mark with no space next to it becomes a space
        ("x - y", "x y"),  # ... and is deleted when a space is next to it anywhere in the text
        ("red,blue", "red blue"),
        ("1,000", "1000"),  # digit,digit: every mark is deleted instead
        ("1,000 red,blue", "1000 redblue"),
        ("3.5", "3.5"),  # a period before a digit stays
        ("no.1", "no.1"),
        ("mr. smith.", "mr smith"),
        ("yes.", "yes"),
        ("it's", "it's"),  # apostrophes are not punctuation here
        ("an apple: 2", "apple: 2"),  # colons are not either
        ("", ""),
    ],
)
def test_normalize_answer_follows_official_rules(raw, expected):
    assert normalize_answer(raw) == expected


def test_period_rule_removes_at_most_32_periods_like_the_official_call():
    # The official script passes re.UNICODE (32) as the substitution count.
    assert process_punctuation("." * 40) == "." * 8


def test_contraction_table_size_and_entries():
    assert len(CONTRACTIONS) == 120
    assert CONTRACTIONS["whats"] == "what's"
    assert CONTRACTIONS["somebody'd"] == "somebodyd"  # kept as published


def test_vqa_accuracy_leave_one_out_hand_values():
    gts = ["yes"] * 3 + ["no"] * 7
    # "yes": 7 subsets keep all 3 matches (1.0), 3 subsets keep 2 (2/3) -> (7 + 2) / 10
    assert vqa_accuracy("yes", gts) == pytest.approx(0.9)
    assert vqa_accuracy("no", gts) == pytest.approx(1.0)
    assert vqa_accuracy("maybe", gts) == 0.0
    one = ["cat"] + ["dog"] * 9  # 9 subsets with 1 match (1/3), 1 with none
    assert vqa_accuracy("cat", one) == pytest.approx(0.3)
    two = ["cat"] * 2 + ["dog"] * 8  # 8 subsets with 2 (2/3), 2 with 1 (1/3)
    assert vqa_accuracy("Cat.", two) == pytest.approx(0.6)


def test_vqa_accuracy_ground_truth_only_gets_punctuation_processing():
    # Unanimous answers are compared as they are; the prediction is fully normalised.
    assert vqa_accuracy("Two", ["2"] * 10) == 1.0
    # Non-unanimous: "two." -> "two" (punctuation only, no number mapping), so only the "2"s match.
    assert vqa_accuracy("2", ["2"] * 2 + ["two."] * 8) == pytest.approx(0.6)


def test_vqa_accuracy_rejects_no_answers():
    with pytest.raises(ValueError, match="gt_answers"):
        vqa_accuracy("yes", [])


def test_vqa_score_batch_scores_each_question():
    scores = vqa_score_batch(["yes", "2"], [["yes"] * 10, ["3"] * 10])
    assert scores == [1.0, 0.0]
    with pytest.raises(ValueError, match="2 predictions but 1"):
        vqa_score_batch(["a", "b"], [["a"]])


def test_vqa_soft_score_takes_target_at_argmax():
    logits = torch.tensor([[0.1, 2.0, 0.0], [3.0, 0.0, 0.5]])
    targets = torch.tensor([[0.0, 0.6, 1.0], [0.3, 0.0, 1.0]])
    assert vqa_soft_score(logits, targets).tolist() == pytest.approx([0.6, 0.3])


def test_recall_at_k_hand_example():
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.3],  # positive 0 ranks first
            [0.9, 0.1, 0.8, 0.3],  # positive 2 ranks second
            [0.9, 0.1, 0.8, 0.3],  # positive 1 ranks last (4th)
        ]
    )
    result = recall_at_k(scores, [{0}, {2}, {1}], ks=(1, 2, 4))
    assert result["r@1"] == pytest.approx(1 / 3)
    assert result["r@2"] == pytest.approx(2 / 3)
    assert result["r@4"] == pytest.approx(1.0)
    assert result["r_mean"] == pytest.approx((1 / 3 + 2 / 3 + 1) / 3)
    # The same as a bool mask, and several positives: the best one counts.
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[2, 1] = mask[2, 3] = True
    mask[0, 0] = mask[1, 2] = True
    assert recall_at_k(scores, mask, ks=(1, 2))["r@2"] == pytest.approx(2 / 3)


def test_recall_at_k_counts_ties_against_the_query():
    scores = torch.zeros(2, 5)
    result = recall_at_k(scores, [{0}, {4}], ks=(1, 4, 5))
    assert result["r@1"] == 0.0 and result["r@4"] == 0.0 and result["r@5"] == 1.0


def test_recall_at_k_rejects_queries_without_positive():
    with pytest.raises(ValueError, match="query 1 has no positive"):
        recall_at_k(torch.zeros(2, 3), [{0}, set()])
    with pytest.raises(ValueError, match="outside"):
        recall_at_k(torch.zeros(1, 3), [{3}])


def test_retrieval_recalls_both_directions():
    # 4 captions, 2 images: captions 0,1 -> image 0; captions 2,3 -> image 1.
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.1, 0.7], [0.6, 0.5]])
    result = retrieval_recalls(scores, [0, 0, 1, 1], ks=(1,))
    assert result["t2i_r@1"] == pytest.approx(2 / 4)  # captions 0 and 2 right
    # image 0: best caption is 0 (positive); image 1: best caption is 1 (0.8, a negative)
    assert result["i2t_r@1"] == pytest.approx(1 / 2)
    assert result["rsum"] == pytest.approx(100.0)


def test_accuracy_from_labels_and_logits():
    assert accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == pytest.approx(0.75)
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(logits, torch.tensor([1, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="differ"):
        accuracy([1, 2], [1])
    assert accuracy([], []) == 0.0  # no examples (a batch without masked tokens): defined as 0.0
    assert accuracy(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)) == 0.0
