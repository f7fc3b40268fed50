"""The built-in "shapes world": a small synthetic vision-language corpus in the real public formats.

Scenes of 1-4 coloured shapes are rendered with Pillow and described by captions full of synonyms
(big/large/huge, red/crimson/scarlet, square/box/block, ...) and spatial relations, so a masked word
often has several right answers while changing one word usually describes a different scene. The
same scenes are then written as COCO/Karpathy captions, VQAv2, GQA, NLVR2 and SNLI-VE annotation
files, LXMERT-style region features and a WordPiece tokenizer, in exactly the public layouts, so the
demo goes through the real readers in :mod:`vlp.data.formats`.

Everything is a pure function of the seed: the same :class:`SynthConfig` writes byte-identical files.
Each part draws from its own random stream (seed, part, image), so adding a question kind does not
change the images or the captions.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vlp.data.formats.regions import write_region_tsv
from vlp.data.records import RegionFeatureRecord

# --------------------------------------------------------------------------- vocabulary

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "large")

COLOUR_RGB = {
    "red": (200, 35, 35),
    "green": (40, 150, 60),
    "blue": (40, 70, 200),
    "yellow": (230, 200, 40),
    "purple": (130, 50, 165),
    "orange": (240, 130, 30),
}
# Words a caption may use; the first is the most frequent (half of the time).
SHAPE_WORDS = {
    "circle": ("circle", "ball", "disk"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "pyramid", "wedge"),
    "diamond": ("diamond", "rhombus", "lozenge"),
    "cross": ("cross", "plus"),
}
COLOUR_WORDS = {
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald"),
    "blue": ("blue", "cobalt"),
    "yellow": ("yellow", "golden"),
    "purple": ("purple", "violet"),
    "orange": ("orange", "amber"),
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
RELATION_WORDS = {
    "left": ("to the left of", "left of", "on the left of"),
    "right": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over", "on top of"),
    "below": ("below", "under", "beneath"),
}
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")
_PLURALS = {"box": "boxes", "cross": "crosses", "plus": "pluses", "rhombus": "rhombuses"}

# How ten VQA annotators answer: (answer, weight). The canonical answer dominates; synonyms and the
# occasional confusion make the disagreement of the real data.
COLOUR_ANSWERS = {
    "red": (("red", 70), ("crimson", 12), ("dark red", 8), ("scarlet", 5), ("orange", 5)),
    "green": (("green", 75), ("dark green", 10), ("emerald", 8), ("lime", 4), ("blue", 3)),
    "blue": (("blue", 75), ("dark blue", 10), ("navy", 6), ("cobalt", 5), ("purple", 4)),
    "yellow": (("yellow", 75), ("gold", 10), ("golden", 6), ("lemon", 4), ("orange", 5)),
    "purple": (("purple", 70), ("violet", 15), ("lilac", 5), ("magenta", 5), ("blue", 5)),
    "orange": (("orange", 75), ("amber", 8), ("dark orange", 7), ("red", 5), ("yellow", 5)),
}
SHAPE_ANSWERS = {
    "circle": (("circle", 70), ("ball", 12), ("round", 10), ("sphere", 5), ("oval", 3)),
    "square": (("square", 75), ("box", 10), ("rectangle", 8), ("cube", 5), ("block", 2)),
    "triangle": (("triangle", 85), ("pyramid", 10), ("wedge", 5)),
    "diamond": (("diamond", 75), ("rhombus", 12), ("square", 8), ("kite", 5)),
    "cross": (("cross", 70), ("plus", 15), ("plus sign", 10), ("x", 5)),
}
NEUTRAL_PREDICATES = (
    "is made of wood",
    "is made of plastic",
    "is heavy",
    "is hollow",
    "was drawn by a child",
    "is spinning slowly",
    "is cold to the touch",
    "belongs to a little girl",
    "is about to fall over",
    "is brand new",
)


@dataclass
class SynthConfig:
    """What ``vlp data synth`` writes."""

    num_images: int = 2000
    seed: int = 0
    image_size: int = 64
    captions_per_image: int = 5
    max_objects: int = 4
    vqa_questions_per_image: int = 3
    gqa_questions_per_image: int = 3
    nlvr2_pairs_per_image: int = 2  # each image is drawn into about this many pairs
    nlvr2_sentences_per_pair: int = 4
    snli_hypotheses_per_image: int = 3  # one entailment, one neutral, one contradiction, repeating
    region_feature_dim: int = 64
    tokenizer_vocab_size: int = 1000
    jpeg_quality: int = 92

    def validate(self) -> None:
        checks = (
            ("num_images", self.num_images >= 10, "at least 10 (every split needs an image)"),
            ("image_size", self.image_size >= 32, "at least 32 pixels"),
            ("captions_per_image", self.captions_per_image >= 1, "at least 1"),
            ("max_objects", 1 <= self.max_objects <= 4, "between 1 and 4"),
            ("vqa_questions_per_image", self.vqa_questions_per_image >= 1, "at least 1"),
            ("gqa_questions_per_image", self.gqa_questions_per_image >= 1, "at least 1"),
            ("nlvr2_pairs_per_image", self.nlvr2_pairs_per_image >= 1, "at least 1"),
            ("nlvr2_sentences_per_pair", self.nlvr2_sentences_per_pair >= 1, "at least 1"),
            ("snli_hypotheses_per_image", self.snli_hypotheses_per_image >= 1, "at least 1"),
            ("region_feature_dim", self.region_feature_dim >= 16, "at least 16"),
            ("jpeg_quality", 1 <= self.jpeg_quality <= 95, "between 1 and 95"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"SynthConfig.{name}: expected {expected}, got {getattr(self, name)!r}")


# --------------------------------------------------------------------------- scenes


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


def _rng(seed: int, part: str, index: int = 0) -> random.Random:
    # A str seed is hashed with SHA-512 by `random`, independent of PYTHONHASHSEED.
    return random.Random(f"shapes-world:{seed}:{part}:{index}")


def assign_splits(num_images: int, seed: int) -> list[str]:
    """Karpathy-style splits: ~75% train, ~5% restval, ~10% val, ~10% test, shuffled by seed."""
    n_val = max(1, round(0.1 * num_images))
    n_test = max(1, round(0.1 * num_images))
    n_restval = round(0.05 * num_images)
    n_train = num_images - n_val - n_test - n_restval
    splits = ["train"] * n_train + ["restval"] * n_restval + ["val"] * n_val + ["test"] * n_test
    _rng(seed, "splits").shuffle(splits)
    return splits


def sample_scene(index: int, split: str, config: SynthConfig) -> Scene:
    """Draw 1..max_objects non-overlapping objects; fewer when they do not fit."""
    rng = _rng(config.seed, "scene", index)
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


# --------------------------------------------------------------------------- rendering


def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape == "cross":
        w = 0.36 * r
        return [
            (cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w), (cx + r, cy + w),
            (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w), (cx - r, cy + w),
            (cx - r, cy - w), (cx - w, cy - w),
        ]  # fmt: skip
    raise ValueError(f"no polygon for shape {shape!r}")


def render_scene(scene: Scene, seed: int) -> Image.Image:
    """Draw the scene 4x larger and downsample (anti-aliased edges), then add a little sensor noise."""
    scale = 4
    big = scene.size * scale
    rng = _rng(seed, "render", scene.index)
    canvas = Image.new("RGB", (big, big), scene.background)
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        base = COLOUR_RGB[obj.colour]
        fill = tuple(min(255, max(0, c + rng.randint(-14, 14))) for c in base)
        outline = tuple(int(c * 0.6) for c in fill)
        cx, cy, r = obj.cx * scale, obj.cy * scale, obj.radius * scale
        width = max(1, scale // 2)
        if obj.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)
        elif obj.shape == "square":
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)
        else:
            draw.polygon(_shape_polygon(obj.shape, cx, cy, r), fill=fill, outline=outline, width=width)
    image = canvas.resize((scene.size, scene.size), Image.Resampling.BOX)
    noise = np.random.default_rng([seed, 17, scene.index]).normal(0.0, 3.0, (scene.size, scene.size, 1))
    pixels = np.asarray(image, dtype=np.float32) + noise.astype(np.float32)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------- words


def _pick(rng: random.Random, words: Sequence[str]) -> str:
    """The first word half of the time, otherwise one of the others."""
    if len(words) == 1 or rng.random() < 0.5:
        return words[0]
    return rng.choice(words[1:])


def _plural(word: str) -> str:
    return _PLURALS.get(word, word + "s")


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _number(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


def _join(parts: Sequence[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _sentence(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "?")) else ".")


def describe(rng: random.Random, obj: SceneObject, keys: Sequence[str] = ("size", "colour", "shape")) -> str:
    """An object's noun phrase with synonyms drawn at random: "big crimson ball"."""
    words = []
    if "size" in keys:
        words.append(_pick(rng, SIZE_WORDS[obj.size]))
    if "colour" in keys:
        words.append(_pick(rng, COLOUR_WORDS[obj.colour]))
    words.append(_pick(rng, SHAPE_WORDS[obj.shape]))
    return " ".join(words)


