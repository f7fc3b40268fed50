"""Probes of what ViLTA's two objectives claim to improve, on the val captions of a shapes world.

* **Synonym-aware MLM accuracy** (the claim of the soft labels): one attribute word of each caption (a
  colour, shape or size word) is masked and predicted from the caption and its image; a prediction counts
  when it is any word for the same attribute value ("crimson" for "red"). The shapes world knows its
  synonyms (:mod:`vlp.data.synthetic.vocabulary`); exact-word accuracy is reported beside it, and the
  mean probability the model puts on the exact word and on all words of the value.
* **ITM on one-word negatives** (the claim of the synthesized negatives): each caption against itself with
  one colour or shape word swapped for a value that no object of the scene has, so the swap is certainly
  false. ``itm_one_word_pairwise``: the share of pairs where the true caption gets the higher match
  probability; ``itm_one_word_accuracy``: both sides of the 0.5 threshold right, averaged.

Both read a checkpoint through :class:`vlp.inference.Predictor` (``fill_mask``, ``match``).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from vlp.data.formats.karpathy import read_karpathy
from vlp.data.synthetic import SynthConfig
from vlp.data.synthetic.scenes import Scene, assign_splits, sample_scene
from vlp.data.synthetic.vocabulary import COLOUR_WORDS, COLOURS, SHAPE_WORDS, SHAPES, SIZE_WORDS

# word -> (attribute, value), for every word that names a colour, shape or size
WORD_MEANING = {
    word: (attribute, value)
    for attribute, table in (("colour", COLOUR_WORDS), ("shape", SHAPE_WORDS), ("size", SIZE_WORDS))
    for value, words in table.items()
    for word in words
}
_WORDS_OF = {"colour": COLOUR_WORDS, "shape": SHAPE_WORDS, "size": SIZE_WORDS}
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class CaptionedScene:
    image: str
    caption: str
    scene: Scene


def val_captions(world: str | Path, config: SynthConfig, limit: int = 0) -> list[CaptionedScene]:
    """The val-split captions of the world written with ``config``, each with its image and its scene
    (drawn again from the config: scenes are a pure function of seed and index)."""
    world = Path(world)
    splits = assign_splits(config.num_images, config.seed)
    scenes = {str(s.image_id): s for s in (sample_scene(i, sp, config) for i, sp in enumerate(splits))}
    records = read_karpathy(world / "dataset_shapes.json", world / "images", "val")
    pairs = [
        CaptionedScene(record.image_path, caption, scenes[record.image_id])
        for record in records
        for caption in record.captions
    ]
    return pairs[:limit] if limit else pairs


def _attribute_words(caption: str, vocab) -> list[re.Match]:
    """The attribute words of ``caption`` that are one token of the tokenizer."""
    return [m for m in _WORD.finditer(caption.lower()) if m.group() in WORD_MEANING and m.group() in vocab]


@dataclass(frozen=True)
class MaskedWord:
    image: str
    text: str  # the caption with one attribute word replaced by the tokenizer's mask token
    word: str  # the word masked


def mask_attribute_words(pairs: list[CaptionedScene], tokenizer, seed: int = 0) -> list[MaskedWord]:
    """One attribute word masked per caption (chosen at random among those that are one token); captions
    without one are left out."""
    rng, vocab = random.Random(seed), tokenizer.get_vocab()
    out = []
    for pair in pairs:
        words = [
            m
            for m in _WORD.finditer(pair.caption.lower())
            if m.group() in WORD_MEANING and m.group() in vocab
        ]
        if words:
            word = rng.choice(words)
            text = pair.caption[: word.start()] + tokenizer.mask_token + pair.caption[word.end() :]
            out.append(MaskedWord(pair.image, text, word.group()))
    return out


def score_fills(fills: list[list[tuple[str, float]]], truths: list[str]) -> dict[str, float]:
    """Scores (in percent) of the predicted distributions over the vocabulary (``fill_mask`` with every
    token, best first) against the masked words: top-1 accuracy counting the exact word only and counting
    any word for the same value, and the mean probability on the exact word and on all words of the value
    (these two move before any top-1 prediction turns right)."""
    n = len(truths)
    exact = synonym = exact_mass = synonym_mass = 0.0
    for ranked, truth in zip(fills, truths, strict=True):
        meaning = WORD_MEANING[truth]
        exact += ranked[0][0] == truth
        synonym += WORD_MEANING.get(ranked[0][0]) == meaning
        exact_mass += sum(p for token, p in ranked if token == truth)
        synonym_mass += sum(p for token, p in ranked if WORD_MEANING.get(token) == meaning)
    return {
        "mlm_exact": 100 * exact / n, "mlm_synonym": 100 * synonym / n,
        "mlm_exact_prob": 100 * exact_mass / n, "mlm_synonym_prob": 100 * synonym_mass / n, "mlm_masked": n,
    }  # fmt: skip


def synonym_mlm_accuracy(predictor, pairs: list[CaptionedScene], seed: int = 0) -> dict[str, float]:
    masked = mask_attribute_words(pairs, predictor.tokenizer, seed)
    if not masked:
        raise ValueError("synonym_mlm_accuracy: no caption has a colour, shape or size word to mask")
    vocab_size = len(predictor.tokenizer)
    fills = predictor.fill_mask([m.image for m in masked], [m.text for m in masked], top_k=vocab_size)
    return score_fills(fills, [m.word for m in masked])


def one_word_negative(pair: CaptionedScene, rng: random.Random) -> str | None:
    """The caption with one colour or shape word swapped for a value that no object of the scene has."""
    present = {
        "colour": {o.colour for o in pair.scene.objects},
        "shape": {o.shape for o in pair.scene.objects},
    }
    values = {"colour": COLOURS, "shape": SHAPES}
    words = [
        m for m in _WORD.finditer(pair.caption.lower()) if WORD_MEANING.get(m.group(), ("size",))[0] != "size"
    ]
    rng.shuffle(words)
    for word in words:
        attribute, _ = WORD_MEANING[word.group()]
        absent = [v for v in values[attribute] if v not in present[attribute]]
        if absent:
            new = _WORDS_OF[attribute][rng.choice(absent)][0]
            return pair.caption[: word.start()] + new + pair.caption[word.end() :]
    return None


def one_word_itm_accuracy(predictor, pairs: list[CaptionedScene], seed: int = 0) -> dict[str, float]:
    rng = random.Random(seed)
    kept = [(pair, negative) for pair in pairs if (negative := one_word_negative(pair, rng)) is not None]
    if not kept:
        raise ValueError("one_word_itm_accuracy: no caption names a colour or shape that can be swapped")
    images = [pair.image for pair, _ in kept]
    positive = predictor.match(images, [pair.caption for pair, _ in kept])
    negative = predictor.match(images, [text for _, text in kept])
    n = len(kept)
    pairwise = sum(p > q for p, q in zip(positive, negative, strict=True))
    right = sum(p > 0.5 for p in positive) + sum(q <= 0.5 for q in negative)
    return {
        "itm_one_word_pairwise": 100 * pairwise / n,
        "itm_one_word_accuracy": 50 * right / n,
        "itm_pairs": n,
    }
