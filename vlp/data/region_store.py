"""Region features by image, for collating precomputed regions instead of pixels: the one place that
reads ``data.region_features``."""

from __future__ import annotations

import os

from vlp.config import DataConfig
from vlp.data.formats.regions import load_region_features
from vlp.data.records import RegionFeatureRecord


class RegionStore:
    """Region features by image id, also found by the file stem of an image path (LXMERT ids)."""

    def __init__(self, regions: dict[str, RegionFeatureRecord]) -> None:
        self.regions = regions

    def lookup(self, image_id: str, image_path: str) -> RegionFeatureRecord | None:
        found = self.regions.get(image_id)
        if found is None and image_path:
            found = self.regions.get(os.path.splitext(os.path.basename(image_path))[0])
        return found


def region_store(data_cfg: DataConfig) -> RegionStore | None:
    """The region features ``data.region_features`` names (an LXMERT tsv), None when it is not set."""
    if not data_cfg.region_features:
        return None
    return RegionStore(load_region_features(data_cfg.region_features))
