"""ITM negatives: random, in-batch hard, and ViLTA's synthesized captions."""

import pytest
import torch

from vlp.config import SynthesizedNegativeConfig
from vlp.objectives.base import image_groups
from vlp.objectives.negatives import (
    HARD,
    RANDOM,
    SYNTHESIZED,
    hard_negatives,
    random_negatives,
    sample_replacements,
    synthesize_captions,
    synthesized_negatives,
)

# Six texts over four distinct images; images 0 and 3 are the same dataset image (group 20) and image 1
# has two captions.
IMAGE_INDEX = torch.tensor([0, 1, 1, 2, 3, 3])
TEXT_GROUPS = torch.tensor([20, 21, 21, 22, 20, 20])
GROUPS = image_groups(IMAGE_INDEX, TEXT_GROUPS, 4)


def _assert_never_same_image(pairs):
    assert len(pairs) > 0
    assert (TEXT_GROUPS[pairs.text_rows] != GROUPS[pairs.image_index]).all()


def test_random_negatives_never_pair_a_text_with_its_image_group():
    swapped_text = swapped_image = 0
    for _ in range(200):
        pairs = random_negatives(TEXT_GROUPS, GROUPS, IMAGE_INDEX, per_positive=2)
        assert len(pairs) == 12 and (pairs.source == RANDOM).all()
        _assert_never_same_image(pairs)
        swapped_image += (pairs.text_rows == torch.arange(6).repeat_interleave(2)).sum().item()
        swapped_text += (pairs.image_index == IMAGE_INDEX.repeat_interleave(2)).sum().item()
    assert swapped_image > 600 and swapped_text > 600  # both directions, about half each


def test_hard_negatives_never_same_image_and_both_directions():
    for _ in range(200):
        logits = torch.randn(6, 4) * 3
        pairs = hard_negatives(logits, TEXT_GROUPS, GROUPS, IMAGE_INDEX, per_positive=2)
        assert len(pairs) == 12 and (pairs.source == HARD).all()
        _assert_never_same_image(pairs)
        # k = 0, 1 for positive b: (b + k) even swaps the image (text stays b), odd swaps the text
        rows = torch.arange(6).repeat_interleave(2)
        k = torch.arange(2).repeat(6)
        swap_image = (rows + k) % 2 == 0
        assert (pairs.text_rows[swap_image] == rows[swap_image]).all()
        assert (pairs.image_index[~swap_image] == IMAGE_INDEX[rows[~swap_image]]).all()


def test_hard_negatives_follow_the_similarity():
    # every text is far more similar to image 2 than to anything else: it is the hard image of all
    # texts not of group 22, and text 3 (group 22) is the hard text of every other image
    logits = torch.zeros(6, 4)
    logits[:, 2] = 30.0
    logits[3, :] = 30.0
    pairs = hard_negatives(logits, TEXT_GROUPS, GROUPS, IMAGE_INDEX, per_positive=1)
    for text, image in zip(pairs.text_rows.tolist(), pairs.image_index.tolist(), strict=True):
        if TEXT_GROUPS[text] != 22:
            assert image == 2
        else:
            assert text == 3


def test_a_batch_of_one_image_has_no_random_or_hard_negatives():
    groups = torch.tensor([5, 5, 5])
    index = torch.tensor([0, 0, 0])
    per_image = image_groups(index, groups, 1)
    assert len(random_negatives(groups, per_image, index, 3)) == 0
    assert len(hard_negatives(torch.randn(3, 1), groups, per_image, index, 3)) == 0


# --------------------------------------------------------------------------- synthesized

V = 12
MASK = 1
REPLACEABLE = torch.tensor([False, False] + [True] * 8 + [False, False])  # 0 pad, 1 mask, 10-11 punct


def _captions():
    ids = torch.tensor([[2, 3, 4, 5, 10, 6, 0, 0], [7, 8, 11, 9, 2, 3, 4, 0], [10, 11, 10, 0, 0, 0, 0, 0]])
    return ids, ids != 0


def test_synthesized_captions_replace_every_chosen_token_with_another():
    ids, mask = _captions()
    cfg = SynthesizedNegativeConfig(per_positive=3, mask_ratio=0.5, top_k=0, temperature=1.0)
    for _ in range(50):
        seen = []
        originals = ids.repeat_interleave(3, dim=0)

        def predict(masked, m, positions, seen=seen, originals=originals):
            seen.append((masked.clone(), positions.clone()))
            # strongly prefer the original token, which must still never be drawn
            logits = torch.randn(int(positions.sum()), V)
            logits[torch.arange(logits.shape[0]), originals[positions]] = 50.0
            return logits

        out = synthesize_captions(ids, mask, predict, REPLACEABLE, MASK, cfg)
        # caption 2 has no replaceable token: no copy of it
        assert out.source_rows.tolist() == [0, 0, 0, 1, 1, 1]
        source = ids[out.source_rows]
        changed = out.input_ids != source
        assert (changed == out.replaced).all()  # differs exactly at every replaced position
        assert REPLACEABLE[out.input_ids[out.replaced]].all()  # writes replaceable tokens only
        assert REPLACEABLE[source[out.replaced]].all()  # replaces replaceable tokens only
        assert out.replaced.sum(1).tolist() == [3] * 6  # round(0.5 * 5) and round(0.5 * 6), half up
        assert (out.attention_mask == mask[out.source_rows]).all()
        masked, positions = seen[0]
        assert (masked[positions] == MASK).all()  # the generator reads the masked caption
        assert (masked[~positions] == originals[~positions]).all()


