"""ITM negatives from three sources, as (text row, image) index pairs into features computed once.

- ``random``: per positive, the image or the text (a fair coin) is swapped for one of another image group.
- ``hard`` (ALBEF-style): sampled from ``softmax`` of the ITC text->image logits with every pair of the same
  image group masked out. The k-th hard negative of positive ``b`` swaps the image when ``(b + k)`` is even
  (a hard image for the text) and the text otherwise (a hard text for the image), so both directions are
  mined in equal numbers and ``hard_negatives = 2`` gives each positive one of each.
- ``synthesized`` (ViLTA): :func:`synthesize_captions` masks a share of a caption's replaceable tokens, lets
  the current language encoder predict them and samples a different token at each; the corrupted caption
  with the original image is a negative.

Every pair of the same group is excluded, so a negative is never the positive's own image.
A positive with no candidate in the drawn direction uses the other direction; with none at all it gets no
negative of that source (a batch of one image has no random or hard negatives).
Randomness comes from the global torch RNG, or from an optional ``generator`` on the tensors' device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from vlp.config import SynthesizedNegativeConfig
from vlp.objectives.base import sample_positions

# ITM row sources; the code of a row is its index here.
SOURCES = ("positive", "random", "hard", "synthesized")
RANDOM, HARD, SYNTHESIZED = 1, 2, 3

# (input_ids [S, L], attention_mask [S, L], positions [S, L] bool) -> logits [M, V] at the positions.
MaskedPredictor = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass
class NegativePairs:
    """ITM negatives: text ``text_rows[k]`` of the text pool with image ``image_index[k]``.

    The text pool is the batch's clean texts (rows ``0..B-1``) followed by the synthesized captions
    (row ``B + s`` is synthesized caption ``s``).
    """

    text_rows: Tensor  # [K] long
    image_index: Tensor  # [K] long
    source: Tensor  # [K] long, index into SOURCES

    @staticmethod
    def empty(device: torch.device | str = "cpu") -> NegativePairs:
        none = torch.zeros(0, dtype=torch.long, device=device)
        return NegativePairs(none, none.clone(), none.clone())

    @staticmethod
    def cat(parts: list[NegativePairs]) -> NegativePairs:
        return NegativePairs(
            torch.cat([p.text_rows for p in parts]),
            torch.cat([p.image_index for p in parts]),
            torch.cat([p.source for p in parts]),
        )

    def __len__(self) -> int:
        return self.text_rows.shape[0]


def _sample(weights: Tensor, generator: torch.Generator | None) -> Tensor:
    """One column per row of non-negative ``weights`` [R, C]; rows that are all zero get column 0."""
    if weights.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=weights.device)
    empty = ~(weights > 0).any(1, keepdim=True)
    weights = torch.where(empty, torch.ones_like(weights), weights)
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def _swap_pairs(
    rows: Tensor,
    swap_image: Tensor,
    image_weights: Tensor,
    text_weights: Tensor,
    image_index: Tensor,
    source: int,
    generator: torch.Generator | None,
) -> NegativePairs:
    """For each positive ``rows[r]``: swap its image (sampled from ``image_weights[r]``) or its text (from
    ``text_weights[r]``), falling back to the other direction when one has no candidate."""
    has_image = (image_weights > 0).any(1)
    has_text = (text_weights > 0).any(1)
    swap_image = (swap_image & has_image) | (~has_text & has_image)
    keep = has_image | has_text
    new_image = _sample(image_weights, generator)
    new_text = _sample(text_weights, generator)
    text_rows = torch.where(swap_image, rows, new_text)
    images = torch.where(swap_image, new_image, image_index[rows])
    codes = torch.full_like(rows, source)
    return NegativePairs(text_rows[keep], images[keep], codes[keep])


def _candidates(text_groups: Tensor, image_groups: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean [R, I] images and [R, B] texts that are not of positive ``rows[r]``'s image group."""
    group = text_groups[rows][:, None]
    image_ok = (image_groups[None, :] != group) & (image_groups[None, :] >= 0)
    text_ok = text_groups[None, :] != group
    return image_ok, text_ok


def random_negatives(
    text_groups: Tensor,
    image_groups: Tensor,
    image_index: Tensor,
    per_positive: int,
    generator: torch.Generator | None = None,
) -> NegativePairs:
    """``per_positive`` negatives per positive, image or text swapped (fair coin) uniformly at random.

    ``text_groups`` [B] is ``batch.image_group``; ``image_groups`` [I] the group of each distinct image
    (:func:`vlp.objectives.base.image_groups`); ``image_index`` [B] the positive image of each text.
    """
    if per_positive <= 0:
        return NegativePairs.empty(text_groups.device)
    rows = torch.arange(text_groups.shape[0], device=text_groups.device).repeat_interleave(per_positive)
    image_ok, text_ok = _candidates(text_groups, image_groups, rows)
    coin = torch.rand(rows.shape[0], generator=generator, device=rows.device) < 0.5
    return _swap_pairs(rows, coin, image_ok.float(), text_ok.float(), image_index, RANDOM, generator)


