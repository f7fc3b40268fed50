"""Writing the LXMERT-style region features of every scene (``regions/shapes_regions.tsv``).

One row per image in the tsv layout :func:`vlp.data.formats.regions.write_region_tsv` writes: one box per
object, object id = shape, attribute id = colour, ``region_feature_dim``-d features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlp.data.formats.regions import write_region_tsv
from vlp.data.synthetic.config import SynthConfig
from vlp.data.synthetic.features import region_embeddings, scene_regions
from vlp.data.synthetic.scenes import Scene


@dataclass(frozen=True)
class RegionsSummary:
    """The region tsv written at ``path``: images (rows), boxes in all and the feature size."""

    path: Path
    images: int
    boxes: int
    feature_dim: int


def write_regions(out: Path, scenes: list[Scene], config: SynthConfig) -> RegionsSummary:
    codes = region_embeddings(config.seed, config.region_feature_dim)
    records = [scene_regions(scene, config.seed, codes) for scene in scenes]
    path = out / "regions" / "shapes_regions.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_region_tsv(records, path)
    return RegionsSummary(path, len(records), sum(len(r.boxes) for r in records), config.region_feature_dim)
