"""Writing the VQAv2 question and annotation files (``vqa/``, subtypes train2014 and val2014).

Each image gets ``vqa_questions_per_image`` questions, each with ten annotator answers (and their
confidences) drawn from the question's answer distribution, and the most common answer as
``multiple_choice_answer``, in the layout of the official ``v2_*_mscoco_*`` files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlp.data.synthetic.config import SynthConfig, part_rng
from vlp.data.synthetic.questions import annotator_answers, make_questions, most_common_answer
from vlp.data.synthetic.scenes import Scene
from vlp.data.synthetic.writers.common import dump_json

ANNOTATORS = 10  # answers per question, as in VQAv2


@dataclass(frozen=True)
class VqaSummary:
    """The VQAv2 files written under ``folder``: questions per data subtype (train2014, val2014)."""

    folder: Path
    questions: dict[str, int]
    answers_per_question: int = ANNOTATORS


_VQA_INFO = {
    "description": "Shapes world: a synthetic stand-in for VQAv2 written by vlp",
    "version": "2.0",
    "year": 2024,
    "contributor": "vlp",
    "date_created": "1970-01-01 00:00:00",
}
_VQA_LICENSE = {"name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"}


def write_vqa(out: Path, scenes: list[Scene], config: SynthConfig) -> tuple[VqaSummary, list[str]]:
    """Write the VQAv2 files; returns the summary and the questions and answers, in file order."""
    counts, texts = {}, []
    for subtype in ("train2014", "val2014"):
        questions, annotations = [], []
        for scene in (s for s in scenes if s.coco_folder == subtype):
            rng = part_rng(config.seed, "vqa-annotators", scene.index)
            for k, q in enumerate(make_questions(scene, config.seed, "vqa", config.vqa_questions_per_image)):
                qid = scene.image_id * 10 + k
                answers = annotator_answers(rng, q, ANNOTATORS)
                questions.append({"image_id": scene.image_id, "question": q.text, "question_id": qid})
                annotations.append(
                    {
                        "question_type": q.question_type,
                        "multiple_choice_answer": most_common_answer(answers, q),
                        "answers": [
                            {
                                "answer": a,
                                "answer_confidence": "yes" if a == q.answer else rng.choice(("yes", "maybe")),
                                "answer_id": i + 1,
                            }
                            for i, a in enumerate(answers)
                        ],
                        "image_id": scene.image_id,
                        "answer_type": q.answer_type,
                        "question_id": qid,
                    }
                )
                texts.append(q.text)
                texts.extend(sorted(set(answers)))
        header = {"info": _VQA_INFO, "license": _VQA_LICENSE, "data_subtype": subtype}
        dump_json(
            {**header, "task_type": "Open-Ended", "data_type": "mscoco", "questions": questions},
            out / "vqa" / f"v2_OpenEnded_mscoco_{subtype}_questions.json",
        )
        dump_json(
            {**header, "data_type": "mscoco", "annotations": annotations},
            out / "vqa" / f"v2_mscoco_{subtype}_annotations.json",
        )
        counts[subtype] = len(questions)
    return VqaSummary(out / "vqa", counts), texts