def _loose_name(rng: random.Random, obj: SceneObject) -> str:
    return describe(rng, obj, ("size", "colour", "shape") if rng.random() < 0.5 else ("colour", "shape"))


def _relation_pairs(scene: Scene) -> list[tuple[SceneObject, str, SceneObject]]:
    return [
        (a, rel, b)
        for a in scene.objects
        for b in scene.objects
        if a is not b
        for rel in relation(scene, a, b)
    ]


def _position_phrase(scene: Scene, obj: SceneObject) -> str | None:
    """Absolute position by thirds, or None when the centre sits near a third's border."""
    s = scene.size

    def third(v: float) -> int | None:
        for border in (s / 3, 2 * s / 3):
            if abs(v - border) < 0.05 * s:
                return None
        return 0 if v < s / 3 else (1 if v < 2 * s / 3 else 2)

    col, row = third(obj.cx), third(obj.cy)
    if col is None or row is None:
        return None
    if (row, col) == (1, 1):
        return "in the middle of the image"
    if row == 1:
        return f"on the {('left', '', 'right')[col]} side"
    if col == 1:
        return f"at the {('top', '', 'bottom')[row]}"
    return f"in the {('top', '', 'bottom')[row]} {('left', '', 'right')[col]} corner"


# --------------------------------------------------------------------------- captions

