"""Writing the SNLI-VE files (``snli_ve/snli_ve_{train,dev,test}.jsonl``) and their image folder.

Train and restval scenes make the train split, val the dev split and test the test split; each image
gets ``snli_hypotheses_per_image`` hypotheses cycling entailment, neutral, contradiction, each paired
with one of the image's captions as premise, and is hard-linked as
``snli_ve/flickr30k_images/<Flickr30K_ID>.jpg``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlp.data.synthetic.config import SynthConfig, part_rng
from vlp.data.synthetic.scenes import Scene
from vlp.data.synthetic.snli_hypotheses import SNLI_LABELS
from vlp.data.synthetic.writers.common import coco_path, dump_json, link_file


@dataclass(frozen=True)
class SnliVeSummary:
    """The SNLI-VE files written under ``folder``: premise-hypothesis pairs per split and images linked."""

    folder: Path
    pairs: dict[str, int]
    images: int


def write_snli_ve(
    out: Path, scenes: list[Scene], captions: dict[int, list[str]], config: SynthConfig
) -> tuple[SnliVeSummary, list[str]]:
    """Write the SNLI-VE files, premises drawn from ``captions`` (by scene index); returns the summary
    and the hypotheses, in file order."""
    images = 0
    counts, texts = {}, []
    for split, members in (("train", ("train", "restval")), ("dev", ("val",)), ("test", ("test",))):
        lines = []
        for scene in (s for s in scenes if s.split in members):
            flickr_id = str(scene.image_id)
            link_file(coco_path(out, scene), out / "snli_ve" / "flickr30k_images" / f"{flickr_id}.jpg")
            images += 1
            rng = part_rng(config.seed, "snli-ve", scene.index)
            seen: set[str] = set()
            for k in range(config.snli_hypotheses_per_image):
                label, make = SNLI_LABELS[k % len(SNLI_LABELS)]
                hypothesis = make(rng, scene)
                for _ in range(10):
                    if hypothesis not in seen:
                        break
                    hypothesis = make(rng, scene)
                seen.add(hypothesis)
                caption_index = rng.randrange(len(captions[scene.index]))
                caption_id = f"{flickr_id}.jpg#{caption_index}"
                lines.append(
                    {
                        "Flickr30K_ID": flickr_id,
                        "gold_label": label,
                        "annotator_labels": [label],
                        "pairID": f"{caption_id}r{k + 1}{label[0]}",
                        "captionID": caption_id,
                        "sentence1": captions[scene.index][caption_index],
                        "sentence2": hypothesis,
                    }
                )
                texts.append(hypothesis)
        dump_json(lines, out / "snli_ve" / f"snli_ve_{split}.jsonl", lines=True)
        counts[split] = len(lines)
    return SnliVeSummary(out / "snli_ve", counts, images), texts
