"""Writing the rendered scenes as COCO images (``images/train2014``, ``images/val2014``, JPEG).

Train scenes go to train2014 and restval/val/test scenes to val2014, under COCO names
(``COCO_<folder>_<id:012d>.jpg``), as the Karpathy splits of COCO are laid out. The other writers link or
decode these files rather than render again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from vlp.data.synthetic.config import SynthConfig
from vlp.data.synthetic.render import render_scene
from vlp.data.synthetic.scenes import SPLITS, Scene
from vlp.data.synthetic.writers.common import coco_path


@dataclass(frozen=True)
class ImagesSummary:
    """The images written under ``folder``, counted by Karpathy split (train, restval, val, test)."""

    folder: Path
    splits: dict[str, int]

    @property
    def count(self) -> int:
        return sum(self.splits.values())


def write_images(out: Path, scenes: list[Scene], config: SynthConfig) -> ImagesSummary:
    for scene in scenes:
        path = coco_path(out, scene)
        path.parent.mkdir(parents=True, exist_ok=True)
        render_scene(scene, config.seed).save(path, format="JPEG", quality=config.jpeg_quality)
    counts = Counter(scene.split for scene in scenes)
    return ImagesSummary(out / "images", {split: counts[split] for split in SPLITS})