_Template = Callable[[random.Random, Scene], "str | None"]


def _cap_list(rng: random.Random, scene: Scene) -> str | None:
    objs = list(scene.objects)
    rng.shuffle(objs)
    lead = rng.choice(("a picture of", "an image of", "a drawing of", "there is", "we see"))
    return f"{lead} {_join([_article(_loose_name(rng, o)) for o in objs])}"


def _cap_count(rng: random.Random, scene: Scene) -> str | None:
    n = len(scene.objects)
    background = rng.choice(("grey", "gray", "plain", "light"))
    if n == 1:
        obj = scene.objects[0]
        return rng.choice(
            (
                f"a single {describe(rng, obj)} on a {background} background",
                f"just one {describe(rng, obj)} in the picture",
            )
        )
    noun = rng.choice(("shapes", "objects", "figures"))
    return rng.choice(
        (
            f"{_number(n)} {noun} on a {background} background",
            f"there are {_number(n)} {noun} in the picture",
            f"an image showing {_number(n)} {noun}",
        )
    )


def _cap_relation(rng: random.Random, scene: Scene) -> str | None:
    pairs = _relation_pairs(scene)
    if not pairs:
        return None
    a, rel, b = rng.choice(pairs)
    rel_words = _pick(rng, RELATION_WORDS[rel])
    form = rng.randrange(3)
    if form == 0:
        return f"{_article(_loose_name(rng, a))} {rel_words} {_article(_loose_name(rng, b))}"
    if form == 1:
        return f"there is {_article(_loose_name(rng, a))} {rel_words} {_article(_loose_name(rng, b))}"
    return f"the {_loose_name(rng, a)} is {rel_words} the {_loose_name(rng, b)}"


def _cap_position(rng: random.Random, scene: Scene) -> str | None:
    options = [(o, p) for o in scene.objects if (p := _position_phrase(scene, o))]
    if not options:
        return None
    obj, phrase = rng.choice(options)
    return f"{_article(_loose_name(rng, obj))} {phrase}"


def _cap_colour_groups(rng: random.Random, scene: Scene) -> str | None:
    if len(scene.objects) < 2:
        return None
    counts = Counter(o.colour for o in scene.objects)
    parts = []
    for colour in sorted(counts, key=lambda c: (-counts[c], COLOURS.index(c))):
        k = counts[colour]
        parts.append(f"{_number(k)} {_pick(rng, COLOUR_WORDS[colour])} {'shape' if k == 1 else 'shapes'}")
    return _join(parts)


def _cap_shape_groups(rng: random.Random, scene: Scene) -> str | None:
    if len(scene.objects) < 2:
        return None
    counts = Counter(o.shape for o in scene.objects)
    parts = []
    for shape in sorted(counts, key=lambda s: (-counts[s], SHAPES.index(s))):
        k = counts[shape]
        word = _pick(rng, SHAPE_WORDS[shape])
        parts.append(_article(word) if k == 1 else f"{_number(k)} {_plural(word)}")
    return f"{rng.choice(('a scene with', 'a picture containing', ''))} {_join(parts)}"


def _cap_attribute(rng: random.Random, scene: Scene) -> str | None:
    by_shape = [o for o in scene.objects if unique_naming(scene, o) == ("shape",)]
    if by_shape and rng.random() < 0.5:
        obj = rng.choice(by_shape)
        return f"the {_pick(rng, SHAPE_WORDS[obj.shape])} is {_pick(rng, COLOUR_WORDS[obj.colour])}"
    by_colour = [o for o in scene.objects if sum(p.colour == o.colour for p in scene.objects) == 1]
    if not by_colour:
        return None
    obj = rng.choice(by_colour)
    return (
        f"the {_pick(rng, COLOUR_WORDS[obj.colour])} shape is {_article(_pick(rng, SHAPE_WORDS[obj.shape]))}"
    )


CAPTION_TEMPLATES: tuple[_Template, ...] = (
    _cap_list,
    _cap_count,
    _cap_relation,
    _cap_position,
    _cap_colour_groups,
    _cap_shape_groups,
    _cap_attribute,
)


def make_captions(scene: Scene, seed: int, count: int = 5) -> list[str]:
    """``count`` distinct true captions of the scene, from as many different templates as apply."""
    rng = _rng(seed, "captions", scene.index)
    captions: list[str] = []
    order = list(CAPTION_TEMPLATES)
    rng.shuffle(order)
    for attempt in range(40 * count):
        if len(captions) == count:
            break
        text = order[attempt % len(order)](rng, scene)
        if text and _sentence(text) not in captions:
            captions.append(_sentence(text))
    while len(captions) < count:  # a scene with little to say: repeat rather than invent
        captions.append(captions[0])
    return captions


def caption_tokens(raw: str) -> list[str]:
    """Karpathy's ``tokens``: lower-cased words without punctuation."""
    return re.findall(r"[a-z0-9]+", raw.lower())


