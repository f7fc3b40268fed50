"""VQA and GQA questions about a scene, with their answers and how annotators disagree on them.

Five kinds of question (colour, shape, count, exists, relation) each either find something to ask about
the scene or decline; :func:`make_questions` draws up to ``count`` of different kinds. Each
:class:`Question` carries the distribution of answers ten VQA annotators give (synonyms and occasional
confusions around the canonical answer), which :func:`annotator_answers` samples.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from vlp.data.synthetic.config import part_rng
from vlp.data.synthetic.phrases import article, describe, number_word, pick, plural
from vlp.data.synthetic.scenes import Scene, relation_pairs, unique_naming
from vlp.data.synthetic.vocabulary import COLOUR_WORDS, COLOURS, OPPOSITE, RELATION_WORDS, SHAPE_WORDS, SHAPES

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
    out = [(str(n), 80), (number_word(n), 15)]
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
    colour = pick(rng, COLOUR_WORDS[obj.colour])
    noun = rng.choice(("object", "thing", "one"))
    text = rng.choice((f"What shape is the {colour} {noun}?", f"What is the shape of the {colour} {noun}?"))
    full = f"The {colour} {noun} is {article(obj.shape)}."
    return Question("shape", text, obj.shape, "other", "what shape is the", full, SHAPE_ANSWERS[obj.shape])


def _q_count(rng: random.Random, scene: Scene) -> Question | None:
    mode = rng.randrange(3)
    if mode == 0:
        n = len(scene.objects)
        text = rng.choice(("How many shapes are there?", "How many objects are in the picture?"))
    elif mode == 1:
        colour = rng.choice(COLOURS)
        n = sum(o.colour == colour for o in scene.objects)
        text = f"How many {pick(rng, COLOUR_WORDS[colour])} shapes are there?"
    else:
        shape = rng.choice(SHAPES)
        n = sum(o.shape == shape for o in scene.objects)
        text = f"How many {plural(pick(rng, SHAPE_WORDS[shape]))} are in the image?"
    full = f"There {'is' if n == 1 else 'are'} {number_word(n)}."
    return Question("count", text, str(n), "number", "how many", full, _count_answers(n))


def _q_exists(rng: random.Random, scene: Scene) -> Question | None:
    if rng.random() < 0.5:
        obj = rng.choice(scene.objects)
        shape, colour = obj.shape, obj.colour
    else:
        shape, colour = rng.choice(SHAPES), rng.choice(COLOURS)
    present = any(o.shape == shape and o.colour == colour for o in scene.objects)
    phrase = f"{pick(rng, COLOUR_WORDS[colour])} {pick(rng, SHAPE_WORDS[shape])}"
    text = f"Is there {article(phrase)} in the image?"
    full = f"Yes, there is {article(phrase)}." if present else f"No, there is no {phrase}."
    return Question(
        "exists", text, "yes" if present else "no", "yes/no", "is there a", full, _yes_no(present)
    )


def _q_relation(rng: random.Random, scene: Scene) -> Question | None:
    pairs = [
        (a, r, b) for a, r, b in relation_pairs(scene) if unique_naming(scene, a) and unique_naming(scene, b)
    ]
    if not pairs:
        return None
    a, rel, b = rng.choice(pairs)
    truth = rng.random() < 0.5
    asked = rel if truth else OPPOSITE[rel]
    name_a = describe(rng, a, unique_naming(scene, a) or ())
    name_b = describe(rng, b, unique_naming(scene, b) or ())
    text = f"Is the {name_a} {pick(rng, RELATION_WORDS[asked])} the {name_b}?"
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
    rng = part_rng(seed, part, scene.index)
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
