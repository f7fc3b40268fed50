"""Typed features that cross module borders between models, heads and objectives."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class TextFeatures:
    """Per-text states that the fusion consumes (ViLTA: text-encoder output; SemVLP: embeddings)."""

    hidden: Tensor  # [B, L, D]
    mask: Tensor  # [B, L] bool, True = real token
    # ViLTA: the text encoder's own output (before the projection into the fusion width), which its
    # text-only MLM head reads; None where a model has no separate text encoder (SemVLP)
    encoded: Tensor | None = None

    def rows(self, index: Tensor | slice) -> TextFeatures:
        """The texts at ``index`` (a slice, or row indices that may repeat)."""

        def take(tensor: Tensor | None) -> Tensor | None:
            if tensor is None:
                return None
            return tensor[index] if isinstance(index, slice) else tensor.index_select(0, index)

        return TextFeatures(hidden=take(self.hidden), mask=take(self.mask), encoded=take(self.encoded))


@dataclass
class ImageFeatures:
    """Per-image states, computed once per distinct image."""

    hidden: Tensor  # [I, N, D]
    mask: Tensor  # [I, N] bool, True = real patch/region


@dataclass
class FusedFeatures:
    """Cross-modal states of each image-text pair (one row per text)."""

    text: Tensor  # [B, L, D]
    image: Tensor  # [B, N, D]
    text_mask: Tensor  # [B, L] bool
    image_mask: Tensor  # [B, N] bool
    pooled: Tensor  # [B, P]: the pair representation the pair-level heads read

    def rows(self, index: slice) -> FusedFeatures:
        """The pairs at ``index`` (one fuse call's output shared by several objectives)."""
        return FusedFeatures(
            text=self.text[index], image=self.image[index], text_mask=self.text_mask[index],
            image_mask=self.image_mask[index], pooled=self.pooled[index],
        )  # fmt: skip