def test_top_1_sampling_takes_the_best_other_token():
    logits = torch.tensor([[0.0, 0, 9, 8, 1, 0, 0, 0, 0, 0, 0, 0]])
    tokens, ok = sample_replacements(logits, torch.tensor([2]), REPLACEABLE, top_k=1)
    assert tokens.tolist() == [3] and ok.tolist() == [True]


def test_synonym_guard_excludes_the_teachers_top_k():
    logits = torch.tensor([[0.0, 0, 9, 8, 7, 6, 0, 0, 0, 0, 0, 0]])
    banned = torch.zeros(1, V, dtype=torch.bool)
    banned[0, [3, 4]] = True
    tokens, ok = sample_replacements(logits, torch.tensor([2]), REPLACEABLE, banned, top_k=1)
    assert tokens.tolist() == [5] and ok.all()
    # a guard that would leave nothing is ignored; only the original is never drawn
    only = torch.zeros(V, dtype=torch.bool)
    only[[2, 3]] = True
    tokens, ok = sample_replacements(logits, torch.tensor([2]), only, banned | True, top_k=0)
    assert tokens.tolist() == [3] and ok.all()


def test_synonym_guard_inside_synthesis():
    ids, mask = _captions()
    cfg = SynthesizedNegativeConfig(per_positive=1, mask_ratio=1.0, top_k=0, synonym_guard_k=4)

    def predict(masked, m, positions):
        return torch.zeros(int(positions.sum()), V)  # uniform over allowed tokens

    def teacher(masked, m, positions):
        logits = torch.zeros(int(positions.sum()), V)
        logits[:, [2, 3, 4, 5]] = 10.0  # the teacher's top-4 everywhere
        return logits

    for _ in range(30):
        out = synthesize_captions(ids, mask, predict, REPLACEABLE, MASK, cfg, guard=teacher)
        new = out.input_ids[out.replaced]
        assert len(new) > 0 and all(t in (6, 7, 8, 9) for t in new.tolist())


def test_a_position_with_no_other_token_drops_that_negative():
    tokens, ok = sample_replacements(torch.zeros(2, V), torch.tensor([4, 5]), torch.arange(V) == 4)
    assert tokens.tolist() == [4, 4] and ok.tolist() == [False, True]
    ids = torch.tensor([[4, 4, 0]])
    cfg = SynthesizedNegativeConfig(per_positive=2, mask_ratio=1.0)
    out = synthesize_captions(
        ids, ids != 0, lambda i, m, p: torch.zeros(int(p.sum()), V), torch.arange(V) == 4, 1, cfg
    )
    assert len(out) == 0


def test_synthesized_negatives_pair_with_the_original_image():
    ids, mask = _captions()
    cfg = SynthesizedNegativeConfig(per_positive=2, mask_ratio=0.3)
    out = synthesize_captions(ids, mask, lambda i, m, p: torch.zeros(int(p.sum()), V), REPLACEABLE, MASK, cfg)
    index = torch.tensor([2, 0, 1])
    pairs = synthesized_negatives(out, index, num_texts=3)
    assert pairs.text_rows.tolist() == [3, 4, 5, 6]
    assert pairs.image_index.tolist() == [2, 2, 0, 0]
    assert (pairs.source == SYNTHESIZED).all()


def test_bad_settings_are_named():
    ids, mask = _captions()
    with pytest.raises(ValueError, match="mask_ratio"):
        synthesize_captions(
            ids, mask, None, REPLACEABLE, MASK, SynthesizedNegativeConfig(per_positive=1, mask_ratio=0)
        )
    with pytest.raises(ValueError, match="replaceable_vocab"):
        sample_replacements(torch.zeros(1, V), torch.tensor([2]), torch.ones(V + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="temperature"):
        sample_replacements(torch.zeros(1, V), torch.tensor([2]), REPLACEABLE, temperature=0)


def test_a_cold_sampling_temperature_takes_the_best_other_token():
    logits = torch.tensor([[0.0, 0, 3.0, 2.9, 2.8, 0, 0, 0, 0, 0, 0, 0]] * 50)
    tokens, ok = sample_replacements(logits, torch.full((50,), 2), REPLACEABLE, temperature=1e-3)
    assert ok.all() and (tokens == 3).all()
    hot, _ = sample_replacements(logits, torch.full((50,), 2), REPLACEABLE, temperature=100.0)
    assert len(set(hot.tolist())) > 3  # near uniform over the 7 other replaceable tokens


def test_a_guard_with_another_vocabulary_is_named():
    ids, mask = _captions()
    cfg = SynthesizedNegativeConfig(per_positive=1, synonym_guard_k=2)

    def predict(masked, m, positions):
        return torch.zeros(int(positions.sum()), V)

    def teacher(masked, m, positions):
        return torch.zeros(int(positions.sum()), V + 3)

    with pytest.raises(ValueError, match="share the model's vocabulary"):
        synthesize_captions(ids, mask, predict, REPLACEABLE, MASK, cfg, guard=teacher)
