"""LXMERT-style region features of a scene, as a stand-in object detector would give them.

One region per object: its true box, its shape as object id, its colour as attribute id, and a feature
that is the sum of fixed random codes for its shape, colour and size (:func:`region_embeddings`) plus a
little noise, so a probe can read the attributes back from the features.
"""

from __future__ import annotations

import numpy as np

from vlp.data.records import RegionFeatureRecord
from vlp.data.synthetic.scenes import Scene
from vlp.data.synthetic.vocabulary import COLOURS, SHAPES, SIZES


def region_embeddings(seed: int, dim: int) -> dict[str, np.ndarray]:
    """Fixed random codes for each shape, colour and size (the "detector's" feature space)."""
    rng = np.random.default_rng([seed, 23])
    return {
        "shape": rng.normal(0.0, 1.0, (len(SHAPES), dim)).astype(np.float32),
        "colour": rng.normal(0.0, 1.0, (len(COLOURS), dim)).astype(np.float32),
        "size": rng.normal(0.0, 1.0, (len(SIZES), dim)).astype(np.float32),
    }


def scene_regions(scene: Scene, seed: int, codes: dict[str, np.ndarray]) -> RegionFeatureRecord:
    """One region per object: its true box, shape as object id, colour as attribute id, a noisy code."""
    rng = np.random.default_rng([seed, 29, scene.index])
    n = len(scene.objects)
    dim = codes["shape"].shape[1]
    shape_ids = np.array([SHAPES.index(o.shape) for o in scene.objects], dtype=np.int64)
    colour_ids = np.array([COLOURS.index(o.colour) for o in scene.objects], dtype=np.int64)
    size_ids = np.array([SIZES.index(o.size) for o in scene.objects], dtype=np.int64)
    features = codes["shape"][shape_ids] + codes["colour"][colour_ids] + codes["size"][size_ids]
    features = np.maximum(features + rng.normal(0.0, 0.1, (n, dim)).astype(np.float32), 0.0)
    return RegionFeatureRecord(
        image_id=str(scene.image_id),
        image_h=scene.size,
        image_w=scene.size,
        boxes=np.array([o.box for o in scene.objects], dtype=np.float32).reshape(n, 4),
        features=features.astype(np.float32),
        object_ids=shape_ids,
        object_confs=rng.uniform(0.85, 1.0, n).astype(np.float32),
        attr_ids=colour_ids,
        attr_confs=rng.uniform(0.7, 1.0, n).astype(np.float32),
    )
