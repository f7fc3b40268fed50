"""The model protocol: what objectives, tasks, inference, the trainer and checkpoints call on a model.

Both architectures (:class:`~vlp.models.vilta.ViLTA`, :class:`~vlp.models.semvlp.SemVLP`) derive from
:class:`VisionLanguageModel`. Texts and images are embedded separately (an image once, however many texts
pair with it), then fused per pair; the heads read the fused states.

Visual token layout: an image [CLS] token first, then patch or region tokens (see :mod:`vlp.models.visual`).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from torch import Tensor, nn

from vlp.config import ModelConfig
from vlp.data.batch import VisualInput
from vlp.models.encoders import TextLanguageModel
from vlp.models.heads import Heads
from vlp.models.outputs import FusedFeatures, ImageFeatures, TextFeatures

log = logging.getLogger("vlp.models")


class VisionLanguageModel(nn.Module, ABC):
    """A vision-language model; the attributes and methods below are all its callers rely on."""

    arch: ClassVar[str]  # "vilta" | "semvlp": the ``model.arch`` that builds it
    config: ModelConfig  # as built (fields a pretrained directory decided are filled in)
    vocab_size: int
    heads: Heads
    load_report: list[str]  # what was loaded from where (``vlp model info`` shows it)

    # ----------------------------------------------------------------------- embedding and fusion

    @abstractmethod
    def embed_text(self, input_ids: Tensor, attention_mask: Tensor) -> TextFeatures:
        """``[B, L]`` token ids and mask -> the per-text states the fusion consumes."""

    @abstractmethod
    def embed_image(self, visual: VisualInput, visual_mask: Tensor | None = None) -> ImageFeatures:
        """Each distinct image's states; ``visual_mask`` (``[I, N]`` bool, never the [CLS] token) replaces
        the masked visual tokens (MVM)."""

    @abstractmethod
    def fuse(
        self,
        text: TextFeatures,
        image: ImageFeatures,
        image_index: Tensor,
        mode: str | None = None,
        text_index: Tensor | None = None,
    ) -> FusedFeatures:
        """Pair text ``b`` with image ``image_index[b]``; ``mode`` is a fusion mode where the model has
        several (SemVLP: single | two, None = single), ignored otherwise. ``text_index``: pair ``b``'s
        text is ``text[text_index[b]]`` (each distinct text given once, so that what depends on the
        text alone runs once per text); None: ``text`` has one row per pair."""

    # ----------------------------------------------------------------------- heads

    @abstractmethod
    def text_itc_embeddings(self, text: TextFeatures) -> Tensor:
        """L2-normalised ITC embeddings of texts, ``[B, itc_dim]``."""

    @abstractmethod
    def image_itc_embeddings(self, image: ImageFeatures) -> Tensor:
        """L2-normalised ITC embeddings of images, ``[I, itc_dim]``."""

    def contrastive_embeddings(self, text: TextFeatures, image: ImageFeatures) -> tuple[Tensor, Tensor]:
        """:meth:`text_itc_embeddings` and :meth:`image_itc_embeddings`."""
        return self.text_itc_embeddings(text), self.image_itc_embeddings(image)

    def mlm_logits(self, fused: FusedFeatures, positions: Tensor) -> Tensor:
        """MLM logits of the fused text states at ``positions`` (a bool mask or indices)."""
        return self.heads.mlm(fused.text[positions])

    @abstractmethod
    def text_language_model(self) -> TextLanguageModel:
        """The text-only path with an MLM head (modules shared with this model)."""

    def text_mlm_logits(self, input_ids: Tensor, attention_mask: Tensor, positions: Tensor) -> Tensor:
        """MLM logits of the text-only path at ``positions``."""
        return self.text_language_model()(input_ids, attention_mask, positions)

    def text_mlm_logits_of(self, text: TextFeatures, positions: Tensor) -> Tensor | None:
        """:meth:`text_mlm_logits` read off features that :meth:`embed_text` already computed (saving the
        text path a forward and backward), or None where the model's text features are not the text-only
        path's states (then call :meth:`text_mlm_logits`)."""
        return None

    @abstractmethod
    def visual_targets(self, visual: VisualInput) -> Tensor:
        """MVM regression targets per visual token, ``[I, N, target_dim]`` (zeros for [CLS])."""

    # ----------------------------------------------------------------------- parameters and checkpoints

    @abstractmethod
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by optimizer component (encoders, fusion, heads), each exactly once."""

    @abstractmethod
    def parameter_components(self) -> dict[str, list]:
        """Exclusive components for :func:`vlp.models.info.parameter_table`."""

    @abstractmethod
    def hf_configs(self) -> dict[str, Any]:
        """The Hugging Face configs of the encoders, enough to rebuild the architecture (may be empty)."""

    def report_loading(self, lines: list[str]) -> None:
        """Keep ``lines`` as :attr:`load_report` and log them."""
        self.load_report = lines
        for line in lines:
            log.info(line)
