"""VQAv2 reader, answer vocabulary and soft targets on files in the official layout."""

import json
import os

import pytest

from vlp.data.formats.reading import FormatError
from vlp.data.formats.vqa import answer_score, answer_targets, build_answer_vocab, read_vqa
from vlp.data.records import VQARecord
from vlp.metrics import vqa_accuracy


def _answers(values):
    return [{"answer": v, "answer_confidence": "yes", "answer_id": i + 1} for i, v in enumerate(values)]


@pytest.fixture
def vqa_files(tmp_path):
    questions = {
        "info": {},
        "task_type": "Open-Ended",
        "data_type": "mscoco",
        "license": {},
        "data_subtype": "train2014",
        "questions": [
            {
                "image_id": 458752,
                "question": "What is this photo taken looking through?",
                "question_id": 458752000,
            },
            {"image_id": 262146, "question": "What color is the snow?", "question_id": 262146001},
        ],
    }
    annotations = {
        "info": {},
        "license": {},
        "data_subtype": "train2014",
        "annotations": [
            {
                "question_type": "what color is the",
                "multiple_choice_answer": "white",
                "answers": _answers(["white"] * 8 + ["White.", "gray"]),
                "image_id": 262146,
                "answer_type": "other",
                "question_id": 262146001,
            },
            {
                "question_type": "what is this",
                "multiple_choice_answer": "net",
                "answers": _answers(["net"] * 2 + ["netting"] * 7 + ["the net"]),
                "image_id": 458752,
                "answer_type": "other",
                "question_id": 458752000,
            },
        ],
    }
    q = tmp_path / "v2_OpenEnded_mscoco_train2014_questions.json"
    a = tmp_path / "v2_mscoco_train2014_annotations.json"
    q.write_text(json.dumps(questions))
    a.write_text(json.dumps(annotations))
    return q, a


def test_read_vqa_joins_questions_and_annotations(vqa_files):
    q, a = vqa_files
    records = read_vqa(q, a, "/coco")
    assert [r.question_id for r in records] == [458752000, 262146001]  # questions-file order
    first = records[0]
    assert first.image_path == os.path.join("/coco", "train2014", "COCO_train2014_000000458752.jpg")
    assert first.question == "What is this photo taken looking through?"
    assert first.answers == ["net", "net"] + ["netting"] * 7 + ["the net"]
    assert (first.multiple_choice_answer, first.answer_type, first.question_type) == (
        "net",
        "other",
        "what is this",
    )


def test_read_vqa_test_split_without_annotations(tmp_path):
    q = tmp_path / "v2_OpenEnded_mscoco_test-dev2015_questions.json"
    q.write_text(
        json.dumps(
            {
                "data_subtype": "test-dev2015",
                "questions": [{"image_id": 1, "question": "Is it sunny?", "question_id": 10}],
            }
        )
    )
    (record,) = read_vqa(q, None, "coco")
    # test-dev questions use the test2015 images.
    assert record.image_path == os.path.join("coco", "test2015", "COCO_test2015_000000000001.jpg")
    assert record.answers == [] and record.multiple_choice_answer == ""


def test_read_vqa_bad_input(tmp_path, vqa_files):
    q, a = vqa_files
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_vqa(tmp_path / "nope.json", a, "coco")
    data = json.loads(a.read_text())
    del data["annotations"][1]["multiple_choice_answer"]
    a.write_text(json.dumps(data))
    with pytest.raises(
        FormatError,
        match=r"annotations\.json: annotations\[1\] \(question_id 458752000\) has no "
        r"field 'multiple_choice_answer'",
    ):
        read_vqa(q, a, "coco")
    data["annotations"] = data["annotations"][:1]
    a.write_text(json.dumps(data))
    with pytest.raises(FormatError, match="no annotation for question_id 458752000"):
        read_vqa(q, a, "coco")
    questions = json.loads(q.read_text())
    questions["questions"][1]["question_id"] = "262146001"
    q.write_text(json.dumps(questions))
    with pytest.raises(FormatError, match=r"questions\[1\] field 'question_id' is '262146001', expected int"):
        read_vqa(q, None, "coco")


def _record(mc, answers=()):
    return VQARecord(
        question_id=0,
        image_id=0,
        image_path="",
        question="?",
        answers=list(answers),
        multiple_choice_answer=mc,
    )


def test_build_answer_vocab_counts_normalised_answers_most_frequent_first():
    records = [_record("Two")] * 3 + [_record("2")] + [_record("yes")] * 4 + [_record("cat")] * 2
    records += [_record("dog")] * 2 + [_record("rare")] + [_record("", ["no"])] * 2 + [_record("")]
    assert build_answer_vocab(records, min_count=2) == ["2", "yes", "cat", "dog", "no"]
    assert build_answer_vocab(records, min_count=4) == ["2", "yes"]


def test_answer_targets_soft_scores(vqa_files):
    q, a = vqa_files
    net, snow = read_vqa(q, a, "coco")
    vocab = {"net": 0, "netting": 1, "white": 2, "gray": 3}
    # "net" x2 + "the net" (normalised to "net") = 3 -> 0.9; "netting" x7 -> 1.0
    assert answer_targets(net, vocab) == {0: pytest.approx(0.9), 1: 1.0}
    # "white" x8 + "White." -> 9 -> 1.0; "gray" x1 -> 0.3
    assert answer_targets(snow, vocab) == {2: 1.0, 3: pytest.approx(0.3)}
    assert answer_targets(snow, {"black": 0}) == {}


def test_answer_score_equals_official_accuracy_with_ten_annotators():
    for count in range(11):
        gts = ["x"] * count + ["y"] * (10 - count)
        assert answer_score(count) == pytest.approx(vqa_accuracy("x", gts))
    assert [answer_score(c) for c in (0, 1, 2, 3, 4, 9)] == [0.0, 0.3, 0.6, 0.9, 1.0, 1.0]
