"""The claim probes (vlp/probes.py) and the Predictor's fill_mask they read through."""

from __future__ import annotations

import random
import re

import pytest

from vlp.config import load_config
from vlp.data.synthetic import SynthConfig
from vlp.data.synthetic.vocabulary import COLOUR_WORDS, SHAPE_WORDS, SIZE_WORDS
from vlp.data.tokenizer import load_tokenizer
from vlp.inference import load_predictor
from vlp.pretrain import pretrain
from vlp.probes import (
    WORD_MEANING,
    mask_attribute_words,
    one_word_itm_accuracy,
    one_word_negative,
    score_fills,
    synonym_mlm_accuracy,
    val_captions,
)
from vlp.runs.demo import world_overrides

COLOUR_OF = {w: c for c, words in COLOUR_WORDS.items() for w in words}
SHAPE_OF = {w: s for s, words in SHAPE_WORDS.items() for w in words}


@pytest.fixture(scope="module")
def shapes_config() -> SynthConfig:
    return SynthConfig(num_images=60, seed=0)


@pytest.fixture(scope="module")
def captions(shapes, shapes_config):
    return val_captions(shapes, shapes_config)


@pytest.fixture(scope="module")
def predictor(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "vilta"
    overrides = [*world_overrides(shapes), "train.max_steps=2", "train.progress=false", "train.val_every=0"]
    pretrain(load_config("vilta-tiny-baseline", overrides), out)
    return load_predictor(out / "final")


def test_val_captions_come_with_the_scene_they_describe(captions):
    assert captions
    for pair in captions:
        words = re.findall(r"[a-z]+", pair.caption.lower())
        colours = {o.colour for o in pair.scene.objects}
        shapes = {o.shape for o in pair.scene.objects}
        assert {COLOUR_OF[w] for w in words if w in COLOUR_OF} <= colours, pair
        assert {SHAPE_OF[w] for w in words if w in SHAPE_OF} <= shapes, pair


def testone_word_negatives_swap_one_word_for_something_absent(captions):
    rng, swapped = random.Random(0), 0
    for pair in captions:
        negative = one_word_negative(pair, rng)
        if negative is None:
            continue
        before, after = pair.caption.split(), negative.split()
        changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        assert len(changed) == 1, (pair.caption, negative)
        new = re.sub(r"[^a-z]", "", changed[0][1].lower())
        attribute, value = WORD_MEANING[new]
        assert value not in {getattr(o, attribute) for o in pair.scene.objects}
        swapped += 1
    assert swapped > len(captions) // 2


def _synonym(word: str) -> str:
    """Another word for the same value (sizes have three words each, colours and shapes two or three)."""
    attribute, value = WORD_MEANING[word]
    table = {"colour": COLOUR_WORDS, "shape": SHAPE_WORDS, "size": SIZE_WORDS}[attribute]
    return next(w for w in table[value] if w != word)


def test_one_attribute_word_is_masked_per_caption(captions, shapes):
    tokenizer = load_tokenizer(shapes / "tokenizer")
    masked = mask_attribute_words(captions, tokenizer)
    assert len(masked) > len(captions) // 2
    by_image = {}
    for pair in captions:
        by_image.setdefault(pair.image, []).append(pair.caption)
    for item in masked:
        assert item.text.count("[MASK]") == 1 and item.word in WORD_MEANING
        restored = re.sub(r"\[MASK\]", item.word, item.text)
        assert restored.lower() in [c.lower() for c in by_image[item.image]]


def test_synonym_accuracy_counts_any_word_for_the_same_value():
    truths = ["red", "circle", "small", "crimson"]
    top = score_fills([[(_synonym(t), 0.6), (t, 0.3), ("the", 0.1)] for t in truths], truths)
    assert top["mlm_exact"] == 0.0 and top["mlm_synonym"] == 100.0 and top["mlm_masked"] == 4
    assert top["mlm_exact_prob"] == pytest.approx(30.0) and top["mlm_synonym_prob"] == pytest.approx(90.0)
    mixed = score_fills([[("red", 1.0)], [("square", 1.0)], [("the", 1.0)], [("red", 1.0)]], truths)
    assert mixed["mlm_synonym"] == 50.0 and mixed["mlm_exact"] == 25.0
    assert score_fills([[(t, 1.0)] for t in truths], truths)["mlm_exact"] == 100.0


def test_fill_mask_ranks_tokens_for_the_one_mask(predictor, captions):
    top = predictor.fill_mask(captions[0].image, ["a red [MASK] left of a box.", "[MASK] circle"], top_k=4)
    assert len(top) == 2 and all(len(t) == 4 for t in top)
    for ranked in top:
        probabilities = [p for _, p in ranked]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
    with pytest.raises(ValueError, match=r"exactly one \[MASK\]"):
        predictor.fill_mask(captions[0].image, "no mask here")


def test_the_probes_run_on_a_checkpoint(predictor, captions):
    mlm = synonym_mlm_accuracy(predictor, captions)
    assert mlm["mlm_masked"] > 0 and mlm["mlm_exact"] <= mlm["mlm_synonym"] <= 100
    result = one_word_itm_accuracy(predictor, captions)
    assert result["itm_pairs"] > 0
    assert 0 <= result["itm_one_word_pairwise"] <= 100 and 0 <= result["itm_one_word_accuracy"] <= 100
