"""NLVR2 statements about a pair of scenes, labelled True or False.

Seven templates (one side has, both have, exactly one has, a relation in one image, a side's count, the
total count, which side has more) each enumerate the statements they can make about the pair, as
(form, content, truth): the form is what the wording shows on its face (which side, whether a colour, a
shape or both are named, the number said, the relation word), the content fills it in (which colour,
which shape). A statement is drawn in two steps: a form among those that can be said both truly and
falsely of this pair, then a content giving the label asked for. So the form is drawn the same way
whatever the label, and a text-only model cannot read the label off the wording (a test checks this
per template); a template with no such form for the pair says nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from vlp.data.synthetic.phrases import article, number_word, pick, plural
from vlp.data.synthetic.scenes import Scene, relation_pairs
from vlp.data.synthetic.vocabulary import COLOUR_WORDS, COLOURS, OPPOSITE, RELATION_WORDS, SHAPE_WORDS, SHAPES

Filter = tuple[str | None, str | None]  # (shape, colour); None: any
Statement = tuple[str, bool]  # the sentence and its label
# Every filter by what it names: a shape, a colour, or both.
_FILTERS: dict[str, list[Filter]] = {
    "shape": [(s, None) for s in SHAPES],
    "colour": [(None, c) for c in COLOURS],
    "both": [(s, c) for s in SHAPES for c in COLOURS],
}
_MAX_COUNT = 6  # the largest number a counting statement says


def _count(scene: Scene, shape: str | None = None, colour: str | None = None) -> int:
    return sum(
        (shape is None or o.shape == shape) and (colour is None or o.colour == colour) for o in scene.objects
    )


def _noun_phrase(rng: random.Random, n: int, shape: str | None, colour: str | None) -> str:
    colour_word = f"{pick(rng, COLOUR_WORDS[colour])} " if colour else ""
    noun = pick(rng, SHAPE_WORDS[shape]) if shape else "shape"
    return f"{colour_word}{noun if n == 1 else plural(noun)}"


def _draw(rng: random.Random, candidates: Iterable[tuple[object, object, bool]], want: bool):
    """(form, content) for a form that has both a true and a false content, the content true iff ``want``;
    None when no form has both."""
    by_form: dict[object, dict[bool, list]] = {}
    for form, content, truth in candidates:
        by_form.setdefault(form, {True: [], False: []})[truth].append(content)
    balanced = [form for form, split in by_form.items() if split[True] and split[False]]
    if not balanced:
        return None
    form = rng.choice(sorted(balanced, key=str))
    return form, rng.choice(sorted(by_form[form][want], key=str))


def _sides(left: Scene, right: Scene) -> dict[str, Scene]:
    return {"left": left, "right": right}


def _nlvr_side_has(rng: random.Random, left: Scene, right: Scene, want: bool) -> Statement | None:
    cands = (
        ((side, mode), f, _count(scene, *f) > 0)
        for side, scene in _sides(left, right).items()
        for mode, filters in _FILTERS.items()
        for f in filters
    )
    if (drawn := _draw(rng, cands, want)) is None:
        return None
    (side, _), (shape, colour) = drawn
    return f"The {side} image contains at least one {_noun_phrase(rng, 1, shape, colour)}.", want


def _nlvr_both(rng: random.Random, left: Scene, right: Scene, want: bool) -> Statement | None:
    cands = (
        (mode, f, _count(left, *f) > 0 and _count(right, *f) > 0) for mode, fs in _FILTERS.items() for f in fs
    )
    if (drawn := _draw(rng, cands, want)) is None:
        return None
    _, (shape, colour) = drawn
    return f"Both images contain at least one {_noun_phrase(rng, 1, shape, colour)}.", want


def _nlvr_exactly_one(rng: random.Random, left: Scene, right: Scene, want: bool) -> Statement | None:
    cands = (
        (mode, f, (_count(left, *f) > 0) != (_count(right, *f) > 0))
        for mode, fs in _FILTERS.items()
        for f in fs
    )
    if (drawn := _draw(rng, cands, want)) is None:
        return None
    _, (shape, colour) = drawn
    return f"Exactly one image contains {article(_noun_phrase(rng, 1, shape, colour))}.", want


def _counting_filters():
    return [(mode, f) for mode, fs in _FILTERS.items() for f in fs] + [("any", (None, None))]


def _nlvr_side_count(rng: random.Random, left: Scene, right: Scene, want: bool) -> Statement | None:
    cands = (
        ((side, mode, n), f, _count(scene, *f) == n)
        for side, scene in _sides(left, right).items()
        for mode, f in _counting_filters()
        for n in range(_MAX_COUNT + 1)
    )
    if (drawn := _draw(rng, cands, want)) is None:
        return None
    (side, _, n), (shape, colour) = drawn
    amount = "no" if n == 0 else f"exactly {number_word(n)}"
    return f"The {side} image contains {amount} {_noun_phrase(rng, n or 2, shape, colour)}.", want


def _nlvr_total(rng: random.Random, left: Scene, right: Scene, want: bool) -> Statement | None:
    cands = (
        ((mode, n), f, _count(left, *f) + _count(right, *f) == n)
        for mode, f in _counting_filters()
        for n in range(_MAX_COUNT + 1)
    )
    if (drawn := _draw(rng, cands, want)) is None:
        return None
    (_, n), (shape, colour) = drawn
    amount = "no" if n == 0 else number_word(n)
    verb = "is" if n == 1 else "are"
    noun = _noun_phrase(rng, n or 2, shape, colour)
    return f"There {verb} {amount} {noun} in total in the two images.", want


def _nlvr_more(rng: random.Random, left: Scene, right: Scene, want: bool) -> Statement | None:
    counts = {"left": len(left.objects), "right": len(right.objects)}
    cands = ((None, (a, b), counts[a] > counts[b]) for a, b in (("left", "right"), ("right", "left")))
    if (drawn := _draw(rng, cands, want)) is None:
        return None
    _, (first, second) = drawn
    return f"The {first} image has more shapes than the {second} image.", want


def _nlvr_relation(rng: random.Random, left: Scene, right: Scene, want: bool) -> Statement | None:
    facts = {
        (a.shape, a.colour, rel, b.shape, b.colour)
        for scene in (left, right)
        for a, rel, b in relation_pairs(scene)
        if (a.shape, a.colour) != (b.shape, b.colour)
    }
    said = facts | {(sa, ca, OPPOSITE[rel], sb, cb) for sa, ca, rel, sb, cb in facts}
    cands = ((fact[2], fact, fact in facts) for fact in said)
    if (drawn := _draw(rng, cands, want)) is None:
        return None
    rel, (sa, ca, _, sb, cb) = drawn
    a, b = _noun_phrase(rng, 1, sa, ca), _noun_phrase(rng, 1, sb, cb)
    return f"One image shows {article(a)} {pick(rng, RELATION_WORDS[rel])} {article(b)}.", want


NLVR2_TEMPLATES = (
    _nlvr_side_has, _nlvr_both, _nlvr_exactly_one, _nlvr_relation, _nlvr_side_count, _nlvr_total, _nlvr_more,
)  # fmt: skip
# How often each template is drawn: the existence statements most (they are what a small model grounds
# first), counting and comparing across the pair less.
NLVR2_TEMPLATE_WEIGHTS = (3, 2, 1, 1, 1, 1, 1)


def make_nlvr2_sentences(left: Scene, right: Scene, rng: random.Random, count: int) -> list[tuple[str, bool]]:
    """``count`` distinct statements about an image pair (fewer if the templates run out), each label
    drawn True or False with equal odds."""
    out: list[tuple[str, bool]] = []
    for _ in range(count):
        want = rng.random() < 0.5
        for _ in range(20):
            template = rng.choices(NLVR2_TEMPLATES, weights=NLVR2_TEMPLATE_WEIGHTS)[0]
            # The same template and label again on a repeat (synonyms vary the wording): moving on to
            # another template would make a template's label depend on how many ways it can be said.
            for _ in range(10):
                statement = template(rng, left, right, want)
                if statement is None or statement[0] not in {t for t, _ in out}:
                    break
            if statement is not None and statement[0] not in {t for t, _ in out}:
                out.append(statement)
                break
    return out
