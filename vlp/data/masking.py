"""Masked-language-model corruption (BERT 80/10/10, optional whole-word) and the replaceable-token mask.

All randomness comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100

# A small English stop-word list: function words a synthesized negative should not replace.
STOP_WORDS = frozenset(
    """
    a an the this that these those there here
    of in on at to from by with without into onto over under above below between among through
    near next behind beside before after around against along across up down out off about
    and or but nor so yet if then than as because while
    is are was were be been being am do does did doing have has had having
    i me my we us our you your he him his she her it its they them their
    what which who whom whose where when why how
    not no all any both each few more most other some such only own same too very
    can will just should would could may might must shall
    s t d ll m re ve
    """.split()
)


def _check_shapes(input_ids: Tensor, special_tokens_mask: Tensor, whole_word_ids: Tensor | None) -> None:
    if input_ids.dim() != 2:
        raise ValueError(f"mask_tokens: input_ids must be [B, L], got shape {tuple(input_ids.shape)}")
    if special_tokens_mask.shape != input_ids.shape:
        raise ValueError(
            f"mask_tokens: special_tokens_mask shape {tuple(special_tokens_mask.shape)} does not match "
            f"input_ids shape {tuple(input_ids.shape)}"
        )
    if whole_word_ids is not None and whole_word_ids.shape != input_ids.shape:
        raise ValueError(
            f"mask_tokens: whole_word_ids shape {tuple(whole_word_ids.shape)} does not match "
            f"input_ids shape {tuple(input_ids.shape)}"
        )


def choose_positions(
    eligible: Tensor,
    probability: float,
    *,
    whole_word_ids: Tensor | None = None,
    generator: torch.Generator | None = None,
    at_least_one: bool = True,
) -> Tensor:
    """Bool [B, L]: each eligible token (or each word, with ``whole_word_ids``) chosen with ``probability``.

    Word ids are per-row word indices (>= 0); tokens with a negative word id are drawn on their own.
    With ``at_least_one``, a row that has eligible tokens but drew none gets one token (or word) chosen.
    """
    batch, length = eligible.shape
    device = eligible.device
    token_draw = torch.rand(batch, length, generator=generator, device=device) < probability
    if whole_word_ids is None:
        chosen = token_draw & eligible
        words = None
    else:
        words = whole_word_ids.long()
        num_words = int(words.max().clamp(min=0)) + 1 if words.numel() else 1
        word_draw = torch.rand(batch, num_words, generator=generator, device=device) < probability
        by_word = word_draw.gather(1, words.clamp(min=0))
        chosen = torch.where(words >= 0, by_word, token_draw) & eligible
    if at_least_one:
        # One extra draw for every row keeps the random stream independent of which rows needed it.
        scores = torch.rand(batch, length, generator=generator, device=device).masked_fill(~eligible, -1.0)
        pick = scores.argmax(dim=1, keepdim=True)  # [B, 1]
        empty = (~chosen.any(dim=1) & eligible.any(dim=1)).unsqueeze(1)  # [B, 1]
        extra = torch.zeros_like(chosen).scatter(1, pick, True)
        if words is not None:
            picked_word = words.gather(1, pick)
            extra = extra | ((words == picked_word) & (picked_word >= 0) & eligible)
        chosen = chosen | (extra & empty)
    return chosen


def mask_tokens(
    input_ids: Tensor,
    special_tokens_mask: Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    probability: float = 0.15,
    whole_word_ids: Tensor | None = None,
    generator: torch.Generator | None = None,
    at_least_one: bool = True,
) -> tuple[Tensor, Tensor]:
    """BERT-style MLM corruption of ``input_ids`` [B, L].

    Each non-special token (all pieces of a word together when ``whole_word_ids`` is given) is chosen
    with ``probability``; of the chosen tokens 80% become ``mask_token_id``, 10% a uniformly random id
    in ``[0, vocab_size)`` and 10% stay. ``special_tokens_mask`` (bool [B, L]) must be True at special
    tokens *and* padding: those are never chosen. Returns ``(masked_ids, labels)``, ``labels`` holding the
    original id at chosen positions and -100 elsewhere.
    """
    _check_shapes(input_ids, special_tokens_mask, whole_word_ids)
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"mask_tokens: probability must be in [0, 1], got {probability}")
    if vocab_size <= 0:
        raise ValueError(f"mask_tokens: vocab_size must be positive, got {vocab_size}")
    eligible = ~special_tokens_mask.bool()
    chosen = choose_positions(
        eligible, probability, whole_word_ids=whole_word_ids, generator=generator, at_least_one=at_least_one
    )
    device = input_ids.device
    action = torch.rand(input_ids.shape, generator=generator, device=device)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=device)
    to_mask = chosen & (action < 0.8)
    to_random = chosen & (action >= 0.8) & (action < 0.9)
    masked = input_ids.clone()
    masked[to_mask] = mask_token_id
    masked[to_random] = random_ids[to_random].to(masked.dtype)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[chosen] = input_ids[chosen]
    return masked, labels


def _token_text(token: str, markers: bool, first_word: bool = False) -> tuple[str, bool]:
    """(surface text, is a word continuation) for a vocabulary entry. In a vocabulary with word-start
    ``markers`` a token without one continues a word, except as a caption's ``first_word``."""
    if token.startswith("##"):
        return token[2:], True
    if token[:1] in ("\u0120", "\u2581"):  # byte-level BPE "Ġ" / SentencePiece "▁": a word start
        return token[1:], False
    return token, markers and not first_word