# --------------------------------------------------------------------------- questions


@dataclass(frozen=True)
class Question:
    """A question about one scene with its canonical answer and the answer distribution of annotators."""

    kind: str  # colour | shape | count | exists | relation
    text: str
    answer: str
    answer_type: str  # yes/no | number | other
    question_type: str  # VQA's question prefix
    full_answer: str
    distribution: tuple[tuple[str, int], ...]


def _yes_no(answer: bool) -> tuple[tuple[str, int], ...]:
    right, wrong = ("yes", "no") if answer else ("no", "yes")
    return ((right, 94), (wrong, 6))


def _count_answers(n: int) -> tuple[tuple[str, int], ...]:
    out = [(str(n), 80), (_number(n), 15)]
    out.append((str(n + 1), 5) if n == 0 else (str(n - 1), 5))
    return tuple(out)


def _q_colour(rng: random.Random, scene: Scene) -> Question | None:
    options = [(o, k) for o in scene.objects if (k := unique_naming(scene, o)) and "colour" not in k]
    if not options:
        return None
    obj, keys = rng.choice(options)
    ref = describe(rng, obj, keys)
    text = rng.choice((f"What color is the {ref}?", f"What is the color of the {ref}?"))
    return Question(
        "colour", text, obj.colour, "other", "what color is the", f"The {ref} is {obj.colour}.",
        COLOUR_ANSWERS[obj.colour],
    )  # fmt: skip


def _q_shape(rng: random.Random, scene: Scene) -> Question | None:
    options = [o for o in scene.objects if sum(p.colour == o.colour for p in scene.objects) == 1]
    if not options:
        return None
    obj = rng.choice(options)
    colour = _pick(rng, COLOUR_WORDS[obj.colour])
    noun = rng.choice(("object", "thing", "one"))
    text = rng.choice((f"What shape is the {colour} {noun}?", f"What is the shape of the {colour} {noun}?"))
    full = f"The {colour} {noun} is {_article(obj.shape)}."
    return Question("shape", text, obj.shape, "other", "what shape is the", full, SHAPE_ANSWERS[obj.shape])


def _q_count(rng: random.Random, scene: Scene) -> Question | None:
    mode = rng.randrange(3)
    if mode == 0:
        n = len(scene.objects)
        text = rng.choice(("How many shapes are there?", "How many objects are in the picture?"))
    elif mode == 1:
        colour = rng.choice(COLOURS)
        n = sum(o.colour == colour for o in scene.objects)
        text = f"How many {_pick(rng, COLOUR_WORDS[colour])} shapes are there?"
    else:
        shape = rng.choice(SHAPES)
        n = sum(o.shape == shape for o in scene.objects)
        text = f"How many {_plural(_pick(rng, SHAPE_WORDS[shape]))} are in the image?"
    full = f"There {'is' if n == 1 else 'are'} {_number(n)}."
    return Question("count", text, str(n), "number", "how many", full, _count_answers(n))


def _q_exists(rng: random.Random, scene: Scene) -> Question | None:
    if rng.random() < 0.5:
        obj = rng.choice(scene.objects)
        shape, colour = obj.shape, obj.colour
    else:
        shape, colour = rng.choice(SHAPES), rng.choice(COLOURS)
    present = any(o.shape == shape and o.colour == colour for o in scene.objects)
    phrase = f"{_pick(rng, COLOUR_WORDS[colour])} {_pick(rng, SHAPE_WORDS[shape])}"
    text = f"Is there {_article(phrase)} in the image?"
    full = f"Yes, there is {_article(phrase)}." if present else f"No, there is no {phrase}."
    return Question(
        "exists", text, "yes" if present else "no", "yes/no", "is there a", full, _yes_no(present)
    )


def _q_relation(rng: random.Random, scene: Scene) -> Question | None:
    pairs = [
        (a, r, b) for a, r, b in _relation_pairs(scene) if unique_naming(scene, a) and unique_naming(scene, b)
    ]
    if not pairs:
        return None
    a, rel, b = rng.choice(pairs)
    truth = rng.random() < 0.5
    asked = rel if truth else OPPOSITE[rel]
    name_a = describe(rng, a, unique_naming(scene, a) or ())
    name_b = describe(rng, b, unique_naming(scene, b) or ())
    text = f"Is the {name_a} {_pick(rng, RELATION_WORDS[asked])} the {name_b}?"
    full = f"{'Yes' if truth else 'No'}, the {name_a} is {RELATION_WORDS[rel][0]} the {name_b}."
    return Question("relation", text, "yes" if truth else "no", "yes/no", "is the", full, _yes_no(truth))


QUESTION_KINDS: dict[str, Callable[[random.Random, Scene], Question | None]] = {
    "colour": _q_colour,
    "shape": _q_shape,
    "count": _q_count,
    "exists": _q_exists,
    "relation": _q_relation,
}


def make_questions(scene: Scene, seed: int, part: str, count: int) -> list[Question]:
    """Up to ``count`` questions of different kinds (fewer when not enough kinds apply)."""
    rng = _rng(seed, part, scene.index)
    kinds = list(QUESTION_KINDS)
    rng.shuffle(kinds)
    out: list[Question] = []
    for kind in kinds:
        if len(out) == count:
            break
        question = QUESTION_KINDS[kind](rng, scene)
        if question is not None and question.text not in {q.text for q in out}:
            out.append(question)
    return out


