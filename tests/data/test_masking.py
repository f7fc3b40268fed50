import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import BertTokenizerFast

from vlp.data.masking import mask_tokens, replaceable_vocab_mask

MASK_ID = 4
VOCAB = 50


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@st.composite
def token_batches(draw):
    rows = draw(st.integers(1, 4))
    length = draw(st.integers(1, 12))
    ids = torch.tensor(
        draw(st.lists(st.integers(5, VOCAB - 1), min_size=rows * length, max_size=rows * length))
    )
    special = torch.tensor(draw(st.lists(st.booleans(), min_size=rows * length, max_size=rows * length)))
    return ids.view(rows, length), special.view(rows, length)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(batch=token_batches(), p=st.floats(0.0, 1.0), seed=st.integers(0, 2**31))
def test_mask_invariants(batch, p, seed):
    ids, special = batch
    masked, labels = mask_tokens(
        ids, special, mask_token_id=MASK_ID, vocab_size=VOCAB, probability=p, generator=_gen(seed)
    )
    chosen = labels != -100
    assert masked.shape == ids.shape and labels.shape == ids.shape
    assert not (chosen & special).any()  # special tokens / padding never chosen
    assert torch.equal(labels[chosen], ids[chosen])  # labels are the original ids
    assert torch.equal(masked[~chosen], ids[~chosen])  # untouched elsewhere
    assert ((masked[chosen] >= 0) & (masked[chosen] < VOCAB)).all()
    # at least one position in each row that has a non-special token
    has_tokens = (~special).any(dim=1)
    assert torch.equal(chosen.any(dim=1), has_tokens)


def test_probability_one_chooses_every_eligible_token():
    ids = torch.tensor([[2, 10, 11, 12, 3, 0]])
    special = torch.tensor([[True, False, False, False, True, True]])
    masked, labels = mask_tokens(
        ids, special, mask_token_id=MASK_ID, vocab_size=VOCAB, probability=1.0, generator=_gen(0)
    )
    assert labels.tolist() == [[-100, 10, 11, 12, -100, -100]]
    assert masked[0, 0] == 2 and masked[0, 4] == 3 and masked[0, 5] == 0


def test_probability_zero_still_masks_one_token_per_row_unless_disabled():
    ids = torch.arange(5, 5 + 24).view(3, 8)
    special = torch.zeros(3, 8, dtype=torch.bool)
    special[2] = True  # a row of only special tokens / padding
    _, labels = mask_tokens(
        ids, special, mask_token_id=MASK_ID, vocab_size=VOCAB, probability=0.0, generator=_gen(1)
    )
    assert (labels != -100).sum(dim=1).tolist() == [1, 1, 0]
    _, labels = mask_tokens(
        ids,
        special,
        mask_token_id=MASK_ID,
        vocab_size=VOCAB,
        probability=0.0,
        generator=_gen(1),
        at_least_one=False,
    )
    assert (labels == -100).all()


def test_ratios_on_a_large_input():
    ids = torch.randint(5, 1000, (64, 512), generator=_gen(0))
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = True
    special[:, -40:] = True  # padding
    masked, labels = mask_tokens(
        ids, special, mask_token_id=MASK_ID, vocab_size=1000, probability=0.15, generator=_gen(2)
    )
    chosen = labels != -100
    eligible = (~special).sum().item()
    assert abs(chosen.sum().item() / eligible - 0.15) < 0.01
    n = chosen.sum().item()
    as_mask = (masked[chosen] == MASK_ID).sum().item() / n
    kept = (masked[chosen] == ids[chosen]).sum().item() / n
    assert abs(as_mask - 0.8) < 0.02
    assert abs(kept - 0.1) < 0.02  # plus a 1/1000 chance that the random id equals the original
    assert abs(1 - as_mask - kept - 0.1) < 0.02


