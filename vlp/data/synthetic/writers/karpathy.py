"""Writing the captions in the Karpathy COCO layout (``dataset_shapes.json``).

One entry per image with its folder, file name, COCO id, split and ``captions_per_image`` sentences
(raw text and tokens, numbered by ``sentid`` in image order), as Karpathy's ``dataset_coco.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlp.data.synthetic.captions import caption_tokens, make_captions
from vlp.data.synthetic.config import SynthConfig
from vlp.data.synthetic.scenes import Scene
from vlp.data.synthetic.writers.common import dump_json


@dataclass(frozen=True)
class CaptionsSummary:
    """The Karpathy file written at ``path``: how many images and captions it holds."""

    path: Path
    images: int
    captions: int


def write_karpathy(out: Path, scenes: list[Scene], config: SynthConfig) -> tuple[CaptionsSummary, list[str]]:
    """Write the captions; returns the summary and every caption, in image order."""
    images, texts = [], []
    for scene in scenes:
        captions = make_captions(scene, config.seed, config.captions_per_image)
        first = scene.index * config.captions_per_image
        sentids = list(range(first, first + len(captions)))
        sentences = [
            {"tokens": caption_tokens(c), "raw": c, "imgid": scene.index, "sentid": s}
            for c, s in zip(captions, sentids, strict=True)
        ]
        images.append(
            {
                "filepath": scene.coco_folder,
                "sentids": sentids,
                "filename": scene.coco_filename,
                "imgid": scene.index,
                "split": scene.split,
                "sentences": sentences,
                "cocoid": scene.image_id,
            }
        )
        texts.extend(captions)
    path = out / "dataset_shapes.json"
    dump_json({"images": images, "dataset": "shapes"}, path)
    return CaptionsSummary(path, len(images), len(texts)), texts
