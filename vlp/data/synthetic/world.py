"""Writing a whole shapes world: the scenes drawn once, then every format written from them in order.

:func:`write_shapes_world` validates the config, clears the parts of an earlier world from the output
directory, samples the scenes, runs the writers (images first: the other formats link or decode them;
the tokenizer last: it is trained on all their text) and returns a :class:`WorldSummary` of typed
per-part summaries, which ``vlp data synth`` prints.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from vlp.data.synthetic.config import SynthConfig
from vlp.data.synthetic.scenes import assign_splits, sample_scene
from vlp.data.synthetic.writers.gqa import GqaSummary, write_gqa
from vlp.data.synthetic.writers.images import ImagesSummary, write_images
from vlp.data.synthetic.writers.karpathy import CaptionsSummary, write_karpathy
from vlp.data.synthetic.writers.nlvr2 import Nlvr2Summary, write_nlvr2
from vlp.data.synthetic.writers.readme import write_readme
from vlp.data.synthetic.writers.regions import RegionsSummary, write_regions
from vlp.data.synthetic.writers.snli_ve import SnliVeSummary, write_snli_ve
from vlp.data.synthetic.writers.tokenizer import TokenizerSummary, write_tokenizer
from vlp.data.synthetic.writers.vqa import VqaSummary, write_vqa

# What write_shapes_world writes at the top of its directory.
WORLD_PARTS = (
    "images",
    "dataset_shapes.json",
    "vqa",
    "gqa",
    "nlvr2",
    "snli_ve",
    "regions",
    "tokenizer",
    "README.txt",
)


@dataclass(frozen=True)
class WorldSummary:
    """What :func:`write_shapes_world` wrote into ``out``, part by part."""

    out: Path
    images: ImagesSummary
    captions: CaptionsSummary
    vqa: VqaSummary
    gqa: GqaSummary
    nlvr2: Nlvr2Summary
    snli_ve: SnliVeSummary
    regions: RegionsSummary
    tokenizer: TokenizerSummary
    readme: Path


def write_shapes_world(config: SynthConfig, out_dir: str | Path, overwrite: bool = False) -> WorldSummary:
    """Render the shapes world into ``out_dir`` in the public formats; returns a per-part summary.

    A directory that already holds files is refused unless ``overwrite``: then the parts of a shapes world
    that are there are removed first, so that nothing of an earlier, larger world is left behind.
    """
    config.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and not overwrite and any(out.iterdir()):
        raise ValueError(
            f"--out {out}: the directory is not empty (a dataset is there?); pass --overwrite to write over "
            "it, or choose another directory"
        )
    for part in WORLD_PARTS:
        target = out / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    out.mkdir(parents=True, exist_ok=True)

    splits = assign_splits(config.num_images, config.seed)
    scenes = [sample_scene(i, split, config) for i, split in enumerate(splits)]
    images = write_images(out, scenes, config)
    captions, caption_texts = write_karpathy(out, scenes, config)
    per = config.captions_per_image
    by_scene = {s.index: caption_texts[s.index * per : (s.index + 1) * per] for s in scenes}
    vqa, vqa_texts = write_vqa(out, scenes, config)
    gqa, gqa_texts = write_gqa(out, scenes, config)
    nlvr2, nlvr_texts = write_nlvr2(out, scenes, config)
    snli_ve, snli_texts = write_snli_ve(out, scenes, by_scene, config)
    regions = write_regions(out, scenes, config)
    texts = caption_texts + vqa_texts + gqa_texts + nlvr_texts + snli_texts
    tokenizer = write_tokenizer(out, texts, config.tokenizer_vocab_size)
    readme = write_readme(out, config)
    return WorldSummary(out, images, captions, vqa, gqa, nlvr2, snli_ve, regions, tokenizer, readme)
