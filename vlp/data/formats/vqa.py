"""VQAv2: questions and annotations as released, the answer vocabulary and soft answer targets.

Files (https://visualqa.org/download.html)::

    v2_OpenEnded_mscoco_<subtype>_questions.json
        {"data_subtype": "train2014", "questions": [{"image_id", "question", "question_id"}, ...], ...}
    v2_mscoco_<subtype>_annotations.json
        {"annotations": [{"question_id", "image_id", "answers": [{"answer", "answer_confidence",
          "answer_id"}, ...10], "multiple_choice_answer", "answer_type", "question_type"}, ...], ...}

Images are found as COCO releases them: ``<images_root>/<subtype>/COCO_<subtype>_<image_id:012d>.jpg``.
The test-dev questions (subtype ``test-dev2015``) are a subset of ``test2015`` and use its images.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

from vlp.data.answers import normalize_answer
from vlp.data.formats.reading import FormatError, field, load_json
from vlp.data.records import VQARecord

# Question subtypes whose images live in another COCO folder.
_IMAGE_SUBTYPE = {"test-dev2015": "test2015"}


def coco_image_path(images_root: str | os.PathLike, subtype: str, image_id: int) -> str:
    """COCO's file name for an image of ``subtype`` (train2014, val2014, test2015)."""
    folder = _IMAGE_SUBTYPE.get(subtype, subtype)
    return os.path.join(os.fspath(images_root), folder, f"COCO_{folder}_{image_id:012d}.jpg")


def read_vqa(
    questions_json: str | os.PathLike,
    annotations_json: str | os.PathLike | None,
    images_root: str | os.PathLike,
) -> list[VQARecord]:
    """Read a VQAv2 split: one record per question, in the order of the questions file.

    ``annotations_json`` is ``None`` for the test splits (records then carry no answers). Every question
    must have an annotation when one is given.
    """
    questions_path = os.fspath(questions_json)
    data = load_json(questions_path)
    subtype = field(data, "data_subtype", questions_path, "the top-level object", str)
    questions = field(data, "questions", questions_path, "the top-level object", list)

    annotations: dict[int, dict] = {}
    if annotations_json is not None:
        annotations = _read_annotations(os.fspath(annotations_json))

    records = []
    first_index: dict[int, int] = {}
    for index, item in enumerate(questions):
        where = f"questions[{index}]"
        question_id = field(item, "question_id", questions_path, where, int)
        _check_unique(first_index, question_id, index, questions_path, "questions")
        where = f"questions[{index}] (question_id {question_id})"
        image_id = field(item, "image_id", questions_path, where, int)
        record = VQARecord(
            question_id=question_id,
            image_id=image_id,
            image_path=coco_image_path(images_root, subtype, image_id),
            question=field(item, "question", questions_path, where, str),
        )
        if annotations_json is not None:
            annotation = annotations.get(question_id)
            if annotation is None:
                raise FormatError(
                    f"{annotations_json}: no annotation for question_id {question_id} of {questions_path}"
                )
            if annotation["image_id"] != image_id:
                raise FormatError(
                    f"{annotations_json}: question_id {question_id} has image_id "
                    f"{annotation['image_id']}, but {questions_path} says {image_id}"
                )
            record.answers = annotation["answers"]
            record.multiple_choice_answer = annotation["multiple_choice_answer"]
            record.answer_type = annotation["answer_type"]
            record.question_type = annotation["question_type"]
        records.append(record)
    return records


def _read_annotations(path: str) -> dict[int, dict]:
    """``question_id -> {image_id, answers (raw strings), multiple_choice_answer, ...}``."""
    data = load_json(path)
    result: dict[int, dict] = {}
    first_index: dict[int, int] = {}
    for index, item in enumerate(field(data, "annotations", path, "the top-level object", list)):
        question_id = field(item, "question_id", path, f"annotations[{index}]", int)
        _check_unique(first_index, question_id, index, path, "annotations")
        where = f"annotations[{index}] (question_id {question_id})"
        answers = []
        for number, answer in enumerate(field(item, "answers", path, where, list)):
            answers.append(field(answer, "answer", path, f"{where} answers[{number}]", str))
        result[question_id] = {
            "image_id": field(item, "image_id", path, where, int),
            "answers": answers,
            "multiple_choice_answer": field(item, "multiple_choice_answer", path, where, str),
            "answer_type": field(item, "answer_type", path, where, str),
            "question_type": field(item, "question_type", path, where, str),
        }
    return result


def _check_unique(first_index: dict[int, int], question_id: int, index: int, path: str, array: str) -> None:
    """Record where ``question_id`` first appears in ``array``; a second appearance is a ``FormatError``."""
    if question_id in first_index:
        raise FormatError(
            f"{path}: {array}[{index}] repeats question_id {question_id} (first at {array}"
            f"[{first_index[question_id]}]); question ids must be unique"
        )
    first_index[question_id] = index


def build_answer_vocab(records: Iterable[VQARecord], min_count: int = 9) -> list[str]:
    """The answer classes: normalised answers chosen for at least ``min_count`` questions.

    Each question with answers counts once, for the normalised ``multiple_choice_answer`` (the most
    frequent annotator answer; the majority of the raw answers when that field is empty). Most frequent
    first, ties in string order. ``min_count=9`` on VQAv2 train+val is the usual 3,129-answer recipe
    (bottom-up attention); our choice of what to count follows it.
    """
    counts: Counter[str] = Counter()
    for record in records:
        if not record.answers and not record.multiple_choice_answer:
            continue
        answer = record.multiple_choice_answer or Counter(record.answers).most_common(1)[0][0]
        normalised = normalize_answer(answer)
        if normalised:
            counts[normalised] += 1
    kept = [(answer, count) for answer, count in counts.items() if count >= min_count]
    kept.sort(key=lambda pair: (-pair[1], pair[0]))
    return [answer for answer, _ in kept]


_SCORES = (0.0, 0.3, 0.6, 0.9)


def answer_score(count: int) -> float:
    """Soft score of an answer given by ``count`` of the (10) annotators: 0, 0.3, 0.6, 0.9, then 1.0.

    The common soft-target rule (bottom-up attention, LXMERT, METER). With 10 annotators it equals the
    official leave-one-out accuracy that answer would get as a prediction.
    """
    if count < 0:
        raise ValueError(f"answer_score: count must be >= 0, got {count}")
    return _SCORES[count] if count < len(_SCORES) else 1.0


def answer_targets(record: VQARecord, vocab_index: dict[str, int]) -> dict[int, float]:
    """``{answer class: soft score}`` for the annotator answers of ``record`` that are in the vocabulary.

    Answers are normalised with :func:`vlp.data.answers.normalize_answer` and counted; each count becomes a
    score with :func:`answer_score`. Answers outside the vocabulary are dropped (so the scores of a
    question may be all zero, i.e. an empty dict).
    """
    counts = Counter(normalize_answer(answer) for answer in record.answers)
    return {
        vocab_index[answer]: answer_score(count) for answer, count in counts.items() if answer in vocab_index
    }