def hard_negatives(
    logits: Tensor,
    text_groups: Tensor,
    image_groups: Tensor,
    image_index: Tensor,
    per_positive: int,
    generator: torch.Generator | None = None,
) -> NegativePairs:
    """``per_positive`` in-batch hard negatives per positive, sampled from ``softmax`` of the ITC logits
    ``logits`` [B, I] (text b vs image i) with pairs of the same image group masked out."""
    if per_positive <= 0:
        return NegativePairs.empty(text_groups.device)
    num_texts = text_groups.shape[0]
    device = text_groups.device
    rows = torch.arange(num_texts, device=device).repeat_interleave(per_positive)
    k = torch.arange(per_positive, device=device).repeat(num_texts)
    image_ok, text_ok = _candidates(text_groups, image_groups, rows)
    logits = logits.detach().float()
    # Hard images for text b: its row; hard texts for b's image: that image's column over texts.
    image_weights = _masked_softmax(logits[rows], image_ok)
    text_weights = _masked_softmax(logits[:, image_index[rows]].t(), text_ok)
    swap_image = (rows + k) % 2 == 0
    return _swap_pairs(rows, swap_image, image_weights, text_weights, image_index, HARD, generator)


def _masked_softmax(logits: Tensor, allowed: Tensor) -> Tensor:
    """Softmax over the allowed columns of each row; exactly zero elsewhere (and on rows with none)."""
    masked = logits.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(masked, dim=1)
    return torch.where(allowed, probs, torch.zeros_like(probs)).nan_to_num(0.0)


# --------------------------------------------------------------------------- synthesized (ViLTA)


