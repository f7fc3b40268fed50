"""Writing the GQA balanced question files (``gqa/``, splits train and val) and their image folder.

Train and restval scenes make the train split, val and test scenes the val split; each image gets
``gqa_questions_per_image`` questions with their full answers and GQA's structural/semantic/detailed
types, and is hard-linked as ``gqa/images/<imageId>.jpg``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlp.data.synthetic.config import SynthConfig
from vlp.data.synthetic.questions import make_questions
from vlp.data.synthetic.scenes import Scene
from vlp.data.synthetic.writers.common import coco_path, dump_json, link_file


@dataclass(frozen=True)
class GqaSummary:
    """The GQA files written under ``folder``: questions per split (train, val) and images linked."""

    folder: Path
    questions: dict[str, int]
    images: int


_GQA_TYPES = {
    "colour": {"structural": "query", "semantic": "attr", "detailed": "colorObj"},
    "shape": {"structural": "query", "semantic": "obj", "detailed": "shapeObj"},
    "count": {"structural": "query", "semantic": "obj", "detailed": "countObj"},
    "exists": {"structural": "verify", "semantic": "obj", "detailed": "existAttr"},
    "relation": {"structural": "verify", "semantic": "rel", "detailed": "verifyRelS"},
}


def write_gqa(out: Path, scenes: list[Scene], config: SynthConfig) -> tuple[GqaSummary, list[str]]:
    """Write the GQA files; returns the summary and the questions, in file order."""
    images = 0
    counts, texts = {}, []
    next_id = 0
    for split, members in (("train", ("train", "restval")), ("val", ("val", "test"))):
        entries: dict[str, dict] = {}
        for scene in (s for s in scenes if s.split in members):
            image_id = str(scene.image_id)
            link_file(coco_path(out, scene), out / "gqa" / "images" / f"{image_id}.jpg")
            images += 1
            for q in make_questions(scene, config.seed, "gqa", config.gqa_questions_per_image):
                qid = f"{next_id:08d}"
                next_id += 1
                entries[qid] = {
                    "semantic": [],
                    "entailed": [],
                    "equivalent": [qid],
                    "question": q.text,
                    "imageId": image_id,
                    "isBalanced": True,
                    "groups": {"global": q.kind, "local": f"{q.kind}-{q.answer}"},
                    "answer": q.answer,
                    "semanticStr": "",
                    "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
                    "types": _GQA_TYPES[q.kind],
                    "fullAnswer": q.full_answer,
                }
                texts.append(q.text)
        dump_json(entries, out / "gqa" / f"{split}_balanced_questions.json")
        counts[split] = len(entries)
    return GqaSummary(out / "gqa", counts, images), texts
