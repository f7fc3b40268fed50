"""Plain records: what the format readers return. No tensors, no file handles."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CaptionRecord:
    """One image with all of its captions (Karpathy splits, WebDataset samples)."""

    image_id: str
    image_path: str  # absolute or relative to the cwd; for WebDataset samples the tar member key
    captions: list[str]
    split: str = ""
    image_bytes: bytes | None = None  # set when the image comes inside a shard


@dataclass
class VQARecord:
    """A VQAv2 question; ``answers`` are the raw annotator answers (empty for the test split)."""

    question_id: int
    image_id: int
    image_path: str
    question: str
    answers: list[str] = field(default_factory=list)
    multiple_choice_answer: str = ""
    answer_type: str = ""
    question_type: str = ""


@dataclass
class GQARecord:
    question_id: str
    image_id: str
    image_path: str
    question: str
    answer: str = ""  # empty for test questions
    full_answer: str = ""
    structural_type: str = ""  # types.structural (query, verify, logical, choose, compare) where given


@dataclass
class NLVR2Record:
    identifier: str
    sentence: str
    left_image_path: str
    right_image_path: str
    label: bool | None = None  # None where the split carries no label


@dataclass
class SNLIVERecord:
    pair_id: str
    image_id: str
    image_path: str
    hypothesis: str
    label: str = ""  # entailment | neutral | contradiction
    premise: str = ""


@dataclass
class RegionFeatureRecord:
    """Precomputed detector regions of one image (LXMERT tsv layout)."""

    image_id: str
    image_h: int
    image_w: int
    boxes: np.ndarray  # [N, 4] float32, x1 y1 x2 y2 in pixels
    features: np.ndarray  # [N, D] float32
    object_ids: np.ndarray  # [N] int64
    object_confs: np.ndarray  # [N] float32
    attr_ids: np.ndarray  # [N] int64
    attr_confs: np.ndarray  # [N] float32
