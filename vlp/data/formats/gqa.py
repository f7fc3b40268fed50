"""GQA questions as released (``train_balanced_questions.json``, ``testdev_balanced_questions.json``, ...).

Layout: one JSON object keyed by question id::

    {"201307251": {"imageId": "2407890", "question": "Is it overcast?", "answer": "no",
                   "fullAnswer": "No, it is clear.", "isBalanced": true, "types": {...}, ...}, ...}

The submission / test questions have no ``answer`` or ``fullAnswer``. Images are
``<images_root>/<imageId>.jpg`` (the ``images/`` folder of the release). The unbalanced training set is
released as a folder of ``train_all_questions_<n>.json`` files: pass the folder and they are read in
order of ``n``.
"""

from __future__ import annotations

import os
import re

from vlp.data.formats.reading import FormatError, check_file, field, load_json, optional_field
from vlp.data.records import GQARecord


def _question_files(path: str) -> list[str]:
    if not os.path.isdir(path):
        return [check_file(path)]
    names = [name for name in os.listdir(path) if name.endswith(".json")]
    if not names:
        raise FileNotFoundError(f"no .json question files in the folder {path}")

    def order(name: str) -> tuple[int, str]:
        match = re.search(r"(\d+)\.json$", name)
        return (int(match.group(1)) if match else -1, name)

    return [os.path.join(path, name) for name in sorted(names, key=order)]


def read_gqa(questions_json: str | os.PathLike, images_root: str | os.PathLike) -> list[GQARecord]:
    """One record per question, in file order; ``answer`` and ``full_answer`` are empty where absent."""
    root = os.fspath(images_root)
    records = []
    for path in _question_files(os.fspath(questions_json)):
        data = load_json(path)
        if not isinstance(data, dict):
            raise FormatError(
                f"{path}: the top level is a {type(data).__name__}, expected a JSON object "
                "keyed by question id"
            )
        for question_id, item in data.items():
            where = f"question {question_id!r}"
            image_id = field(item, "imageId", path, where, str)
            answer = optional_field(item, "answer", path, where, str, "")
            full_answer = optional_field(item, "fullAnswer", path, where, str, "")
            types = optional_field(item, "types", path, where, dict, {})
            structural = optional_field(types, "structural", path, f"{where} types", str, "")
            records.append(
                GQARecord(
                    question_id=str(question_id),
                    image_id=image_id,
                    image_path=os.path.join(root, f"{image_id}.jpg"),
                    question=field(item, "question", path, where, str),
                    answer=answer,
                    full_answer=full_answer,
                    structural_type=structural,
                )
            )
    return records
