"""NLVR2 statements about a pair of scenes, labelled True or False.

Seven templates (one side has, both have, exactly one has, a relation in one image, a side's count, the
total count, which side has more) each write a statement aiming at the label asked for, choosing among
options so that a template's wording does not give its label away; :func:`make_nlvr2_sentences`
alternates the labels where the templates allow.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from vlp.data.synthetic.phrases import article, number_word, pick, plural
from vlp.data.synthetic.scenes import Scene, relation_pairs
from vlp.data.synthetic.vocabulary import COLOUR_WORDS, COLOURS, OPPOSITE, RELATION_WORDS, SHAPE_WORDS, SHAPES


def _count(scene: Scene, shape: str | None = None, colour: str | None = None) -> int:
    return sum(
        (shape is None or o.shape == shape) and (colour is None or o.colour == colour) for o in scene.objects
    )


def _noun_phrase(rng: random.Random, n: int, shape: str | None, colour: str | None) -> str:
    colour_word = f"{pick(rng, COLOUR_WORDS[colour])} " if colour else ""
    noun = pick(rng, SHAPE_WORDS[shape]) if shape else "shape"
    return f"{colour_word}{noun if n == 1 else plural(noun)}"


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
        f"The {side} image contains exactly {number_word(n)} {_noun_phrase(rng, n, shape, colour)}.",
        n == actual,
    )


def _nlvr_total(rng: random.Random, left: Scene, right: Scene, want: bool) -> tuple[str, bool]:
    shape, colour = _random_filter(rng)
    actual = _count(left, shape, colour) + _count(right, shape, colour)
    n = actual if want else _wrong_count(rng, actual)
    amount = "no" if n == 0 else number_word(n)
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
    text = f"Exactly one image contains {article(_noun_phrase(rng, 1, shape, colour))}."
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
        for a, rel, b in relation_pairs(scene)
    }
    if not facts:
        return _nlvr_more(rng, left, right, want)
    sa, ca, rel, sb, cb = rng.choice(sorted(facts))
    if not want:
        rel = OPPOSITE[rel]
    truth = (sa, ca, rel, sb, cb) in facts
    a = _noun_phrase(rng, 1, sa, ca)
    b = _noun_phrase(rng, 1, sb, cb)
    return f"One image shows {article(a)} {pick(rng, RELATION_WORDS[rel])} {article(b)}.", truth


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
