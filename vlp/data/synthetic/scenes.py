"""Scenes of the shapes world: their objects, splits and sampling, and the spatial facts about them.

A :class:`Scene` is 1..max_objects non-overlapping :class:`SceneObject` (shape, colour, size, centre,
radius) on a grey background, drawn by :func:`sample_scene` from the scene stream of its image. The
relations between objects (:func:`relation`, :func:`relation_pairs`) and the shortest attribute set that
names an object uniquely (:func:`unique_naming`) are what all the texts are built from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vlp.data.synthetic.config import SynthConfig, part_rng
from vlp.data.synthetic.vocabulary import COLOURS, SHAPES, SIZES

# The Karpathy splits of a world, in the order summaries list them.
SPLITS = ("train", "restval", "val", "test")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    radius: float  # half the side of the object's square box, in pixels

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.cx - self.radius, self.cy - self.radius, self.cx + self.radius, self.cy + self.radius)


@dataclass(frozen=True)
class Scene:
    index: int
    image_id: int  # the COCO id (cocoid); also the GQA / Flickr id as a string
    split: str  # train | restval | val | test
    size: int
    objects: tuple[SceneObject, ...]
    background: tuple[int, int, int]

    @property
    def coco_folder(self) -> str:
        return "train2014" if self.split == "train" else "val2014"

    @property
    def coco_filename(self) -> str:
        return f"COCO_{self.coco_folder}_{self.image_id:012d}.jpg"


def assign_splits(num_images: int, seed: int) -> list[str]:
    """Karpathy-style splits: ~75% train, ~5% restval, ~10% val, ~10% test, shuffled by seed."""
    n_val = max(1, round(0.1 * num_images))
    n_test = max(1, round(0.1 * num_images))
    n_restval = round(0.05 * num_images)
    n_train = num_images - n_val - n_test - n_restval
    splits = ["train"] * n_train + ["restval"] * n_restval + ["val"] * n_val + ["test"] * n_test
    part_rng(seed, "splits").shuffle(splits)
    return splits


def sample_scene(index: int, split: str, config: SynthConfig) -> Scene:
    """Draw 1..max_objects non-overlapping objects; fewer when they do not fit."""
    rng = part_rng(config.seed, "scene", index)
    size = config.image_size
    wanted = rng.randint(1, config.max_objects)
    objects: list[SceneObject] = []
    for _ in range(wanted):
        for _attempt in range(30):
            obj_size = rng.choice(SIZES)
            low, high = (0.07, 0.09) if obj_size == "small" else (0.13, 0.16)
            radius = size * rng.uniform(low, high)
            cx = rng.uniform(radius + 1, size - radius - 1)
            cy = rng.uniform(radius + 1, size - radius - 1)
            gap = 0.04 * size
            if all(max(abs(cx - o.cx), abs(cy - o.cy)) >= radius + o.radius + gap for o in objects):
                objects.append(SceneObject(rng.choice(SHAPES), rng.choice(COLOURS), obj_size, cx, cy, radius))
                break
    grey = rng.randint(190, 225)
    tint = rng.randint(-6, 6)
    background = (grey + tint, grey, grey - tint)
    return Scene(index, 100_000 + index, split, size, tuple(objects), background)


def relation(scene: Scene, a: SceneObject, b: SceneObject) -> list[str]:
    """The clear spatial relations of ``a`` to ``b`` (centres at least 10% of the image apart)."""
    margin = 0.1 * scene.size
    out = []
    if a.cx < b.cx - margin:
        out.append("left")
    if a.cx > b.cx + margin:
        out.append("right")
    if a.cy < b.cy - margin:
        out.append("above")
    if a.cy > b.cy + margin:
        out.append("below")
    return out


def relation_pairs(scene: Scene) -> list[tuple[SceneObject, str, SceneObject]]:
    """Every clear relation in the scene as (a, relation of a to b, b), over all ordered pairs."""
    return [
        (a, rel, b)
        for a in scene.objects
        for b in scene.objects
        if a is not b
        for rel in relation(scene, a, b)
    ]


def _attributes(obj: SceneObject, keys: Sequence[str]) -> tuple[str, ...]:
    return tuple(getattr(obj, k) for k in keys)


# Attribute sets that can name an object, from the shortest; "shape" is always part of a name.
_NAMINGS = (("shape",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape"))


def unique_naming(scene: Scene, obj: SceneObject) -> tuple[str, ...] | None:
    """The shortest attribute set that picks ``obj`` out of its scene, or None if none does."""
    for keys in _NAMINGS:
        value = _attributes(obj, keys)
        if sum(_attributes(o, keys) == value for o in scene.objects) == 1:
            return keys
    return None
