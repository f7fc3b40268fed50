"""Typed batches: what crosses from the data side to the models and objectives."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass
class VisualInput:
    """The distinct images of a batch, encoded once however many texts pair with each.

    Exactly one of ``pixel_values`` (patches from pixels) or ``region_features`` (precomputed
    regions) is set.
    """

    pixel_values: Tensor | None = None  # [I, 3, H, W] float, normalised
    region_features: Tensor | None = None  # [I, R, D] float
    region_boxes: Tensor | None = None  # [I, R, 4] float, normalised to [0, 1] (x1, y1, x2, y2)
    region_mask: Tensor | None = None  # [I, R] bool, True = real region
    region_labels: Tensor | None = None  # [I, R] long, detector object id, -100 where none
    region_attributes: Tensor | None = None  # [I, R] long, detector attribute id, -100 where none

    @property
    def num_images(self) -> int:
        source = self.pixel_values if self.pixel_values is not None else self.region_features
        return 0 if source is None else source.shape[0]

    def to(self, device: torch.device | str) -> VisualInput:
        """A copy with every tensor moved to ``device``."""
        return VisualInput(**{f.name: _move(getattr(self, f.name), device) for f in fields(self)})


@dataclass
class Batch:
    """Image-text pairs. Text ``b`` pairs with image ``image_index[b]`` of ``visual``."""

    visual: VisualInput
    image_index: Tensor  # [B] long, into the images of ``visual``
    image_group: Tensor  # [B] long, a dataset-wide id of the image: equal ids = same image
    input_ids: Tensor  # [B, L] long
    attention_mask: Tensor  # [B, L] bool, True = real token
    mlm_input_ids: Tensor | None = None  # [B, L] long, masked copy of input_ids
    mlm_labels: Tensor | None = None  # [B, L] long, original id at masked positions, -100 elsewhere
    # Question answering (SemVLP QA objective and task fine-tuning): samples that carry a question.
    has_answer: Tensor | None = None  # [B] bool
    answer_targets: Tensor | None = None  # [B, num_answers] float soft scores

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        """A copy with every tensor moved to ``device``."""
        return Batch(**{f.name: _move(getattr(self, f.name), device) for f in fields(self)})


def _move(value: object, device: torch.device | str) -> object:
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, VisualInput):
        return value.to(device)
    return value