@dataclass
class SynthesizedCaptions:
    """Corrupted copies of positive captions: ``input_ids[s]`` rewrites caption ``source_rows[s]`` at the
    ``replaced[s]`` positions, each with a token different from the original."""

    input_ids: Tensor  # [S, L]
    attention_mask: Tensor  # [S, L]
    source_rows: Tensor  # [S] long, the positive text each one corrupts
    replaced: Tensor  # [S, L] bool

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def sample_replacements(
    logits: Tensor,
    original: Tensor,
    allowed_vocab: Tensor,
    banned: Tensor | None = None,
    top_k: int = 0,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample one token per row of ``logits`` [M, V] among ``allowed_vocab`` ([V], or [M, V] per row) minus
    the ``original`` [M] token and minus ``banned`` [M, V] (the synonym guard; ignored on a row where it
    would leave nothing), from ``softmax(logits / temperature)`` restricted to the ``top_k`` best remaining
    tokens (0 = all).

    Returns ``(tokens [M], ok [M])``; a row with no allowed token keeps its original and is not ``ok``.
    """
    if temperature <= 0:
        raise ValueError(f"objectives.itm.synthesized.temperature must be > 0, got {temperature}")
    if allowed_vocab.shape[-1] != logits.shape[1]:
        raise ValueError(
            f"replaceable_vocab has {allowed_vocab.shape[-1]} entries but the model predicts "
            f"{logits.shape[1]} tokens: build it from the model's tokenizer"
        )
    num = logits.shape[0]
    allowed = allowed_vocab.to(logits.device).expand(num, -1).clone()
    allowed[torch.arange(num, device=logits.device), original] = False
    if banned is not None:
        guarded = allowed & ~banned
        allowed = torch.where(guarded.any(1, keepdim=True), guarded, allowed)
    ok = allowed.any(1)
    scores = (logits.float() / temperature).masked_fill(~allowed, float("-inf"))
    if 0 < top_k < scores.shape[1]:
        kth = scores.topk(top_k, dim=1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = _masked_softmax(scores, allowed & (scores > float("-inf")))
    sampled = _sample(probs, generator)
    return torch.where(ok, sampled, original), ok


# The position of a caption's first word: right after the leading [CLS] / <s> of BERT / RoBERTa inputs.
FIRST_WORD = 1


def _vocab_rows(vocab: Tensor, first_word_vocab: Tensor | None, length: int) -> Tensor:
    """Bool [L, V]: the tokens replaceable at each position; ``first_word_vocab`` at :data:`FIRST_WORD`."""
    rows = vocab[None, :].expand(length, -1)
    if first_word_vocab is None or length <= FIRST_WORD:
        return rows
    rows = rows.clone()
    rows[FIRST_WORD] = first_word_vocab.to(vocab.device)
    return rows


def _check_vocab(vocab: Tensor, name: str) -> None:
    if vocab.dtype != torch.bool or vocab.dim() != 1:
        raise ValueError(f"{name} must be a 1-D bool tensor over the vocabulary")


@torch.no_grad()
def synthesize_captions(
    input_ids: Tensor,
    attention_mask: Tensor,
    predict: MaskedPredictor,
    replaceable_vocab: Tensor,
    mask_token_id: int,
    cfg: SynthesizedNegativeConfig,
    guard: MaskedPredictor | None = None,
    generator: torch.Generator | None = None,
    first_word_vocab: Tensor | None = None,
) -> SynthesizedCaptions:
    """``cfg.per_positive`` corrupted copies of each caption of ``input_ids`` [B, L].

    ``predict`` is the current language encoder's text-only MLM (``model.text_mlm_logits``); ``guard``
    (used when ``cfg.synonym_guard_k`` > 0) the frozen teacher, whose top-k tokens at a position are never
    sampled there. Captions without a replaceable token, or whose positions admit no other token, yield none.
    ``first_word_vocab`` [V] (byte-level BPE, :func:`vlp.data.masking.first_word_vocab_mask`) replaces
    ``replaceable_vocab`` at a caption's first word, whose token has no leading-space marker: which tokens
    may be replaced there, and which may be written.
    """
    device = input_ids.device
    rows = torch.arange(input_ids.shape[0], device=device).repeat_interleave(max(cfg.per_positive, 0))
    ids = input_ids[rows].clone()
    mask = attention_mask[rows]
    vocab = replaceable_vocab.to(device)
    _check_vocab(vocab, "replaceable_vocab")
    if first_word_vocab is not None:
        _check_vocab(first_word_vocab, "first_word_vocab")
    by_position = _vocab_rows(vocab, first_word_vocab, ids.shape[1])  # [L, V]
    positions = torch.arange(ids.shape[1], device=device).expand_as(ids)
    replaceable = mask.bool() & by_position[positions, ids]
    chosen = sample_positions(replaceable, cfg.mask_ratio, generator, "objectives.itm.synthesized.mask_ratio")
    masked = ids.masked_fill(chosen, mask_token_id)
    ok = torch.ones(ids.shape[0], dtype=torch.bool, device=device)
    if chosen.any():
        logits = predict(masked, mask, chosen)
        banned = None
        if guard is not None and cfg.synonym_guard_k > 0:
            guard_logits = guard(masked, mask, chosen)
            if guard_logits.shape != logits.shape:
                raise ValueError(
                    f"synonym guard (the teacher) predicts {tuple(guard_logits.shape)} but the model "
                    f"{tuple(logits.shape)}: the teacher must share the model's vocabulary"
                )
            k = min(cfg.synonym_guard_k, guard_logits.shape[1])
            top = guard_logits.topk(k, dim=1).indices
            banned = torch.zeros_like(guard_logits, dtype=torch.bool).scatter_(1, top, True)
        allowed = by_position[positions[chosen]]  # [M, V]
        tokens, token_ok = sample_replacements(
            logits, ids[chosen], allowed, banned, cfg.top_k, cfg.temperature, generator
        )
        ids[chosen] = tokens
        bad = torch.zeros_like(chosen)
        bad[chosen] = ~token_ok
        ok = ~bad.any(1)
    keep = ok & chosen.any(1)
    return SynthesizedCaptions(ids[keep], mask[keep], rows[keep], chosen[keep])


def synthesized_negatives(
    captions: SynthesizedCaptions, image_index: Tensor, num_texts: int
) -> NegativePairs:
    """The pairs (caption, its original's image); caption ``s`` is text-pool row ``num_texts + s``."""
    device = image_index.device
    text_rows = num_texts + torch.arange(len(captions), device=device)
    source = torch.full_like(text_rows, SYNTHESIZED)
    return NegativePairs(text_rows, image_index[captions.source_rows], source)


@torch.no_grad()
def plausible_share(
    captions: SynthesizedCaptions, teacher: MaskedPredictor, mask_token_id: int, k: int
) -> float:
    """Share of the replacements in ``captions`` that ``teacher`` ranks in its top ``k`` at their position
    (reading the caption with the replaced positions masked): plausible words, yet not the original."""
    masked = captions.input_ids.masked_fill(captions.replaced, mask_token_id)
    logits = teacher(masked, captions.attention_mask, captions.replaced)
    written = captions.input_ids[captions.replaced]
    if written.numel() == 0:
        return 0.0
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == written[:, None].to(top.device)).any(1).float().mean().item()
