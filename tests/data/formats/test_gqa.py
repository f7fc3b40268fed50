"""GQA question reader on files in the release layout (a JSON object keyed by question id)."""

import json
import os

import pytest

from vlp.data.formats.gqa import read_gqa
from vlp.data.formats.reading import FormatError


def _question(image_id, question, answer=None, full=None):
    item = {
        "semantic": [],
        "entailed": [],
        "equivalent": [],
        "question": question,
        "imageId": image_id,
        "isBalanced": True,
        "groups": {"global": None, "local": "10c-room"},
        "semanticStr": "",
        "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
        "types": {"structural": "query"},
    }
    if answer is not None:
        item["answer"] = answer
        item["fullAnswer"] = full
    return item


def test_read_gqa_balanced_questions(tmp_path):
    path = tmp_path / "testdev_balanced_questions.json"
    path.write_text(
        json.dumps(
            {
                "20968379": _question(
                    "n288870", "Do the shorts have dark color?", "yes", "Yes, the shorts are dark."
                ),
                "201307251": _question("2407890", "Is it overcast?", "no", "No, it is clear."),
            }
        )
    )
    records = read_gqa(path, "gqa/images")
    assert [r.question_id for r in records] == ["20968379", "201307251"]
    assert records[0].image_path == os.path.join("gqa/images", "n288870.jpg")
    assert (records[1].image_id, records[1].answer, records[1].full_answer) == (
        "2407890",
        "no",
        "No, it is clear.",
    )


def test_submission_questions_have_no_answer(tmp_path):
    path = tmp_path / "submission_all_questions.json"
    path.write_text(json.dumps({"q1": _question("n1", "What is it?")}))
    (record,) = read_gqa(path, "images")
    assert record.answer == "" and record.full_answer == ""


def test_folder_of_numbered_files_is_read_in_numeric_order(tmp_path):
    folder = tmp_path / "train_all_questions"
    folder.mkdir()
    for n in (0, 1, 10, 2):
        (folder / f"train_all_questions_{n}.json").write_text(
            json.dumps({f"q{n}": _question("1", "?", "a", "A.")})
        )
    assert [r.question_id for r in read_gqa(folder, "images")] == ["q0", "q1", "q2", "q10"]


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="val_balanced_questions.json"):
        read_gqa(tmp_path / "val_balanced_questions.json", "images")
    path = tmp_path / "train_balanced_questions.json"
    item = _question("1", "?", "yes", "Yes.")
    del item["imageId"]
    path.write_text(json.dumps({"123": item}))
    with pytest.raises(
        FormatError, match="train_balanced_questions.json: question '123' has no field 'imageId'"
    ):
        read_gqa(path, "images")
    path.write_text(json.dumps([_question("1", "?")]))
    with pytest.raises(FormatError, match="keyed by question id"):
        read_gqa(path, "images")