def test_same_generator_seed_same_masks():
    ids = torch.randint(5, 100, (4, 16), generator=_gen(0))
    special = torch.zeros_like(ids, dtype=torch.bool)
    a = mask_tokens(ids, special, mask_token_id=MASK_ID, vocab_size=100, generator=_gen(7))
    b = mask_tokens(ids, special, mask_token_id=MASK_ID, vocab_size=100, generator=_gen(7))
    c = mask_tokens(ids, special, mask_token_id=MASK_ID, vocab_size=100, generator=_gen(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


@st.composite
def worded_batches(draw):
    rows = draw(st.integers(1, 3))
    word_rows, special_rows = [], []
    length = draw(st.integers(3, 14))
    for _ in range(rows):
        pieces = []
        word = 0
        while len(pieces) < length - 2:
            pieces.extend([word] * draw(st.integers(1, 3)))
            word += 1
        pieces = [-1] + pieces[: length - 2] + [-1]
        pad = draw(st.integers(0, length - 2))
        pieces = pieces[: length - pad] + [-1] * pad
        word_rows.append(pieces)
        special_rows.append([w < 0 for w in pieces])
    return torch.tensor(word_rows), torch.tensor(special_rows)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(batch=worded_batches(), p=st.floats(0.0, 1.0), seed=st.integers(0, 2**31))
def test_whole_words_are_all_or_nothing(batch, p, seed):
    words, special = batch
    ids = torch.randint(5, VOCAB, words.shape, generator=_gen(seed))
    _, labels = mask_tokens(
        ids,
        special,
        mask_token_id=MASK_ID,
        vocab_size=VOCAB,
        probability=p,
        whole_word_ids=words,
        generator=_gen(seed),
    )
    chosen = labels != -100
    assert not (chosen & special).any()
    for row in range(words.shape[0]):
        for word in words[row][words[row] >= 0].unique():
            in_word = chosen[row][words[row] == word]
            assert in_word.all() or not in_word.any()
        assert chosen[row].any() == (~special[row]).any()


def test_whole_word_ratio_counts_words():
    # 2000 words of 2 pieces each: about 15% of the words chosen, both pieces each time.
    words = torch.arange(2000).repeat_interleave(2).view(1, -1)
    ids = torch.full_like(words, 7)
    special = torch.zeros_like(words, dtype=torch.bool)
    _, labels = mask_tokens(
        ids,
        special,
        mask_token_id=MASK_ID,
        vocab_size=VOCAB,
        probability=0.15,
        whole_word_ids=words,
        generator=_gen(0),
    )
    per_word = (labels != -100).view(2000, 2)
    assert torch.equal(per_word[:, 0], per_word[:, 1])
    assert abs(per_word[:, 0].float().mean().item() - 0.15) < 0.03


def test_bad_arguments_are_named():
    ids = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="special_tokens_mask shape"):
        mask_tokens(ids, torch.zeros(2, 4, dtype=torch.bool), mask_token_id=4, vocab_size=10)
    with pytest.raises(ValueError, match="probability"):
        mask_tokens(ids, torch.zeros(2, 3, dtype=torch.bool), mask_token_id=4, vocab_size=10, probability=1.5)
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        mask_tokens(ids[0], torch.zeros(3, dtype=torch.bool), mask_token_id=4, vocab_size=10)


# --------------------------------------------------------------------------- replaceable vocabulary

WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "a",
    "red",
    "circle",
    "##s",
    ".",
    ",",
    "3",
    "of",
    "Left",
    "is",
]


def test_replaceable_content_mask_on_a_wordpiece_vocab():
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(WORDS)})
    mask = replaceable_vocab_mask(tokenizer, "content")
    assert mask.dtype == torch.bool and mask.shape == (len(WORDS),)
    assert [WORDS[i] for i in mask.nonzero().flatten().tolist()] == ["red", "circle", "3", "Left"]
    any_mask = replaceable_vocab_mask(tokenizer, "any")
    assert [WORDS[i] for i in any_mask.nonzero().flatten().tolist()] == WORDS[5:]
    padded = replaceable_vocab_mask(tokenizer, "content", size=20)
    assert (
        padded.shape == (20,) and torch.equal(padded[: len(WORDS)], mask) and not padded[len(WORDS) :].any()
    )


class _ByteLevelTokenizer:
    tokens = [
        "<s>",
        "</s>",
        "<pad>",
        "\u0120the",
        "\u0120red",
        "red",
        "ing",
        "\u0120.",
        "\u0120dog",
        "\u0120and",
    ]
    all_special_ids = [0, 1, 2]

    def __len__(self):
        return len(self.tokens)

    def convert_ids_to_tokens(self, ids):
        return [self.tokens[i] for i in ids]


def test_replaceable_content_mask_on_a_byte_level_vocab():
    mask = replaceable_vocab_mask(_ByteLevelTokenizer(), "content")
    assert mask.nonzero().flatten().tolist() == [4, 8]  # "Ġred", "Ġdog": word starts, not stop words


def test_replaceable_mask_rejects_unknown_mode_and_small_size():
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(WORDS)})
    with pytest.raises(ValueError, match="'content' or 'any'"):
        replaceable_vocab_mask(tokenizer, "nouns")
    with pytest.raises(ValueError, match="smaller"):
        replaceable_vocab_mask(tokenizer, "any", size=3)
