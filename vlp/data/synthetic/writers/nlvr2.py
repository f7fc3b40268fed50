"""Writing the NLVR2 statement files (``nlvr2/train.json``, ``nlvr2/dev.json``, jsonl) and image pairs.

Train and restval scenes make the train pool, val and test scenes the dev pool; each pool is drawn into
about ``nlvr2_pairs_per_image`` pairs per image, saved as PNG pairs (``<stem>-img0.png``,
``<stem>-img1.png``; train under numbered directories), each with ``nlvr2_sentences_per_pair``
labelled statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vlp.data.synthetic.config import SynthConfig, part_rng
from vlp.data.synthetic.nlvr2_statements import make_nlvr2_sentences
from vlp.data.synthetic.scenes import Scene
from vlp.data.synthetic.writers.common import coco_path, dump_json


@dataclass(frozen=True)
class Nlvr2Summary:
    """The NLVR2 files written under ``folder``: image pairs and statements per split (train, dev)."""

    folder: Path
    pairs: dict[str, int]
    sentences: dict[str, int]


def write_nlvr2(out: Path, scenes: list[Scene], config: SynthConfig) -> tuple[Nlvr2Summary, list[str]]:
    """Write the NLVR2 files; returns the summary and the statements, in file order."""
    pairs, sentences, texts = {}, {}, []
    for split, members in (("train", ("train", "restval")), ("dev", ("val", "test"))):
        pool = [s for s in scenes if s.split in members]
        rng = part_rng(config.seed, f"nlvr2-{split}")
        lines = []
        num_pairs = max(1, len(pool) * config.nlvr2_pairs_per_image // 2)
        for p in range(num_pairs):
            left, right = rng.sample(pool, 2)
            set_id, pair_id = p // 4, p % 4
            stem = f"{split}-{set_id}-{pair_id}"
            directory = set_id % 100
            folder = out / "nlvr2" / "images" / split / (str(directory) if split == "train" else "")
            folder.mkdir(parents=True, exist_ok=True)
            for side, scene in (("img0", left), ("img1", right)):
                # Decoding the JPEG is ~10x faster than rendering again (and web images are JPEG-born too).
                with Image.open(coco_path(out, scene)) as image:
                    image.convert("RGB").save(folder / f"{stem}-{side}.png", format="PNG", compress_level=1)
            for k, (sentence, label) in enumerate(
                make_nlvr2_sentences(left, right, rng, config.nlvr2_sentences_per_pair)
            ):
                line = {
                    "identifier": f"{stem}-{k}",
                    "sentence": sentence,
                    "label": "True" if label else "False",
                }
                if split == "train":
                    line["directory"] = directory
                lines.append(line)
                texts.append(sentence)
        dump_json(lines, out / "nlvr2" / f"{split}.json", lines=True)
        sentences[split] = len(lines)
        pairs[split] = num_pairs
    return Nlvr2Summary(out / "nlvr2", pairs, sentences), texts