def annotator_answers(rng: random.Random, question: Question, n: int = 10) -> list[str]:
    """``n`` annotators: each gives the canonical answer with its weight's probability, but it always
    keeps a strict majority; the others choose among synonyms and confusions by weight."""
    (canonical, weight), *others = question.distribution
    total = weight + sum(w for _, w in others)
    agree = max(n // 2 + 1, sum(rng.random() < weight / total for _ in range(n)))
    answers = [canonical] * agree
    if others and agree < n:
        answers += rng.choices([a for a, _ in others], weights=[w for _, w in others], k=n - agree)
    answers += [canonical] * (n - len(answers))
    rng.shuffle(answers)
    return answers


def most_common_answer(answers: list[str], question: Question) -> str:
    counts = Counter(answers)
    order = [a for a, _ in question.distribution]
    return max(counts, key=lambda a: (counts[a], -order.index(a)))


# --------------------------------------------------------------------------- NLVR2 statements


def _count(scene: Scene, shape: str | None = None, colour: str | None = None) -> int:
    return sum(
        (shape is None or o.shape == shape) and (colour is None or o.colour == colour) for o in scene.objects
    )


def _noun_phrase(rng: random.Random, n: int, shape: str | None, colour: str | None) -> str:
    colour_word = f"{_pick(rng, COLOUR_WORDS[colour])} " if colour else ""
    noun = _pick(rng, SHAPE_WORDS[shape]) if shape else "shape"
    return f"{colour_word}{noun if n == 1 else _plural(noun)}"


def _wrong_count(rng: random.Random, actual: int) -> int:
    return actual + 1 if actual == 0 else actual + rng.choice((-1, 1))


def _random_filter(rng: random.Random) -> tuple[str | None, str | None]:
    mode = rng.randrange(3)
    return (rng.choice(SHAPES) if mode == 1 else None, rng.choice(COLOURS) if mode == 2 else None)


def _nlvr_side_count(rng: random.Random, left: Scene, right: Scene, want: bool) -> tuple[str, bool]:
    side, scene = rng.choice((("left", left), ("right", right)))
    shape, colour = _random_filter(rng)
    actual = _count(scene, shape, colour)
    n = actual if want else _wrong_count(rng, actual)
    if n == 0:
        return f"The {side} image contains no {_noun_phrase(rng, 2, shape, colour)}.", n == actual
    return (
        f"The {side} image contains exactly {_number(n)} {_noun_phrase(rng, n, shape, colour)}.",
        n == actual,
    )


def _nlvr_total(rng: random.Random, left: Scene, right: Scene, want: bool) -> tuple[str, bool]:
    shape, colour = _random_filter(rng)
    actual = _count(left, shape, colour) + _count(right, shape, colour)
    n = actual if want else _wrong_count(rng, actual)
    amount = "no" if n == 0 else _number(n)
    verb = "is" if n == 1 else "are"
    text = f"There {verb} {amount} {_noun_phrase(rng, n, shape, colour)} in total in the two images."
    return text, n == actual


def _features(scenes: Sequence[Scene]) -> list[tuple[str | None, str | None]]:
    """Every (shape, colour) filter, one attribute or both, that some object of ``scenes`` has."""
    out = set()
    for scene in scenes:
        for o in scene.objects:
            out |= {(o.shape, None), (None, o.colour), (o.shape, o.colour)}
    return sorted(out, key=str)


# Every one-attribute filter, present in a scene or not: the options a false statement can draw from.
_ONE_ATTRIBUTE = [(None, c) for c in COLOURS] + [(s, None) for s in SHAPES]


def _choose(rng: random.Random, options: Sequence, truth: Callable[..., bool], want: bool):
    """An option whose truth is ``want`` when there is one (so that a template's wording does not give
    its label away), else any."""
    fitting = [o for o in options if truth(o) == want]
    return rng.choice(fitting or list(options))


def _nlvr_both(rng: random.Random, left: Scene, right: Scene, want: bool) -> tuple[str, bool]:
    def truth(f):
        return _count(left, *f) > 0 and _count(right, *f) > 0

    shape, colour = _choose(rng, _features((left, right)) + _ONE_ATTRIBUTE, truth, want)
    return f"Both images contain at least one {_noun_phrase(rng, 1, shape, colour)}.", truth((shape, colour))


def _nlvr_exactly_one(rng: random.Random, left: Scene, right: Scene, want: bool) -> tuple[str, bool]:
    def truth(f):
        return (_count(left, *f) > 0) != (_count(right, *f) > 0)

    combos = [(s, c) for s in SHAPES for c in COLOURS]
    shape, colour = _choose(rng, combos, truth, want)
    text = f"Exactly one image contains {_article(_noun_phrase(rng, 1, shape, colour))}."
    return text, truth((shape, colour))


def _nlvr_more(rng: random.Random, left: Scene, right: Scene, want: bool) -> tuple[str, bool]:
    counts = {"left": len(left.objects), "right": len(right.objects)}

    def truth(order):
        return counts[order[0]] > counts[order[1]]

    first, second = _choose(rng, (("left", "right"), ("right", "left")), truth, want)
    return f"The {first} image has more shapes than the {second} image.", truth((first, second))


def _nlvr_relation(rng: random.Random, left: Scene, right: Scene, want: bool) -> tuple[str, bool]:
    facts = {
        (a.shape, a.colour, rel, b.shape, b.colour)
        for scene in (left, right)
        for a, rel, b in _relation_pairs(scene)
    }
    if not facts:
        return _nlvr_more(rng, left, right, want)
    sa, ca, rel, sb, cb = rng.choice(sorted(facts))
    if not want:
        rel = OPPOSITE[rel]
    truth = (sa, ca, rel, sb, cb) in facts
    a = _noun_phrase(rng, 1, sa, ca)
    b = _noun_phrase(rng, 1, sb, cb)
    return f"One image shows {_article(a)} {_pick(rng, RELATION_WORDS[rel])} {_article(b)}.", truth


def _nlvr_side_has(rng: random.Random, left: Scene, right: Scene, want: bool) -> tuple[str, bool]:
    side, scene = rng.choice((("left", left), ("right", right)))

    def truth(f):
        return _count(scene, *f) > 0

    shape, colour = _choose(rng, _features((left, right)) + _ONE_ATTRIBUTE, truth, want)
    text = f"The {side} image contains at least one {_noun_phrase(rng, 1, shape, colour)}."
    return text, truth((shape, colour))


NLVR2_TEMPLATES = (
    _nlvr_side_has, _nlvr_both, _nlvr_exactly_one, _nlvr_relation, _nlvr_side_count, _nlvr_total, _nlvr_more,
)  # fmt: skip
# How often each template is drawn: the existence statements most (they are what a small model grounds
# first), counting and comparing across the pair less.
NLVR2_TEMPLATE_WEIGHTS = (3, 2, 1, 1, 1, 1, 1)


def make_nlvr2_sentences(left: Scene, right: Scene, rng: random.Random, count: int) -> list[tuple[str, bool]]:
    """Statements about an image pair, alternating True and False labels where the templates allow."""
    out: list[tuple[str, bool]] = []
    for k in range(count):
        want = (k % 2 == 0) if rng.random() < 0.5 else (k % 2 == 1)
        best = None
        for _ in range(20):
            template = rng.choices(NLVR2_TEMPLATES, weights=NLVR2_TEMPLATE_WEIGHTS)[0]
            text, truth = template(rng, left, right, want)
            if text in {t for t, _ in out}:
                continue
            best = (text, truth)
            if truth == want:
                break
        if best is not None:
            out.append(best)
    return out


# --------------------------------------------------------------------------- SNLI-VE hypotheses
#
# Two families of wording, each used by two labels, so that the hypothesis alone tells at most which
# pair of labels it belongs to (a text-only model can reach 2/3, as hypothesis-only models do on the real
# SNLI); the image decides within the pair:
# - a visible claim ("There is a red circle in the picture."): entailment when true, contradiction when
#   false;
# - a hidden property of a named object ("The red circle is made of wood."): neutral when the object is
#   in the picture (nothing shows what it is made of), contradiction when it is not.


def _absent_object(rng: random.Random, scene: Scene) -> SceneObject:
    """A colour and shape combination that no object of the scene has."""
    present = {(o.colour, o.shape) for o in scene.objects}
    colour, shape = rng.choice([(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present])
    return SceneObject(shape, colour, "small", 0.0, 0.0, 0.0)


def _snli_claim(rng: random.Random, scene: Scene, true: bool) -> str:
    """A statement about what the picture shows, true or false as asked."""
    kind = rng.choice(("object", "colour", "shape", "relation"))
    pairs = _relation_pairs(scene)
    if kind == "relation" and pairs:
        a, rel, b = rng.choice(pairs)
        rel = rel if true else OPPOSITE[rel]
        first, second = describe(rng, a, ("shape",)), describe(rng, b, ("shape",))
        return f"A {first} is {_pick(rng, RELATION_WORDS[rel])} a {second}."
    if kind == "colour":
        colours = {o.colour for o in scene.objects}
        colour = rng.choice(sorted(colours if true else set(COLOURS) - colours))
        return f"At least one shape is {_pick(rng, COLOUR_WORDS[colour])}."
    if kind == "shape":
        shapes = {o.shape for o in scene.objects}
        shape = rng.choice(sorted(shapes if true else set(SHAPES) - shapes))
        return f"The picture contains {_article(_pick(rng, SHAPE_WORDS[shape]))}."
    obj = rng.choice(scene.objects) if true else _absent_object(rng, scene)
    return f"There is {_article(describe(rng, obj, ('colour', 'shape')))} in the picture."


def _snli_hidden(rng: random.Random, scene: Scene, present: bool) -> str:
    """A property no picture shows, of an object that is (or is not) in this one."""
    obj = rng.choice(scene.objects) if present else _absent_object(rng, scene)
    return f"The {describe(rng, obj, ('colour', 'shape'))} {rng.choice(NEUTRAL_PREDICATES)}."


def _snli_entailment(rng: random.Random, scene: Scene) -> str:
    return _snli_claim(rng, scene, true=True)


def _snli_neutral(rng: random.Random, scene: Scene) -> str:
    return _snli_hidden(rng, scene, present=True)


def _snli_contradiction(rng: random.Random, scene: Scene) -> str:
    if rng.random() < 0.5:
        return _snli_claim(rng, scene, true=False)
    return _snli_hidden(rng, scene, present=False)


SNLI_LABELS = (
    ("entailment", _snli_entailment),
    ("neutral", _snli_neutral),
    ("contradiction", _snli_contradiction),
)


# --------------------------------------------------------------------------- region features


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


# --------------------------------------------------------------------------- writing


def _dump_json(value: object, path: Path, lines: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        if lines:
            for item in value:  # type: ignore[attr-defined]
                f.write(json.dumps(item) + "\n")
        else:
            f.write(json.dumps(value))  # dumps uses the C encoder; dump streams through the Python one


def _link(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (a copy where links are not possible)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _coco_path(out: Path, scene: Scene) -> Path:
    return out / "images" / scene.coco_folder / scene.coco_filename


def _write_images(out: Path, scenes: list[Scene], config: SynthConfig) -> None:
    for scene in scenes:
        path = _coco_path(out, scene)
        path.parent.mkdir(parents=True, exist_ok=True)
        render_scene(scene, config.seed).save(path, format="JPEG", quality=config.jpeg_quality)


def _write_karpathy(out: Path, scenes: list[Scene], config: SynthConfig) -> list[str]:
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
    _dump_json({"images": images, "dataset": "shapes"}, out / "dataset_shapes.json")
    return texts


_VQA_INFO = {
    "description": "Shapes world: a synthetic stand-in for VQAv2 written by vlp",
    "version": "2.0",
    "year": 2024,
    "contributor": "vlp",
    "date_created": "1970-01-01 00:00:00",
}
_VQA_LICENSE = {"name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"}


def _write_vqa(out: Path, scenes: list[Scene], config: SynthConfig) -> tuple[dict[str, int], list[str]]:
    counts, texts = {}, []
    for subtype in ("train2014", "val2014"):
        questions, annotations = [], []
        for scene in (s for s in scenes if s.coco_folder == subtype):
            rng = _rng(config.seed, "vqa-annotators", scene.index)
            for k, q in enumerate(make_questions(scene, config.seed, "vqa", config.vqa_questions_per_image)):
                qid = scene.image_id * 10 + k
                answers = annotator_answers(rng, q)
                questions.append({"image_id": scene.image_id, "question": q.text, "question_id": qid})
                annotations.append(
                    {
                        "question_type": q.question_type,
                        "multiple_choice_answer": most_common_answer(answers, q),
                        "answers": [
                            {
                                "answer": a,
                                "answer_confidence": "yes" if a == q.answer else rng.choice(("yes", "maybe")),
                                "answer_id": i + 1,
                            }
                            for i, a in enumerate(answers)
                        ],
                        "image_id": scene.image_id,
                        "answer_type": q.answer_type,
                        "question_id": qid,
                    }
                )
                texts.append(q.text)
                texts.extend(sorted(set(answers)))
        header = {"info": _VQA_INFO, "license": _VQA_LICENSE, "data_subtype": subtype}
        _dump_json(
            {**header, "task_type": "Open-Ended", "data_type": "mscoco", "questions": questions},
            out / "vqa" / f"v2_OpenEnded_mscoco_{subtype}_questions.json",
        )
        _dump_json(
            {**header, "data_type": "mscoco", "annotations": annotations},
            out / "vqa" / f"v2_mscoco_{subtype}_annotations.json",
        )
        counts[subtype] = len(questions)
    return counts, texts


_GQA_TYPES = {
    "colour": {"structural": "query", "semantic": "attr", "detailed": "colorObj"},
    "shape": {"structural": "query", "semantic": "obj", "detailed": "shapeObj"},
    "count": {"structural": "query", "semantic": "obj", "detailed": "countObj"},
    "exists": {"structural": "verify", "semantic": "obj", "detailed": "existAttr"},
    "relation": {"structural": "verify", "semantic": "rel", "detailed": "verifyRelS"},
}


def _write_gqa(out: Path, scenes: list[Scene], config: SynthConfig) -> tuple[dict[str, int], list[str]]:
    counts, texts = {}, []
    next_id = 0
    for split, members in (("train", ("train", "restval")), ("val", ("val", "test"))):
        entries: dict[str, dict] = {}
        for scene in (s for s in scenes if s.split in members):
            image_id = str(scene.image_id)
            _link(_coco_path(out, scene), out / "gqa" / "images" / f"{image_id}.jpg")
            for q in make_questions(scene, config.seed, "gqa", config.gqa_questions_per_image):
                qid = f"{next_id:08d}"
                next_id += 1
                entries[qid] = {
                    "semantic": [],
                    "entailed": [],
                    "equivalent": [qid],
                    "question": q.text,
                    "imageId": image_id,
                    "isBalanced": True,
                    "groups": {"global": q.kind, "local": f"{q.kind}-{q.answer}"},
                    "answer": q.answer,
                    "semanticStr": "",
                    "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
                    "types": _GQA_TYPES[q.kind],
                    "fullAnswer": q.full_answer,
                }
                texts.append(q.text)
        _dump_json(entries, out / "gqa" / f"{split}_balanced_questions.json")
        counts[split] = len(entries)
    return counts, texts


def _write_nlvr2(out: Path, scenes: list[Scene], config: SynthConfig) -> tuple[dict[str, int], list[str]]:
    counts, texts = {}, []
    for split, members in (("train", ("train", "restval")), ("dev", ("val", "test"))):
        pool = [s for s in scenes if s.split in members]
        rng = _rng(config.seed, f"nlvr2-{split}")
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
                with Image.open(_coco_path(out, scene)) as image:
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
        _dump_json(lines, out / "nlvr2" / f"{split}.json", lines=True)
        counts[split] = len(lines)
        counts[f"{split}_pairs"] = num_pairs
    return counts, texts


def _write_snli_ve(
    out: Path, scenes: list[Scene], captions: dict[int, list[str]], config: SynthConfig
) -> tuple[dict[str, int], list[str]]:
    counts, texts = {}, []
    for split, members in (("train", ("train", "restval")), ("dev", ("val",)), ("test", ("test",))):
        lines = []
        for scene in (s for s in scenes if s.split in members):
            flickr_id = str(scene.image_id)
            _link(_coco_path(out, scene), out / "snli_ve" / "flickr30k_images" / f"{flickr_id}.jpg")
            rng = _rng(config.seed, "snli-ve", scene.index)
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
        _dump_json(lines, out / "snli_ve" / f"snli_ve_{split}.jsonl", lines=True)
        counts[split] = len(lines)
    return counts, texts


def _write_regions(out: Path, scenes: list[Scene], config: SynthConfig) -> int:
    codes = region_embeddings(config.seed, config.region_feature_dim)
    records = [scene_regions(scene, config.seed, codes) for scene in scenes]
    path = out / "regions" / "shapes_regions.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_region_tsv(records, path)
    return sum(len(r.boxes) for r in records)


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


def write_shapes_world(config: SynthConfig, out_dir: str | Path, overwrite: bool = False) -> str:
    """Render the shapes world into ``out_dir`` in the public formats; returns a per-part summary.

    A directory that already holds files is refused unless ``overwrite``: then the parts of a shapes world
    that are there are removed first, so that nothing of an earlier, larger world is left behind.
    """
    from vlp.data.tokenizer import train_wordpiece

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
    _write_images(out, scenes, config)
    caption_texts = _write_karpathy(out, scenes, config)
    per = config.captions_per_image
    captions = {s.index: caption_texts[s.index * per : (s.index + 1) * per] for s in scenes}
    vqa_counts, vqa_texts = _write_vqa(out, scenes, config)
    gqa_counts, gqa_texts = _write_gqa(out, scenes, config)
    nlvr_counts, nlvr_texts = _write_nlvr2(out, scenes, config)
    snli_counts, snli_texts = _write_snli_ve(out, scenes, captions, config)
    num_regions = _write_regions(out, scenes, config)
    texts = caption_texts + vqa_texts + gqa_texts + nlvr_texts + snli_texts
    tokenizer = train_wordpiece(texts, out / "tokenizer", vocab_size=config.tokenizer_vocab_size)
    (out / "README.txt").write_text(
        _README.format(
            n=config.num_images, seed=config.seed, size=config.image_size, max_objects=config.max_objects,
            caps=per, dim=config.region_feature_dim, shapes=", ".join(SHAPES), colours=", ".join(COLOURS),
        ),
        encoding="utf-8",
    )  # fmt: skip

    split_counts = Counter(splits)
    split_text = ", ".join(f"{name} {split_counts[name]}" for name in ("train", "restval", "val", "test"))
    return "\n".join(
        (
            f"images: {len(scenes)} ({split_text}) -> {out / 'images'}",
            f"captions: {len(caption_texts)} -> {out / 'dataset_shapes.json'}",
            f"vqa: {vqa_counts['train2014']} train2014 + {vqa_counts['val2014']} val2014 questions, "
            f"10 answers each -> {out / 'vqa'}",
            f"gqa: {gqa_counts['train']} train + {gqa_counts['val']} val questions -> {out / 'gqa'}",
            f"nlvr2: {nlvr_counts['train_pairs']} train pairs / {nlvr_counts['train']} sentences, "
            f"{nlvr_counts['dev_pairs']} dev pairs / {nlvr_counts['dev']} sentences -> {out / 'nlvr2'}",
            f"snli-ve: {snli_counts['train']} train + {snli_counts['dev']} dev + {snli_counts['test']} test "
            f"pairs -> {out / 'snli_ve'}",
            f"regions: {len(scenes)} images, {num_regions} boxes, {config.region_feature_dim}-d features "
            f"-> {out / 'regions' / 'shapes_regions.tsv'}",
            f"tokenizer: WordPiece, {len(tokenizer)} tokens -> {out / 'tokenizer'}",
        )
    )
