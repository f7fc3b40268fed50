"""Writing ``README.txt``: what each part of a shapes world holds and where, in one paragraph.

The text is filled in from the :class:`~vlp.data.synthetic.config.SynthConfig` and the vocabulary, so
that a directory of data says by itself what it is and how it was made.
"""

from __future__ import annotations

from pathlib import Path

from vlp.data.synthetic.config import SynthConfig
from vlp.data.synthetic.vocabulary import COLOURS, SHAPES

_README = """\
Shapes world: a synthetic vision-language corpus written by `vlp data synth` ({n} images, seed {seed}). \
Each {size}x{size} image shows 1-{max_objects} coloured shapes. images/train2014 and images/val2014 hold the \
rendered scenes under COCO names (COCO_<folder>_<id:012d>.jpg; train in train2014, restval/val/test in \
val2014); dataset_shapes.json has {caps} captions per image in the Karpathy layout (splits train, restval, \
val, test); vqa/ holds VQAv2 question and annotation files (train2014, val2014; 10 annotator answers per \
question); gqa/ holds GQA balanced questions (train, val) with images/<imageId>.jpg; nlvr2/ holds NLVR2 \
train.json and dev.json (jsonl) with image pairs as PNG under images/train/<directory>/ and images/dev/; \
snli_ve/ holds SNLI-VE jsonl files (train, dev, test) with flickr30k_images/<Flickr30K_ID>.jpg; \
regions/shapes_regions.tsv holds LXMERT-style region features (one box per object, object id = shape, \
attribute id = colour, {dim}-d features); tokenizer/ is a WordPiece tokenizer trained on all the text here. \
Shapes: {shapes}. Colours: {colours}. The same seed always writes the same bytes.
"""


def write_readme(out: Path, config: SynthConfig) -> Path:
    path = out / "README.txt"
    path.write_text(
        _README.format(
            n=config.num_images, seed=config.seed, size=config.image_size, max_objects=config.max_objects,
            caps=config.captions_per_image, dim=config.region_feature_dim, shapes=", ".join(SHAPES),
            colours=", ".join(COLOURS),
        ),
        encoding="utf-8",
    )  # fmt: skip
    return path
