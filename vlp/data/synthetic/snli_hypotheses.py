"""SNLI-VE hypotheses about a scene, one generator per label (entailment, neutral, contradiction).

Two families of wording, each used by two labels, so that the hypothesis alone tells at most which
pair of labels it belongs to (a text-only model can reach 2/3, as hypothesis-only models do on the real
SNLI); the image decides within the pair:

- a visible claim ("There is a red circle in the picture."): entailment when true, contradiction when
  false;
- a hidden property of a named object ("The red circle is made of wood."): neutral when the object is
  in the picture (nothing shows what it is made of), contradiction when it is not.
"""

from __future__ import annotations

import random

from vlp.data.synthetic.phrases import article, describe, pick
from vlp.data.synthetic.scenes import Scene, SceneObject, relation_pairs
from vlp.data.synthetic.vocabulary import COLOUR_WORDS, COLOURS, OPPOSITE, RELATION_WORDS, SHAPE_WORDS, SHAPES

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


def _absent_object(rng: random.Random, scene: Scene) -> SceneObject:
    """A colour and shape combination that no object of the scene has."""
    present = {(o.colour, o.shape) for o in scene.objects}
    colour, shape = rng.choice([(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present])
    return SceneObject(shape, colour, "small", 0.0, 0.0, 0.0)


def _snli_claim(rng: random.Random, scene: Scene, true: bool) -> str:
    """A statement about what the picture shows, true or false as asked."""
    kind = rng.choice(("object", "colour", "shape", "relation"))
    pairs = relation_pairs(scene)
    if kind == "relation" and pairs:
        a, rel, b = rng.choice(pairs)
        rel = rel if true else OPPOSITE[rel]
        first, second = describe(rng, a, ("shape",)), describe(rng, b, ("shape",))
        return f"A {first} is {pick(rng, RELATION_WORDS[rel])} a {second}."
    if kind == "colour":
        colours = {o.colour for o in scene.objects}
        colour = rng.choice(sorted(colours if true else set(COLOURS) - colours))
        return f"At least one shape is {pick(rng, COLOUR_WORDS[colour])}."
    if kind == "shape":
        shapes = {o.shape for o in scene.objects}
        shape = rng.choice(sorted(shapes if true else set(SHAPES) - shapes))
        return f"The picture contains {article(pick(rng, SHAPE_WORDS[shape]))}."
    obj = rng.choice(scene.objects) if true else _absent_object(rng, scene)
    return f"There is {article(describe(rng, obj, ('colour', 'shape')))} in the picture."


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