def _is_content(text: str) -> bool:
    """A content word: has a letter or digit, is not a stop word, and is not a single letter."""
    if not any(ch.isalnum() for ch in text) or text.lower() in STOP_WORDS:
        return False
    return not (len(text) == 1 and text.isalpha())


def _vocab_mask(tokenizer: PreTrainedTokenizerBase, mode: str, size: int | None, first_word: bool) -> Tensor:
    if mode not in ("content", "any"):
        raise ValueError(f"replaceable mode must be 'content' or 'any', got {mode!r}")
    vocab_len = len(tokenizer)
    size = vocab_len if size is None else size
    if size < vocab_len:
        raise ValueError(f"replaceable_vocab_mask: size {size} is smaller than the tokenizer's {vocab_len}")
    mask = torch.zeros(size, dtype=torch.bool)
    tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_len)))
    special = set(tokenizer.all_special_ids)
    markers = _has_word_start_markers(tokens)
    for index, token in enumerate(tokens):
        if token is None or index in special:
            continue
        if mode == "any":
            mask[index] = True
            continue
        text, continuation = _token_text(token, markers, first_word)
        if first_word and token[:1] == "\u0120":
            continue  # a caption's first word carries no leading space
        mask[index] = not continuation and _is_content(text)
    return mask


def _has_word_start_markers(tokens: list[str | None]) -> bool:
    return any(t is not None and t[:1] in ("\u0120", "\u2581") for t in tokens)


def replaceable_vocab_mask(
    tokenizer: PreTrainedTokenizerBase, mode: str = "content", size: int | None = None
) -> Tensor:
    """Bool [V]: the tokens a synthesized ITM negative may write in place of an original token.

    ``mode="any"`` excludes only the special tokens. ``mode="content"`` also excludes word
    continuations ("##ing", or BPE pieces without a word-start marker), tokens with no letter or digit
    (punctuation), single letters and :data:`STOP_WORDS`; tokens made only of digits stay replaceable
    (counts are content). ``size`` pads the mask with False up to a model vocabulary larger than the
    tokenizer. A byte-level BPE caption's first word has no marker: see :func:`first_word_vocab_mask`.
    """
    return _vocab_mask(tokenizer, mode, size, first_word=False)


def first_word_vocab_mask(
    tokenizer: PreTrainedTokenizerBase, mode: str = "content", size: int | None = None
) -> Tensor | None:
    """Bool [V]: the replaceable tokens at a caption's first word, for byte-level BPE vocabularies
    (RoBERTa), where that word's token lacks the leading-space marker "Ġ" and so reads as a continuation;
    the same rules as :func:`replaceable_vocab_mask` otherwise. None for other vocabularies (WordPiece,
    SentencePiece mark the first word like any other), where the regular mask applies everywhere."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if not any(t is not None and t[:1] == "\u0120" for t in tokens):
        return None
    return _vocab_mask(tokenizer, mode, size, first_word=True)
