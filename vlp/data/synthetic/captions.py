"""Captions of a scene: true sentences from several templates, full of synonyms and relations.

Each template (a list of the objects, a count, a relation, a position, colour and shape groups, an
attribute) either says something true of the scene or declines; :func:`make_captions` cycles through the
templates in a per-image shuffled order until it has ``count`` distinct captions, and
:func:`caption_tokens` gives the Karpathy ``tokens`` of one.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence

from vlp.data.synthetic.config import part_rng
from vlp.data.synthetic.phrases import article, describe, number_word, pick, plural
from vlp.data.synthetic.scenes import Scene, SceneObject, relation_pairs, unique_naming
from vlp.data.synthetic.vocabulary import COLOUR_WORDS, COLOURS, RELATION_WORDS, SHAPE_WORDS, SHAPES


def _join(parts: Sequence[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _sentence(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "?")) else ".")


def _loose_name(rng: random.Random, obj: SceneObject) -> str:
    return describe(rng, obj, ("size", "colour", "shape") if rng.random() < 0.5 else ("colour", "shape"))


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


_Template = Callable[[random.Random, Scene], "str | None"]


def _cap_list(rng: random.Random, scene: Scene) -> str | None:
    objs = list(scene.objects)
    rng.shuffle(objs)
    lead = rng.choice(("a picture of", "an image of", "a drawing of", "there is", "we see"))
    return f"{lead} {_join([article(_loose_name(rng, o)) for o in objs])}"


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
            f"{number_word(n)} {noun} on a {background} background",
            f"there are {number_word(n)} {noun} in the picture",
            f"an image showing {number_word(n)} {noun}",
        )
    )


def _cap_relation(rng: random.Random, scene: Scene) -> str | None:
    pairs = relation_pairs(scene)
    if not pairs:
        return None
    a, rel, b = rng.choice(pairs)
    rel_words = pick(rng, RELATION_WORDS[rel])
    form = rng.randrange(3)
    if form == 0:
        return f"{article(_loose_name(rng, a))} {rel_words} {article(_loose_name(rng, b))}"
    if form == 1:
        return f"there is {article(_loose_name(rng, a))} {rel_words} {article(_loose_name(rng, b))}"
    return f"the {_loose_name(rng, a)} is {rel_words} the {_loose_name(rng, b)}"


def _cap_position(rng: random.Random, scene: Scene) -> str | None:
    options = [(o, p) for o in scene.objects if (p := _position_phrase(scene, o))]
    if not options:
        return None
    obj, phrase = rng.choice(options)
    return f"{article(_loose_name(rng, obj))} {phrase}"


def _cap_colour_groups(rng: random.Random, scene: Scene) -> str | None:
    if len(scene.objects) < 2:
        return None
    counts = Counter(o.colour for o in scene.objects)
    parts = []
    for colour in sorted(counts, key=lambda c: (-counts[c], COLOURS.index(c))):
        k = counts[colour]
        parts.append(f"{number_word(k)} {pick(rng, COLOUR_WORDS[colour])} {'shape' if k == 1 else 'shapes'}")
    return _join(parts)


def _cap_shape_groups(rng: random.Random, scene: Scene) -> str | None:
    if len(scene.objects) < 2:
        return None
    counts = Counter(o.shape for o in scene.objects)
    parts = []
    for shape in sorted(counts, key=lambda s: (-counts[s], SHAPES.index(s))):
        k = counts[shape]
        word = pick(rng, SHAPE_WORDS[shape])
        parts.append(article(word) if k == 1 else f"{number_word(k)} {plural(word)}")
    return f"{rng.choice(('a scene with', 'a picture containing', ''))} {_join(parts)}"


def _cap_attribute(rng: random.Random, scene: Scene) -> str | None:
    by_shape = [o for o in scene.objects if unique_naming(scene, o) == ("shape",)]
    if by_shape and rng.random() < 0.5:
        obj = rng.choice(by_shape)
        return f"the {pick(rng, SHAPE_WORDS[obj.shape])} is {pick(rng, COLOUR_WORDS[obj.colour])}"
    by_colour = [o for o in scene.objects if sum(p.colour == o.colour for p in scene.objects) == 1]
    if not by_colour:
        return None
    obj = rng.choice(by_colour)
    return f"the {pick(rng, COLOUR_WORDS[obj.colour])} shape is {article(pick(rng, SHAPE_WORDS[obj.shape]))}"


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
    rng = part_rng(seed, "captions", scene.index)
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
