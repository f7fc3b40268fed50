"""Word choice shared by every text of the shapes world: synonyms, plurals, articles, numbers, names.

:func:`pick` draws the usual word half of the time and a synonym otherwise; :func:`describe` builds an
object's noun phrase ("big crimson ball") from the attributes asked for. Every draw is made from the
caller's stream, so the order of calls is part of the output.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from vlp.data.synthetic.scenes import SceneObject
from vlp.data.synthetic.vocabulary import COLOUR_WORDS, NUMBER_WORDS, PLURALS, SHAPE_WORDS, SIZE_WORDS


def pick(rng: random.Random, words: Sequence[str]) -> str:
    """The first word half of the time, otherwise one of the others."""
    if len(words) == 1 or rng.random() < 0.5:
        return words[0]
    return rng.choice(words[1:])


def plural(word: str) -> str:
    return PLURALS.get(word, word + "s")


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def number_word(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


def describe(rng: random.Random, obj: SceneObject, keys: Sequence[str] = ("size", "colour", "shape")) -> str:
    """An object's noun phrase with synonyms drawn at random: "big crimson ball"."""
    words = []
    if "size" in keys:
        words.append(pick(rng, SIZE_WORDS[obj.size]))
    if "colour" in keys:
        words.append(pick(rng, COLOUR_WORDS[obj.colour]))
    words.append(pick(rng, SHAPE_WORDS[obj.shape]))
    return " ".join(words)
