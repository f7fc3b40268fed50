"""Tokenizers: load any Hugging Face tokenizer directory from disk, or train a small BERT WordPiece one.

Nothing here touches the network: directories are read with ``local_files_only``.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import string
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

# BERT's special tokens, in the order they get ids 0..4 in a trained vocabulary.
SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}

# Any one of these file sets makes a directory loadable as a fast tokenizer.
_EXPECTED_FILE_SETS = (
    ("tokenizer.json",),
    ("vocab.txt",),  # BERT WordPiece
    ("vocab.json", "merges.txt"),  # GPT-2 / RoBERTa byte-level BPE
    ("spiece.model",),
    ("sentencepiece.bpe.model",),
    ("tokenizer.model",),
)


def _describe_expected() -> str:
    return " or ".join("+".join(files) for files in _EXPECTED_FILE_SETS)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a fast tokenizer from a local Hugging Face tokenizer (or model) directory."""
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"tokenizer directory not found: {directory} (expected a Hugging Face tokenizer directory with "
            f"{_describe_expected()}, e.g. one written by `vlp data tokenizer`)"
        )
    if not any(all((directory / name).is_file() for name in files) for files in _EXPECTED_FILE_SETS):
        present = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
        raise FileNotFoundError(
            f"{directory} is not a tokenizer directory: expected {_describe_expected()}; found {present}"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ValueError(f"{directory}: could not load a tokenizer from this directory: {err}") from err
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ValueError(
            f"{directory}: loaded a slow tokenizer ({type(tokenizer).__name__}); vlp needs a fast one "
            "(a directory with tokenizer.json)"
        )
    return tokenizer


def vocab_hash(tokenizer: PreTrainedTokenizerBase) -> str:
    """A fingerprint of the vocabulary itself (every token and its id, added tokens included): equal for
    the same tokenizer, different for two tokenizers that merely have the same size."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: (item[1], item[0]))
    digest = hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8"))
    return "sha256:" + digest.hexdigest()[:32]


def _word_counts(texts: Iterable[str], normalizer, pre_tokenizer) -> dict[str, int]:
    """Words after BERT normalisation and pre-tokenisation, with counts, in first-seen order."""
    counts: dict[str, int] = {}
    texts = list(texts)
    # Texts go through in chunks joined by newlines (a word boundary): one call per chunk, not per text.
    for start in range(0, len(texts), 1000):
        chunk = "\n".join(texts[start : start + 1000])
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(chunk)):
            counts[word] = counts.get(word, 0) + 1
    return counts


def _symbol_pairs(symbols: list[str]) -> list[tuple[str, str]]:
    return list(zip(symbols, symbols[1:], strict=False))


def learn_wordpiece_vocab(word_counts: dict[str, int], vocab_size: int, prefix: str = "##") -> list[str]:
    """A WordPiece vocabulary learned by BPE-style merges, as the ``tokenizers`` trainer does.

    Our own loop because that trainer breaks count ties through Rust hash maps seeded at random per
    process, so two runs on the same texts can give different vocabularies. Here ties go to the pair
    that sorts first, so the result is a pure function of the input. Returns the special tokens, then
    the alphabet (every seen symbol, plus a-z and 0-9 in both word-initial and ``##`` form and ASCII
    punctuation, so no ASCII word is ever [UNK]), then merged pieces in merge order, at most
    ``vocab_size`` in all (the alphabet is kept even when it alone is larger).
    """
    words = list(word_counts)
    weights = [word_counts[w] for w in words]
    splits = [[w[0]] + [prefix + c for c in w[1:]] for w in words]

    symbol_counts: Counter[str] = Counter()
    for symbols, weight in zip(splits, weights, strict=True):
        for symbol in symbols:
            symbol_counts[symbol] += weight
    alphabet = sorted(symbol_counts, key=lambda sym: (-symbol_counts[sym], sym))
    extra = list(string.ascii_lowercase + string.digits)
    extra += [prefix + c for c in extra] + list(string.punctuation)
    vocab = list(dict.fromkeys([*SPECIAL_TOKENS.values(), *alphabet, *extra]))
    known = set(vocab)

    pair_counts: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for index, (symbols, weight) in enumerate(zip(splits, weights, strict=True)):
        for pair in _symbol_pairs(symbols):
            pair_counts[pair] += weight
            where.setdefault(pair, set()).add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    while len(vocab) < vocab_size and heap:
        negative, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -negative:
            continue  # a stale entry: the count changed after it was pushed
        first, second = pair
        merged = first + second[len(prefix) :]
        changed: set[tuple[str, str]] = set()
        for index in sorted(where.pop(pair, ())):
            symbols, weight = splits[index], weights[index]
            for old in _symbol_pairs(symbols):
                pair_counts[old] -= weight
                changed.add(old)
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                    out.append(merged)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            splits[index] = out
            for new in _symbol_pairs(out):
                pair_counts[new] += weight
                where.setdefault(new, set()).add(index)
                changed.add(new)
        for key in sorted(changed):
            if pair_counts[key] > 0:
                heapq.heappush(heap, (-pair_counts[key], key))
            else:
                del pair_counts[key]
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
    return vocab


def _build_wordpiece(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = learn_wordpiece_vocab(_word_counts(texts, normalizer, pre_tokenizer), vocab_size)
    model = WordPiece(
        {token: i for i, token in enumerate(vocab)},
        unk_token=SPECIAL_TOKENS["unk_token"],
        continuing_subword_prefix="##",
        max_input_chars_per_word=100,
    )
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    cls, sep = SPECIAL_TOKENS["cls_token"], SPECIAL_TOKENS["sep_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, tokenizer.token_to_id(cls)), (sep, tokenizer.token_to_id(sep))],
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def train_wordpiece(
    texts: list[str], out_dir: str | Path, vocab_size: int = 1000, model_max_length: int = 512
) -> PreTrainedTokenizerFast:
    """Train an uncased BERT WordPiece tokenizer on ``texts`` and save it as a Hugging Face directory.

    Deterministic: the same texts always give byte-identical files (see :func:`learn_wordpiece_vocab`).

    The directory holds tokenizer.json, tokenizer_config.json, special_tokens_map.json and vocab.txt, so
    ``load_tokenizer``, ``AutoTokenizer`` and ``BertTokenizerFast`` all load it. Ids: [PAD]=0, [UNK]=1,
    [CLS]=2, [SEP]=3, [MASK]=4.
    """
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + 1}, got {vocab_size}")
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("train_wordpiece: no non-empty texts to train on")
    backend = _build_wordpiece(texts, vocab_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backend.save(str(out / "tokenizer.json"))

    vocab = backend.get_vocab()
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise RuntimeError("trained vocabulary ids are not contiguous")  # a tokenizers invariant
    (out / "vocab.txt").write_text("".join(token + "\n" for token, _ in by_id), encoding="utf-8")

    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "tokenize_chinese_chars": True,
        "strip_accents": None,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        **SPECIAL_TOKENS,
    }
    _write_json(out / "tokenizer_config.json", config)
    _write_json(out / "special_tokens_map.json", SPECIAL_TOKENS)
    return load_tokenizer(out)


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")
